import type { SerializedError } from "../errors.ts";
import type { Delivery, DeliveryRef, MalformedDelivery, Message } from "../message.ts";
import type { JobRecord, JobStore } from "../results/types.ts";

/** What a worker publishes about each actor so that senders can route by name. */
export interface ActorMeta {
  name: string;
  queue: string;
  priority: number;
}

export interface SendRequest {
  message: Message;
  /** ms from now (by the broker's clock). */
  delay?: number;
  /** absolute ms since epoch. */
  at?: number;
}

export interface DeadLetter {
  /** The letter's id in the dead-letter queue (what `requeue` takes). */
  id: string;
  queue: string;
  message: Message | { raw: string };
  retries: number;
  error: SerializedError;
  at: number;
}

export interface QueueStats {
  queue: string;
  ready: number;
  running: number;
  delayed: number;
  dead: number;
}

/** Where a job waits or runs in its queue: what {@link Broker.browse} lists. */
export type JobState = "ready" | "running" | "delayed" | "dead";

/** A job as it sits in its queue now, read without taking or changing it. */
export interface BrowsedJob {
  state: JobState;
  /** The job id (the message's `id`); for an entry that cannot be decoded, its locator. */
  id: string;
  /**
   * Where it sits: the stream entry id (ready, running; the letter id for dead, what `requeue` and
   * `purgeDeadLetters` take), or for delayed the due time and member's position (opaque).
   */
  ref: string;
  queue: string;
  /** The decoded message, or the raw body when it cannot be decoded. */
  message: Message | { raw: string };
  /** Attempts already made. */
  retries: number;
  /** running: the consumer (worker id) holding it, when its run started (known for jobs with a record). */
  consumer?: string;
  startedAt?: number;
  /** running: times it was delivered (more than one: reclaimed from a worker that died). */
  deliveries?: number;
  /** delayed: when it is due (ms since epoch). */
  dueAt?: number;
  /** dead: the error it died of and when. */
  error?: SerializedError;
  deadAt?: number;
}

/** One page of a list read from the broker: pass `next` back as `cursor` for the following page. */
export interface Page<T> {
  items: T[];
  /** Absent on the last page. */
  next?: string;
}

export interface BrowseOptions {
  /** At most this many per page (1-500). @default 50 */
  limit?: number;
  /** `next` of the previous page. */
  cursor?: string;
}

export interface Acked {
  delivery: Delivery;
  /** How long a dedup key and the job's record stay after the job settled (0 = released at once). */
  keepMs: number;
  /**
   * The job's final record (completed, or failed/aborted when discarded), written in the same
   * transaction as the ack when `keepMs > 0`. Without it (or with keepMs 0) a sender's record is removed.
   */
  record?: JobRecord;
}

export interface RetryOptions {
  /** Count the attempt (a failure); false for a deferral such as a rate limit. @default true */
  charge?: boolean;
  /** The job's record while it waits (delayed, with the last error); written in the same call. */
  record?: JobRecord;
}

/** A distributed limit on starting jobs (src/middleware/rate_limit.ts). */
export type LimitRule =
  /** At most `limit` running at once; a slot is leased for `leaseMs` in case its worker dies. */
  | { kind: "concurrent"; limit: number; leaseMs: number }
  /** At most `limit` started in any `windowMs` (a sliding window). */
  | { kind: "window"; limit: number; windowMs: number };

export interface RateLimits {
  /** Takes a slot: 0 when granted, else ms until one may free up (-1: no telling). */
  acquire(key: string, rule: LimitRule, token: string): Promise<number>;
  /** Gives a concurrent slot back (window slots are never given back: they age out). */
  release(key: string, token: string): Promise<void>;
}

/** A live worker, as it last said in its heartbeat (see {@link Control.heartbeat}). */
export interface WorkerInfo {
  /** The worker's consumer name: `<host>-<pid>-<random>`. */
  id: string;
  host: string;
  pid: number;
  runtime: string;
  queues: string[];
  isolation: string;
  concurrency: number;
  threads: number;
  /** ms since epoch. */
  startedAt: number;
  /** When it last beat, and when its entry lapses unless it beats again (ms since epoch). */
  beatAt: number;
  expiresAt: number;
  /** Jobs running in it now. */
  running: number;
  /** Jobs it settled since it started: all of them, and those that failed (retried, dead or discarded). */
  processed: number;
  failed: number;
}

/**
 * The operator's levers and the workers' roll call: paused queues and live workers. State lives in
 * the broker (Redis for RedisBroker), so it holds across restarts and for every worker.
 */
export interface Control {
  /** Workers stop reading `queue` (running jobs finish; sends, delays and retries still land). */
  pause(queue: string): Promise<void>;
  /** Workers read `queue` again. True when it was paused. */
  resume(queue: string): Promise<boolean>;
  paused(): Promise<string[]>;
  /** Records `info` as live until `info.expiresAt`; a worker calls it every few seconds. */
  heartbeat(info: WorkerInfo): Promise<void>;
  /** A worker that stops cleanly takes itself off the roll. */
  removeWorker(id: string): Promise<void>;
  /** Workers whose entry has not lapsed, by start time; lapsed entries are pruned on the way. */
  workers(): Promise<WorkerInfo[]>;
}

/** The resolution of a rollup: one bucket per minute (kept hours) or per hour (kept days). */
export type HistoryResolution = "minute" | "hour";

