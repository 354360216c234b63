/**
 * The operator's side of dray, in one place: what `dray queues` and `dray workers` print, what the
 * metrics endpoint exports, and what a dashboard shows and steers all come through here, so that
 * "how many are dead" has one answer. Everything goes through the broker, so a MemoryBroker in a
 * user's tests answers alike.
 */
import type { Broker, BrowsedJob, BrowseOptions, JobState, Page, QueueStats, WorkerInfo } from "./broker/types.ts";
import { useBroker } from "./client.ts";
import { parse } from "./cron/cron.ts";
import type { CronRun, PublishedCron } from "./cron/history.ts";
import type { CronStore } from "./cron/store.ts";
import { cronStoreFor } from "./cron/stores.ts";
import { ConfigError } from "./errors.ts";
import { NAME_PATTERN } from "./message.ts";
import { actorStats, throughput, type ActorStats, type ThroughputOptions, type ThroughputPoint } from "./history/read.ts";
import type { JobRecord } from "./results/types.ts";

export type { BrowsedJob, JobState, Page, WorkerInfo } from "./broker/types.ts";
export type { CronRun } from "./cron/history.ts";
export type { ActorStats, ThroughputOptions, ThroughputPoint } from "./history/read.ts";

/** A queue's counts and whether it is paused. */
export interface QueueOverview extends QueueStats {
  paused: boolean;
}

/** Every queue workers declared or an operator paused, by name, with its counts. */
export function queueOverview(broker: Broker = useBroker()): Promise<QueueOverview[]> {
  return liveOverview(broker)();
}

/**
 * queueOverview for a caller that asks again and again (a page that refreshes): the queues named in
 * the previous answer are counted while their names are read, so that on a connection that
 * pipelines what one tick sends (RedisBroker's autoPipelining) a refresh is one round trip. A queue
 * new since then costs one more.
 */
export function liveOverview(broker: Broker = useBroker()): () => Promise<QueueOverview[]> {
  let known: string[] = [];
  const count = (names: string[]) => names.length === 0 ? Promise.resolve([])
    : broker.statsMany ? broker.statsMany(names) : Promise.all(names.map((queue) => broker.stats(queue)));
  return async () => {
    const [declared, paused, counted] = await Promise.all([broker.queues(), broker.control.paused(), count(known)]);
    const names = [...new Set([...declared, ...paused])].sort();
    const seen = new Set(known);
    const more = await count(names.filter((name) => !seen.has(name)));
    known = names;
    const byName = new Map([...counted, ...more].map((s) => [s.queue, s]));
    return names.map((name) => ({ ...byName.get(name)!, paused: paused.includes(name) }));
  };
}

/**
 * Stops every worker reading `queue` within a second; running jobs finish, and sends, delays and
 * retries still land. `declared` is false when no worker has declared the queue yet: the pause
 * holds for the workers that will.
 */
export async function pauseQueue(queue: string, broker: Broker = useBroker()): Promise<{ declared: boolean }> {
  checkQueue(queue);
  await broker.control.pause(queue);
  return { declared: (await broker.queues()).includes(queue) };
}

/** Workers read `queue` again within a second. `wasPaused` is false when it was not paused. */
export async function resumeQueue(queue: string, broker: Broker = useBroker()): Promise<{ wasPaused: boolean }> {
  checkQueue(queue);
  return { wasPaused: await broker.control.resume(queue) };
}

/** The workers alive now (their heartbeat has not lapsed), oldest first. */
export function getWorkers(broker: Broker = useBroker()): Promise<WorkerInfo[]> {
  return broker.control.workers();
}

function checkQueue(queue: string): void {
  if (typeof queue !== "string" || !NAME_PATTERN.test(queue)) {
    throw new ConfigError(`queue name ${JSON.stringify(queue)} is invalid: use 1-200 letters, digits and _ . : -`);
  }
}

/** A cron as tickers published it, with when it runs next and its newest run. */
export interface CronOverview extends PublishedCron {
  /** ms since epoch; undefined when the expression has no future run. */
  nextRun?: number;
  lastRun?: CronRun;
}

