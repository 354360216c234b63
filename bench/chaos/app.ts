/**
 * The chaos run's app module (`dray worker bench/chaos/app.ts`): four actors on one queue, so that
 * busy loops share threads with ordinary jobs. Every run writes where it started and how it ended to
 * a log outside Redis (CHAOS_LOG_DIR): the checker (checker.ts) trusts that log, not dray, for what
 * really ran. The harness imports this module too, to send; it sets no CHAOS_LOG_DIR and runs nothing.
 */
import { appendFileSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";
import { threadId } from "node:worker_threads";
import { actor, type ActorOptionsInput, type JobContext } from "../../src/mod.ts";
import { nowMs } from "../scenarios.ts";

export const CHAOS_QUEUE = "chaos";

export type JobKind = "plain" | "flaky" | "limited" | "busy";

/** What each kind's payload carries: how long it works, and for flaky jobs how many runs throw first. */
export interface ChaosPayload {
  ms: number;
  fails?: number;
}

/** A line of the run log: `start` on entry, `end` right before the handler returns or throws. */
export type RunLine =
  | { ev: "start"; job: string; run: string; pid: number; thread: number; actor: string; attempt: number; t: number }
  | { ev: "end"; job: string; run: string; pid: number; thread: number; t: number; ok: boolean; error?: string };

/** The error a flaky job throws on its first `fails` attempts. */
export class FlakyError extends Error {
  override name = "FlakyError";
}

/** Records outlive the whole run; retries finish within it. */
const base = { queue: CHAOS_QUEUE, resultTtl: 6 * 3_600_000, minBackoff: 50, maxBackoff: 500, timeLimit: 10_000 } as const;

export const LIMIT = 2;
/** The limited actor's own time limit: a killed worker's slot stays taken this long plus 30 s. */
export const LIMITED_TIME_LIMIT = 3_000;
/** More than the most a flaky payload fails (3), so a flaky job dies only if its workers do. */
export const FLAKY_MAX_RETRIES = 5;

const logDir = process.env.CHAOS_LOG_DIR;
// One file per thread: each line is one append (O_APPEND) to a file no other thread writes.
const logFile = logDir ? join(logDir, `runs-${process.pid}-${threadId}.jsonl`) : undefined;

function note(line: RunLine): void {
  if (logFile) appendFileSync(logFile, JSON.stringify(line) + "\n");
}

/** An actor whose every run is logged; the handler returns `{ run }`, so the record names the run that won. */
function logged(name: string, options: ActorOptionsInput, body: (p: ChaosPayload, ctx: JobContext) => Promise<void>) {
  return actor<ChaosPayload, { run: string }>(name, options, async (p, ctx) => {
    const run = crypto.randomUUID().slice(0, 13);
    const who = { job: ctx.jobId, run, pid: process.pid, thread: threadId };
    note({ ev: "start", ...who, actor: name, attempt: ctx.attempt, t: nowMs() });
    try {
      await body(p, ctx);
    } catch (error) {
      note({ ev: "end", ...who, t: nowMs(), ok: false, error: (error as Error)?.name ?? String(error) });
      throw error;
    }
    note({ ev: "end", ...who, t: nowMs(), ok: true });
    return { run };
  });
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export const chaosActors = {
  /** Works 10-300 ms (from the payload) and completes. */
  plain: logged("chaos_plain", { ...base, maxRetries: 3 }, (p) => sleep(p.ms)),
  /** Throws on its first `fails` attempts, then completes. */
  flaky: logged("chaos_flaky", { ...base, maxRetries: FLAKY_MAX_RETRIES }, async (p, ctx) => {
    await sleep(p.ms);
    if (ctx.attempt <= (p.fails ?? 0)) throw new FlakyError(`attempt ${ctx.attempt} of a job that fails ${p.fails} times`);
  }),
  /** At most LIMIT at once across every worker; over it, deferred. */
  limited: logged("chaos_limited", {
    ...base, maxRetries: 3, timeLimit: LIMITED_TIME_LIMIT, rateLimit: { concurrency: LIMIT, backoff: 200 },
  }, (p) => sleep(p.ms)),
  /** Never returns: hard-killed at its time limit, retried once, then dead-lettered as TimeLimitExceeded. */
  busy: logged("chaos_busy", { ...base, timeLimit: 300, maxRetries: 1 }, () => {
    for (;;) {
      // spin: no await, nothing but terminating the thread stops it
    }
  }),
} as const;

export const ACTOR_OF: Record<JobKind, string> = {
  plain: chaosActors.plain.name, flaky: chaosActors.flaky.name, limited: chaosActors.limited.name, busy: chaosActors.busy.name,
};
