/**
 * The worker's side of the history (src/broker/types.ts `HistoryStore`): counts what its supervisor
 * settled, per minute, queue and actor, in memory, and adds them to the store every few seconds,
 * minute and hour buckets in one call, so the dashboard's charts outlive the worker. Counting a job
 * costs what the Prometheus counters cost (src/metrics/registry.ts): map lookups and a few
 * additions, no Redis call.
 */
import { clearInterval, setInterval } from "node:timers";
import type { Logger } from "pino";
import type { HistoryRow, HistoryStore } from "../broker/types.ts";
import { ConfigError } from "../errors.ts";
import type { Events, WorkerEventMap } from "../events.ts";
import type { PoolHooks } from "../executor/types.ts";
import { env } from "../runtime/mod.ts";
import { within } from "../timers.ts";
import { addDuration, addWait, countsOf, mergeTally, newTally, type Tally } from "./buckets.ts";

export const defaultHistoryMs = 5_000;
/** Longer than this, setInterval fires at once instead (Node and Bun clamp it to 1 ms): a busy loop. */
const maxHistoryMs = 2_147_483_647;
const minuteMs = 60_000;
const hourMs = 3_600_000;
/**
 * Minutes one flush adds at most, oldest first. A flush holds one or two; after an outage an hour of
 * kept minutes goes in batches, so that no single script holds Redis for a second of HINCRBYs.
 */
const maxMinutesPerFlush = 5;

/**
 * The flush interval: `option` when given, else env DRAY_HISTORY_MS (how `dray worker` takes it),
 * else 5000; 0 turns the history off. Anything but a whole number of ms is a ConfigError, before the
 * worker starts.
 */
export function historyEvery(option: number | undefined): number {
  if (option !== undefined) {
    if (Number.isInteger(option) && option >= 0 && option <= maxHistoryMs) return option;
    throw new ConfigError(`historyMs must be a whole number of ms (0 turns it off, at most ${maxHistoryMs}), not ${String(option)}`);
  }
  const raw = env("DRAY_HISTORY_MS");
  if (!raw) return defaultHistoryMs;
  const n = Number(raw);
  if (/^\s*\d+\s*$/.test(raw) && n <= maxHistoryMs) return n;
  throw new ConfigError(`DRAY_HISTORY_MS must be a whole number of ms (0 turns it off, at most ${maxHistoryMs}), not "${raw}"`);
}

export interface HistoryRecorderOptions {
  store: HistoryStore;
  logger: Logger;
  /** How often counts are added to the store, ms. */
  everyMs: number;
  /**
   * Counts the store could not take are kept for the next flush, up to this far back, ms; older
   * minutes are dropped (one warning per outage). @default 3_600_000
   */
  keepMs?: number;
  /** The clock, for tests. @default Date.now */
  now?: () => number;
}

/** queue → actor → what it counted. */
type ByQueue = Map<string, Map<string, Tally>>;

