import type { SerializedError } from "../errors.ts";

/**
 * Where a job is. `delayed` covers both a send with `delay`/`at` and the backoff before a retry (the
 * record then carries the last error); `failed` is a job that ran but whose outcome was refused (a
 * result over `maxResultBytes`), not retried and not dead-lettered; `dead` is in the dead-letter queue;
 * `skipped` was removed without running because running it was not wanted (a cron tick whose
 * previous run still held the overlap lock), the reason in `error`.
 */
export type JobStatus = "queued" | "delayed" | "running" | "completed" | "failed" | "dead" | "aborted" | "skipped";

export const FINISHED: ReadonlySet<JobStatus> = new Set(["completed", "failed", "dead", "aborted", "skipped"]);

/** What dray keeps about a job (for actors with `resultTtl > 0`), as JSON under `{p:q}:job:<id>`. */
export interface JobRecord {
  id: string;
  actor: string;
  queue: string;
  status: JobStatus;
  /** When it was first sent (ms since epoch). */
  enqueuedAt: number;
  /** When a delayed job (or a retry) is due. */
  dueAt?: number;
  /** When its latest run started. */
  startedAt?: number;
  /** When it settled for good (completed, failed, dead, aborted, skipped). */
  finishedAt?: number;
  /** Runs started so far. */
  attempts: number;
  /** The return value of a completed job. */
  result?: unknown;
  /** The last error: of a failed, dead or aborted job, or of the attempt before a retry; why a job was skipped. */
  error?: SerializedError;
}

/** What `job.abort()` did. */
export interface AbortResult {
  /** False when the job had already finished: then nothing changed. */
  aborted: boolean;
  /** The job's status when the abort arrived. */
  status: JobStatus;
  message: string;
}

/** What waiting ended with; the job handle turns it into a value or an error. */
export type WaitResult =
  | { kind: "finished"; record: JobRecord }
  | { kind: "unknown" }
  /** `record` is the job as it stood at the timeout (absent when Redis did not answer). */
  | { kind: "timeout"; record?: JobRecord };

/**
 * Job records as a broker keeps them. Writes happen inside the broker's own settle calls (the record
 * goes in the same transaction as the ack); this is the reading, waiting and aborting side.
 */
export interface JobStore {
  /** The record with its live status (a queued job a worker holds reads "running"); undefined when unknown. */
  get(queue: string, id: string): Promise<JobRecord | undefined>;
  /** Waits, without polling, until the job finishes or `timeoutMs` passes (undefined: no limit). */
  wait(queue: string, id: string, timeoutMs?: number): Promise<WaitResult>;
  /**
   * A queued or delayed job is marked aborted and never runs; for a running one, the worker holding
   * it is told to stop it. Undefined when the job is unknown.
   */
  abort(queue: string, id: string): Promise<AbortResult | undefined>;
  /** The queue a job id has a record in (for handles made from a bare id). */
  locate(id: string): Promise<string | undefined>;
  /**
   * Worker side: calls `onAbort` with each job aborted on these queues that has not settled yet, now
   * (aborts made while no worker listened) and from then on. Returns a function that stops listening.
   */
  watchAborts(queues: string[], onAbort: (id: string) => void): Promise<() => Promise<void>>;
}