/** Every cron a worker or scheduler published, by name (what `dray cron list` prints). */
export async function listCrons(broker: Broker = useBroker(), now: number = Date.now()): Promise<CronOverview[]> {
  const store = cronStore(broker);
  const published = await store.published();
  const last = await Promise.all(published.map((c) => store.history(c, 1)));
  return published.map((c, i) => {
    const next = parse(`cron ${JSON.stringify(c.name)}`, c.expression, c.timezone).nextRun(new Date(now));
    return { ...c, ...(next ? { nextRun: next.getTime() } : {}), ...(last[i]![0] ? { lastRun: last[i]![0] } : {}) };
  });
}

/** The newest runs of a published cron, newest first; undefined when no cron has that name. */
export async function cronRuns(name: string, options: { limit?: number; broker?: Broker } = {}): Promise<CronRun[] | undefined> {
  const broker = options.broker ?? useBroker();
  const store = cronStore(broker);
  const cron = (await store.published()).find((c) => c.name === name);
  return cron ? await store.history(cron, options.limit ?? 50) : undefined;
}

/** What is known of one job: its record (for actors that keep results) and its message while it is in a queue. */
export interface JobDetail {
  id: string;
  queue: string;
  record?: JobRecord;
  /** The message where it waits or runs (ready, running, delayed, dead); gone once the job settled. */
  found?: BrowsedJob;
}

/**
 * Looks a job up by id: its record first (which names its queue), else its message in each queue,
 * scanning at most `scanLimit` entries per list (job ids are not indexed). Undefined when unknown.
 */
export async function inspectJob(id: string, options: { queue?: string; scanLimit?: number; broker?: Broker } = {}): Promise<JobDetail | undefined> {
  const broker = options.broker ?? useBroker();
  if (typeof id !== "string" || id.length === 0 || id.length > 200) throw new ConfigError("a job id is 1-200 characters");
  if (options.queue !== undefined) checkQueue(options.queue);
  const scan = options.scanLimit === undefined ? {} : { scanLimit: options.scanLimit };
  const queue = options.queue ?? await broker.jobs.locate(id);
  if (queue !== undefined) {
    const [record, found] = await Promise.all([broker.jobs.get(queue, id), broker.findJob(queue, id, scan)]);
    return record || found ? { id, queue, ...(record ? { record } : {}), ...(found ? { found } : {}) } : undefined;
  }
  const queues = await broker.queues();
  const found = await Promise.all(queues.map((q) => broker.findJob(q, id, scan)));
  const at = found.findIndex((f) => f !== undefined);
  return at < 0 ? undefined : { id, queue: queues[at]!, found: found[at]! };
}

function cronStore(broker: Broker): CronStore {
  const store = cronStoreFor(broker);
  if (!store) throw new ConfigError("crons are kept by the Redis and memory brokers only");
  return store;
}

/** A page of the jobs in one state of a queue (see Broker.browse for the order). */
export function browseQueue(queue: string, state: JobState, options: BrowseOptions & { broker?: Broker } = {}): Promise<Page<BrowsedJob>> {
  checkQueue(queue);
  if (!jobStates.includes(state)) throw new ConfigError(`job state ${JSON.stringify(state)} is not one of ${jobStates.join(", ")}`);
  const { broker = useBroker(), ...page } = options;
  return broker.browse(queue, state, page);
}

export const jobStates: readonly JobState[] = ["ready", "running", "delayed", "dead"];

/** Dead letters back to their queue, retries reset: these letters, or all of them. Returns how many moved. */
export function requeueDead(queue: string, ids?: string[], broker: Broker = useBroker()): Promise<number> {
  checkQueue(queue);
  return broker.requeue(queue, ids);
}

/** Dead letters removed for good: these, or all of them. Returns how many went. */
export function purgeDead(queue: string, ids?: string[], broker: Broker = useBroker()): Promise<number> {
  checkQueue(queue);
  return broker.purgeDeadLetters(queue, ids);
}

/** Per actor over the last hour or day, from the rollups workers write: runs, failures, kills, timings. */
export function actorHistory(window: "hour" | "day", broker: Broker = useBroker()): Promise<ActorStats[]> {
  if (window !== "hour" && window !== "day") throw new ConfigError(`window is "hour" or "day", not ${JSON.stringify(window)}`);
  return actorStats(broker.history, window);
}

/** Jobs per minute over a range of at most a day (minutes are kept three hours), all queues or one. */
export function jobsPerMinute(options: ThroughputOptions, broker: Broker = useBroker()): Promise<ThroughputPoint[]> {
  if (options.queue !== undefined) checkQueue(options.queue);
  return throughput(broker.history, options);
}
