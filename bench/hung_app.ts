/**
 * The app module of `dray bench --scenario hung` (bench/hung.ts): jobs that hang their thread or
 * process until it is killed, and ordinary jobs sent among them. The bench process imports it too,
 * to send.
 */
import { actor } from "../src/mod.ts";

export const HUNG_QUEUE = "bench-hung";
/** The tracker's figure: 30 such jobs at this limit would take 30 / 2 x 0.5 s on two threads. */
export const HUNG_LIMIT_MS = 500;
/** How long an ordinary job awaits: long enough to be in flight when a hung job takes its thread. */
export const ORDINARY_MS = 50;

// maxRetries 0: each hung job runs once and is dead-lettered at its first kill.
const hung = { queue: HUNG_QUEUE, timeLimit: HUNG_LIMIT_MS, maxRetries: 0 };

/** Holds the CPU: nothing but a kill stops it. */
export const spin = actor("bench_hung_spin", hung, () => {
  for (;;) {
    // spin
  }
});

/** Blocks its thread without using the CPU. */
export const wait = actor("bench_hung_wait", hung, () => {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);
});

/** The list an ordinary job notes each run's start in (`id attempt`), so the bench sees re-runs. */
export interface OrdinaryPayload {
  key: string;
}

/**
 * An ordinary job: notes its start, then awaits. Its limit is far above the hung jobs' limit plus a
 * kill, so it is never past its own limit when a neighbour's kill interrupts it; retries let a wrong
 * charge show as attempt 2 instead of a dead letter. Its completion is what the worker logs.
 */
export const ordinary = actor("bench_hung_ordinary", { queue: HUNG_QUEUE, timeLimit: 10_000, maxRetries: 3, minBackoff: 10, maxBackoff: 10 },
  async (p: OrdinaryPayload, ctx) => {
    await ctx.redis.rpush(p.key, `${ctx.jobId} ${ctx.attempt}`);
    await new Promise((r) => setTimeout(r, ORDINARY_MS));
  });