/**
 * What workers did, per queue and actor and per minute or hour: a bag of named counts (outcomes,
 * duration and wait buckets; src/history/ names them). Each worker adds what it counted every few
 * seconds in one call; readers (the dashboard) ask for a time range. Buckets expire on their own.
 */
export interface HistoryRow {
  resolution: HistoryResolution;
  /** Start of the minute or hour, ms since epoch. */
  at: number;
  queue: string;
  actor: string;
  counts: Record<string, number>;
}

export interface HistoryStore {
  /** Adds each row's counts to what its bucket holds (one round trip for all of them). */
  add(rows: HistoryRow[]): Promise<void>;
  /** The rows of every bucket of `resolution` whose start is in [from, to], ms since epoch. */
  read(resolution: HistoryResolution, from: number, to: number): Promise<HistoryRow[]>;
}

/**
 * The narrow interface the rest of dray uses. Every implementation (Redis, in-memory) must pass
 * `test/broker_conformance.ts`. Deliveries are at-least-once: a read entry stays owned by this
 * consumer until it is settled (ack, retry, deadLetter, giveBack) or its claim lapses.
 */
export interface Broker {
  readonly prefix: string;
  /** This worker's name on the queues where it has one (on Redis its consumer, `<host>-<pid>-<random>`). */
  readonly consumer?: string;
  /** Sends messages in one round trip; `false` where a job with that id is already known. */
  enqueue(requests: SendRequest[]): Promise<boolean[]>;
  /**
   * Up to `count` deliveries from `queues`, waiting up to `blockMs` when none is ready. Jobs with a
   * record read "running" from now until they settle.
   */
  read(queues: string[], count: number, blockMs: number): Promise<Array<Delivery | MalformedDelivery>>;
  /**
   * Settling: each of these changes only deliveries this consumer still holds. One whose claim
   * lapsed and was reclaimed (or that was settled already) is left as it is and reported lost: its
   * outcome must not overwrite the new holder's.
   */
  /** Jobs that finished: removed for good. Returns the refs not acked because their lease was lost. */
  ack(done: Acked[]): Promise<DeliveryRef[]>;
  /**
   * Back to the delayed set after `delayMs`, with one more retry counted (unless `charge: false`).
   * False when the lease was lost: nothing changed.
   */
  retry(delivery: Delivery, delayMs: number, options?: RetryOptions): Promise<boolean>;
  /** To the dead-letter queue; `record` (status dead, the error) is kept `keepMs` beside it. False: lease lost. */
  deadLetter(delivery: Delivery | MalformedDelivery, error: SerializedError, keepMs?: number, record?: JobRecord): Promise<boolean>;
  /** Unstarted or interrupted work goes back to its queue, not charged an attempt. Returns the lost refs. */
  giveBack(deliveries: Delivery[]): Promise<DeliveryRef[]>;
  /** Renews this consumer's claim on running deliveries so no one reclaims them. Returns the lost refs. */
  extend(refs: DeliveryRef[]): Promise<DeliveryRef[]>;
  /**
   * Deliveries this consumer holds that never reached it: a connection dropped with a read's reply
   * on it. `holds` says which refs the caller already has. Without it, such entries wait for the
   * visibility timeout and count as a lost claim.
   */
  recover?(queues: string[], holds: (ref: DeliveryRef) => boolean): Promise<Array<Delivery | MalformedDelivery>>;
  publishActors(actors: ActorMeta[]): Promise<void>;
  /**
   * Resolves once the broker can take commands, for a worker's start: a broker whose commands wait
   * for the connection by themselves need not have it.
   */
  connected?(): Promise<void>;
  lookupActor(name: string): Promise<ActorMeta | undefined>;
  deadLetters(queue: string, options?: { limit?: number }): Promise<DeadLetter[]>;
  /** Dead letters back to their queue with retries reset; all of them when `ids` is omitted. */
  requeue(queue: string, ids?: string[]): Promise<number>;
  /** Removes dead letters for good: those with these letter ids, or all of them. Returns how many went. */
  purgeDeadLetters(queue: string, ids?: string[]): Promise<number>;
  /**
   * A page of the jobs in one state of a queue, in the order they would be taken (ready: highest
   * priority first, then oldest; running: oldest delivery first; delayed: soonest due; dead: newest
   * first). Reads only the page asked for, never a whole stream.
   */
  browse(queue: string, state: JobState, options?: BrowseOptions): Promise<Page<BrowsedJob>>;
  /**
   * The message of job `id` while it is in `queue` (ready, running, delayed or dead), looking at no
   * more than `scanLimit` entries of each list (default 10,000): a job id is not indexed, and a
   * finished job's message is gone. Undefined when not found within the limit.
   */
  findJob(queue: string, id: string, options?: { scanLimit?: number }): Promise<BrowsedJob | undefined>;
  stats(queue: string): Promise<QueueStats>;
  /** The stats of many queues at once, in fewer round trips than one `stats` each (src/operations.ts uses it). */
  statsMany?(queues: string[]): Promise<QueueStats[]>;
  queues(): Promise<string[]>;
  /** Job records: status, results, waiting, abort (src/results/). */
  readonly jobs: JobStore;
  /** Slots of distributed rate limiters. */
  readonly limits: RateLimits;
  /** Paused queues and live workers (src/operations.ts reads and steers them). */
  readonly control: Control;
  /** Per-minute and per-hour rollups of what workers did (src/history/). */
  readonly history: HistoryStore;
  /** Stops a pending blocking read so that shutdown is prompt. */
  interrupt(): void;
  close(): Promise<void>;
}