export class HistoryRecorder {
  /** Given to the executor (with the metrics' own): it calls these where it stops a job's host. */
  readonly poolHooks: PoolHooks = { timeLimitKill: (job) => void this.#of(job.queue, job.actor).counts.kills++ };
  readonly #o: Required<HistoryRecorderOptions>;
  /** Minute start → its counts, not yet in the store. */
  #minutes = new Map<number, ByQueue>();
  /** The minute counted in last, and its map: most jobs land in the same minute as the one before. */
  #minute = -1;
  #current: ByQueue | undefined;
  #inflight: Promise<boolean> | undefined;
  #timer: ReturnType<typeof setInterval> | undefined;
  #unwatch: (() => void) | undefined;
  #warnedDrop = false;
  #stopping: Promise<void> | undefined;

  constructor(options: HistoryRecorderOptions) {
    this.#o = { keepMs: hourMs, now: Date.now, ...options };
  }

  /**
   * Counts from the supervisor's events, as JobMetrics.watch does and for its reasons: the settler
   * emits each outcome once, with the final decision, whatever path decided it. Call it before the
   * supervisor starts, so that no early job goes uncounted.
   */
  watch(events: Events<WorkerEventMap>): void {
    const offs = [
      events.on("job:start", (e) => {
        const t = this.#of(e.queue, e.actor);
        t.counts.started++;
        // The entry's time is by the broker's clock: a little skew must not make a wait negative.
        addWait(t, Math.max(0, this.#o.now() - e.enqueuedAt));
      }),
      events.on("job:complete", (e) => {
        const t = this.#of(e.queue, e.actor);
        t.counts.completed++;
        addDuration(t, e.duration);
      }),
      events.on("job:retry", (e) => void this.#of(e.queue, e.actor).counts.retried++),
      events.on("job:dead", (e) => void this.#of(e.queue, e.actor).counts.dead++),
      events.on("job:discarded", (e) => void this.#of(e.queue, e.actor).counts[e.status]++),
      events.on("job:returned", (e) => {
        // Other returns (a host stopped under it, shutdown) are not an outcome: the job runs again.
        if (e.reason.startsWith("deferred")) this.#of(e.queue, e.actor).counts.deferred++;
      }),
    ];
    this.#unwatch = () => offs.forEach((off) => off());
  }

  /** Flushes every `everyMs` until stopped. The timer never keeps a process alive on its own. */
  start(): void {
    if (this.#timer || this.#stopping) return;
    this.#timer = setInterval(() => void this.flush(), this.#o.everyMs);
    this.#timer.unref();
  }

  /**
   * Adds what was counted to the store, unless the last flush is still waiting (on a patient
   * connection it waits for Redis to come back; another would only queue behind it). Never rejects:
   * counts that did not land are kept for the next flush.
   */
  flush(): Promise<void> {
    return this.#flushOnce().then(() => undefined);
  }

  /**
   * One add of the oldest minutes kept, at most {@link maxMinutesPerFlush}; true when they landed
   * (or nothing was left to add).
   */
  #flushOnce(): Promise<boolean> {
    this.#trim();
    if (this.#inflight) return this.#inflight;
    if (this.#minutes.size === 0) return Promise.resolve(true);
    const taken = new Map<number, ByQueue>();
    for (const minute of [...this.#minutes.keys()].sort((a, b) => a - b).slice(0, maxMinutesPerFlush)) {
      taken.set(minute, this.#minutes.get(minute)!);
      this.#minutes.delete(minute);
    }
    this.#current = undefined;
    this.#minute = -1;
    const rows = rowsOf(taken);
    this.#inflight = attempt(() => this.#o.store.add(rows))
      .then(() => {
        this.#warnedDrop = false;
        return true;
      }, (error: unknown) => {
        this.#o.logger.debug({ err: error }, "could not write the job history; keeping the counts for the next try");
        this.#putBack(taken);
        this.#trim();
        return false;
      })
      .finally(() => (this.#inflight = undefined));
    return this.#inflight;
  }

  /**
   * Stops counting and flushing, and adds what is left; gives up after `ms` (Redis away), and what
   * was counted since the last flush is lost.
   */
  stop(ms = 1_000): Promise<void> {
    return (this.#stopping ??= (async () => {
      clearInterval(this.#timer);
      this.#unwatch?.();
      const deadline = Date.now() + ms;
      await within(this.#inflight, ms);
      // Oldest minutes first, a few per add, until none is left, one fails, or time is up.
      while (this.#minutes.size > 0 && (await within(this.#flushOnce(), deadline - Date.now())) === true);
      if (this.#minutes.size > 0) {
        this.#o.logger.debug({ ms }, "the last seconds of job history were not written: redis did not take them in time");
      }
    })());
  }

  #of(queue: string, actor: string): Tally {
    const now = this.#o.now();
    const minute = now - (now % minuteMs);
    let byQueue = this.#current;
    if (minute !== this.#minute || !byQueue) {
      byQueue = this.#minutes.get(minute);
      if (!byQueue) this.#minutes.set(minute, (byQueue = new Map()));
      this.#minute = minute;
      this.#current = byQueue;
    }
    let byActor = byQueue.get(queue);
    if (!byActor) byQueue.set(queue, (byActor = new Map()));
    let t = byActor.get(actor);
    if (!t) byActor.set(actor, (t = newTally()));
    return t;
  }

  /** Merges counts that did not land into what was counted since. */
  #putBack(taken: Map<number, ByQueue>): void {
    for (const [minute, byQueue] of taken) {
      let into = this.#minutes.get(minute);
      if (!into) {
        this.#minutes.set(minute, byQueue);
        continue;
      }
      for (const [queue, byActor] of byQueue) {
        let intoActors = into.get(queue);
        if (!intoActors) into.set(queue, (intoActors = new Map()));
        for (const [actor, t] of byActor) {
          const existing = intoActors.get(actor);
          if (existing) mergeTally(existing, t);
          else intoActors.set(actor, t);
        }
      }
    }
  }

  /** Drops kept minutes older than `keepMs`: an outage must not grow the worker's memory without end. */
  #trim(): void {
    const oldest = this.#o.now() - this.#o.keepMs;
    let dropped = 0;
    for (const minute of this.#minutes.keys()) {
      if (minute + minuteMs > oldest) continue;
      this.#minutes.delete(minute);
      if (minute === this.#minute) this.#current = undefined;
      dropped++;
    }
    if (dropped > 0 && !this.#warnedDrop) {
      this.#warnedDrop = true;
      this.#o.logger.warn({ keepMs: this.#o.keepMs },
        "redis has not taken the job history for too long: dropping its oldest minutes (warned once until it does)");
    }
  }
}

/** The rows of one flush: each minute's counts, and the same summed per hour. */
function rowsOf(minutes: Map<number, ByQueue>): HistoryRow[] {
  const rows: HistoryRow[] = [];
  const hours = new Map<string, HistoryRow & { tally: Tally }>();
  for (const [at, byQueue] of minutes) {
    const hour = at - (at % hourMs);
    for (const [queue, byActor] of byQueue) {
      for (const [actor, t] of byActor) {
        rows.push({ resolution: "minute", at, queue, actor, counts: countsOf(t) });
        const key = `${hour}|${queue}|${actor}`;
        let h = hours.get(key);
        if (!h) hours.set(key, (h = { resolution: "hour", at: hour, queue, actor, counts: {}, tally: newTally() }));
        mergeTally(h.tally, t);
      }
    }
  }
  for (const { tally, ...row } of hours.values()) rows.push({ ...row, counts: countsOf(tally) });
  return rows;
}

/** Runs `call`, turning a synchronous throw (a custom store) into a rejection: one path for both. */
function attempt(call: () => Promise<void>): Promise<void> {
  try {
    return call();
  } catch (error) {
    return Promise.reject(error);
  }
}
