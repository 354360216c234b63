import type { SerializedError } from "../errors.ts";

/** What the supervisor hands an executor: plain data, so it can cross a thread or process boundary. */
export interface JobRequest {
  id: string;
  actor: string;
  queue: string;
  payload: unknown;
  /** 1-based. */
  attempt: number;
  /** ms; the executor stops the job at this limit. */
  timeLimit: number;
  /** JSON that middleware attached; the handler's `ctx.meta`. */
  meta?: Record<string, unknown>;
}

export type JobOutcome =
  /** The handler returned. */
  | { status: "ok"; value: unknown; duration: number }
  /**
   * The handler threw (or was stopped at its time limit). `final` marks errors that must not be
   * retried: schema failures and the actor's `throws`.
   */
  | { status: "error"; error: SerializedError; final: boolean; duration: number }
  /**
   * The job did not finish through no fault of its own (its thread was stopped because a neighbour
   * hung, or the executor is closing): it goes back to the queue without being charged an attempt.
   */
  | { status: "interrupted"; reason: string };

/**
 * Runs jobs somewhere (in-process, a thread pool, child processes) and keeps time limits. The
 * supervisor never calls a handler itself; it only talks to this.
 */
export interface Executor {
  /** How many jobs may run at once; the supervisor reads no more than the free slots. */
  readonly capacity: number;
  /** Warm up (start threads, import app modules) before the first read. */
  start(): Promise<void>;
  /** Never rejects: every failure is an outcome. */
  run(job: JobRequest): Promise<JobOutcome>;
  /** Stops cooperatively (signal) then for good; the job's outcome becomes a TimeLimitExceeded-like error. */
  abort?(jobId: string, reason: string): void;
  /**
   * Shutting down: jobs handed over but not started yet (prefetched) come back as interrupted, soon,
   * instead of starting; running jobs go on.
   */
  stopStarting?(): void;
  /** Running jobs get `graceMs` to finish; what is still running after that is interrupted. */
  close(graceMs: number): Promise<void>;
  /** Threads or processes that took their app modules and can run jobs now; absent without a pool (inline). */
  hosts?(): number;
}

/**
 * What a thread or process pool tells whoever watches it (the worker's metrics, src/metrics/).
 * Called synchronously where it happens; must not throw.
 */
export interface PoolHooks {
  /** A job ran past its time limit, ignored its signal, and its thread or process was stopped. */
  timeLimitKill?(job: JobRequest): void;
  /** A thread or process is gone and another takes its place: stopped (time limit, abort, memory) or died. */
  hostReplaced?(): void;
}
