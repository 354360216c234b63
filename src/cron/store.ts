import type { Message } from "../message.ts";
import type { CronJob } from "./cron.ts";
import type { CronRun, PublishedCron } from "./history.ts";

/** One write of a ticker's pass; a pass sends all of them together (see {@link CronStore.write}). */
export type CronWrite =
  /** First sight of a cron: its last tick handled becomes `now`, unless another ticker just set it. */
  | { kind: "begin"; job: CronJob; now: number }
  /**
   * Claims ticks and enqueues their jobs in one atomic step: a tick is sent if it is newer than the
   * last tick handled and not later than the store's clock, and the last tick handled moves to
   * `newLast` only forward and only up to that clock.
   */
  | { kind: "claim"; job: CronJob; newLast: number; messages: Message[] };

/** One step of a cron run's overlap lock and history (see src/cron/runs.ts). */
export interface CronRunStep {
  queue: string;
  cron: string;
  /**
   * start: take the lock (free, or held by this same job: a redelivery) and record `run`; if another
   * job holds it, record `skipped` instead. A lockTtl of 0 takes no lock.
   * finish: release the lock if this job holds it, and record `run`.
   */
  mode: "start" | "finish";
  jobId: string;
  lockTtl: number;
  /** One per attempt: a redelivery keeps its attempt number and so overwrites the record. */
  runId: string;
  run: CronRun;
  skipped?: CronRun;
  /** Where the run sorts in the history: its start time. */
  score: number;
  /** Runs kept; the oldest beyond it are trimmed. */
  cap: number;
}

/** A running cron job's hold on its cron's overlap lock. */
export interface CronLock {
  queue: string;
  cron: string;
  jobId: string;
  /** How long the lock lasts from the renewal on, ms. */
  lockTtl: number;
}

/**
 * What a renewal found: `renewed` (this job held the lock; it now lasts lockTtl from now), `expired`
 * (nobody holds it; left free) or `taken` (another job holds it; left alone).
 */
export type CronRenewal = "renewed" | "expired" | "taken";

/**
 * Where tickers and the run middleware keep cron state: the last tick handled of each cron, the
 * overlap locks and the run histories. The Redis store is shared by every ticker of every process
 * (src/cron/redis_store.ts); the memory store serves one process, with the MemoryBroker.
 */
export interface CronStore {
  /** The store's clock (ms) and each cron's last tick handled, undefined for one never seen. */
  read(jobs: CronJob[]): Promise<{ now: number; last: Array<number | undefined> }>;
  /**
   * Applies one pass's writes in order and in one round trip. Per write: begin gives 1 when this
   * ticker set the start, else 0; claim gives the number of jobs enqueued, or -1 when another ticker
   * had already handled these ticks.
   */
  write(writes: CronWrite[]): Promise<number[]>;
  /** Start: 1 when the run may go ahead, 0 when it was skipped. Finish: 1. */
  run(step: CronRunStep): Promise<number>;
  /** Extends the overlap lock by lockTtl, only if `jobId` holds it: a run longer than lockTtl keeps it. */
  renew(lock: CronLock): Promise<CronRenewal>;
  /** Tells the tools which crons exist (the CLI lists them without the app modules). */
  publish(jobs: Iterable<CronJob>): Promise<void>;
  /** The crons tickers published, by name. */
  published(): Promise<PublishedCron[]>;
  /** The newest runs of a cron, newest first. */
  history(cron: { name: string; queue: string }, limit?: number): Promise<CronRun[]>;
}
