/**
 * What a benchmark job does, shared by every system under test (dray's fixture actors, the bare
 * Streams loop, BullMQ's processors) so that they all run exactly the same handler.
 */
export type Scenario = "noop" | "cpu" | "io" | "mixed";
export const SCENARIOS: readonly Scenario[] = ["noop", "cpu", "io", "mixed"];

/** A job's payload. `t` and `k` are set only during the latency run. */
export interface BenchPayload {
  i: number;
  /** When the job was sent, in epoch ms with sub-ms precision ({@link nowMs}). */
  t?: number;
  /** The Redis list the handler appends "<start-latency> <complete-latency>" to. */
  k?: string;
}

/**
 * Epoch ms with sub-millisecond precision. Every process on the box reads the same clock, so a
 * value taken in the sender and one taken in a worker thread can be subtracted.
 */
export function nowMs(): number {
  return performance.timeOrigin + performance.now();
}

const CPU_MS = 1;
const IO_MS = 10;

/** The job's work: nothing, ~1 ms of CPU, a 10 ms await, or a mix (1/4 noop, 1/4 cpu, 1/2 io). */
export function work(scenario: Scenario, i: number): Promise<void> | undefined {
  switch (scenario) {
    case "noop":
      return undefined;
    case "cpu":
      return spin(CPU_MS);
    case "io":
      return sleep(IO_MS);
    case "mixed": {
      const kind = i % 4;
      return kind === 0 ? undefined : kind === 1 ? spin(CPU_MS) : sleep(IO_MS);
    }
  }
}

/**
 * Runs one job and, in the latency run, records its latencies with `push` (an RPUSH on the
 * handler's own connection: one extra command per job, which is why only that run does it).
 */
export async function handle(scenario: Scenario, p: BenchPayload, push: (key: string, value: string) => Promise<unknown>): Promise<void> {
  const started = p.t === undefined ? 0 : nowMs();
  const pending = work(scenario, p.i);
  if (pending) await pending;
  if (p.k !== undefined && p.t !== undefined) {
    await push(p.k, `${(started - p.t).toFixed(3)} ${(nowMs() - p.t).toFixed(3)}`);
  }
}

function spin(ms: number): undefined {
  // Busy for `ms` of wall time: on an idle core that is `ms` of CPU.
  const end = performance.now() + ms;
  while (performance.now() < end) {
    // burn
  }
  return undefined;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
