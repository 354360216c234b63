/**
 * What the process pool (processes.ts) and its children (workers/child.ts) say to each other over
 * IPC. Kept apart so that a child loads nothing else, as thread_protocol.ts is for threads.
 */
import type { TlsSettings } from "../config.ts";
import type { SerializedError } from "../errors.ts";
import type { StopReason } from "./deadlines.ts";
import type { JobOutcome, JobRequest } from "./types.ts";

/** Worker to child, over IPC. */
export type ChildCommand =
  /** `slots`: jobs this child runs at once; what it is sent beyond that waits in it, in order. */
  | {
    kind: "init"; modules: string[]; redisUrl: string; prefix: string;
    /** The worker's TLS settings as text (config.ts portableTls). */
    tls?: TlsSettings | undefined; memoryEvery: number; slots: number;
  }
  /** Jobs of one flush for this child, started in this order. */
  | { kind: "run"; jobs: Array<{ seq: number; job: JobRequest }> }
  | { kind: "stop"; seq: number; why: StopReason }
  /** Do not start this waiting job (aborted): it ends as JobAborted. */
  | { kind: "cancel"; seq: number }
  /** The worker shuts down: the waiting jobs come back interrupted; start no more. */
  | { kind: "drain" };

/** Child to worker, over IPC. */
export type ChildReport =
  | { kind: "ready" }
  | { kind: "failed"; error: SerializedError }
  /** These jobs begin now, in this order (sent before they run): their deadlines count from here. */
  | { kind: "start"; seqs: number[] }
  /** The job's handler reached its first await: it is not the one holding the child's CPU. */
  | { kind: "yielded"; seq: number }
  /** Every ~20 ms while jobs run: the child is alive. */
  | { kind: "beat" }
  /** Outcomes of the jobs that finished in one turn of the child's event loop. */
  | { kind: "done"; results: Array<[seq: number, outcome: JobOutcome]> }
  | { kind: "memory"; bytes: number }
  /** An error nothing caught; the child exits right after. */
  | { kind: "crashed"; error: SerializedError };
