/**
 * What the dashboard's charts and per-actor page ask of the history (src/broker/types.ts
 * `HistoryStore`): jobs per minute, and each actor's runs, failures and timings over the last hour or
 * day. One read of the store each: up to 60 minute buckets or 24 hour buckets, in one round trip.
 */
import type { HistoryResolution, HistoryStore } from "../broker/types.ts";
import { ConfigError } from "../errors.ts";
import { addCounts, newTally, OUTCOMES, percentile, type Outcome, type Tally } from "./buckets.ts";

const minuteMs = 60_000;
const hourMs = 3_600_000;
const maxThroughputMs = 24 * hourMs;

/** Outcomes as the history counts them, summed over what a point or a row covers. */
export interface OutcomeCounts {
  completed: number;
  retried: number;
  dead: number;
  aborted: number;
  skipped: number;
  /** Given back uncharged by a rate limit. */
  deferred: number;
  /** Time-limit kills of a thread or process. */
  kills: number;
}

/** One minute of a throughput chart: what every worker counted in it, summed over actors. */
export interface ThroughputPoint extends OutcomeCounts {
  /** Start of the minute, ms since epoch. */
  at: number;
  /** Runs started. */
  started: number;
  /** Runs that did not succeed: retried, dead or failed (result refused). */
  failed: number;
}

export interface ThroughputOptions {
  /** ms since epoch; the minute it falls in is the first point. */
  from: number;
  /** ms since epoch; the minute it falls in is the last point. */
  to: number;
  /** Only this queue's actors. @default all */
  queue?: string;
}

/**
 * One point per minute from `from` to `to`, minutes nobody counted in at zero (a chart needs the gap
 * drawn, not skipped). Minute buckets are kept three hours: older minutes read as zero. A range of
 * more than a day is a ConfigError: its points are made one by one, and minutes that old are gone.
 */
export async function throughput(store: HistoryStore, options: ThroughputOptions): Promise<ThroughputPoint[]> {
  if (!Number.isFinite(options.from) || !Number.isFinite(options.to) || options.to - options.from > maxThroughputMs) {
    throw new ConfigError(`throughput reads at most a day of minutes, not from ${options.from} to ${options.to}`);
  }
  const first = Math.floor(options.from / minuteMs) * minuteMs;
  const points = new Map<number, ThroughputPoint>();
  for (let at = first; at <= options.to; at += minuteMs) points.set(at, zeroPoint(at));
  if (points.size === 0) return [];
  for (const row of await store.read("minute", first, options.to)) {
    const p = points.get(row.at);
    if (!p || (options.queue !== undefined && row.queue !== options.queue)) continue;
    // Outcomes only: a Tally's timing buckets would be 2 KB to fill and drop for every row.
    const c = outcomesOf(row.counts);
    p.started += c.started;
    p.completed += c.completed;
    p.failed += c.retried + c.dead + c.failed;
    p.retried += c.retried;
    p.dead += c.dead;
    p.aborted += c.aborted;
    p.skipped += c.skipped;
    p.deferred += c.deferred;
    p.kills += c.kills;
  }
  return [...points.values()];
}

function outcomesOf(counts: Record<string, number>): Record<Outcome, number> {
  const out = {} as Record<Outcome, number>;
  for (const o of OUTCOMES) out[o] = Number.isFinite(counts[o]) ? counts[o]! : 0;
  return out;
}

function zeroPoint(at: number): ThroughputPoint {
  return { at, started: 0, completed: 0, failed: 0, retried: 0, dead: 0, aborted: 0, skipped: 0, deferred: 0, kills: 0 };
}

/** One actor over a window: what the per-actor page shows. Timings in ms; null when nothing was timed. */
export interface ActorStats extends OutcomeCounts {
  queue: string;
  actor: string;
  /** Runs started. */
  runs: number;
  /** Runs that did not succeed: retried + dead + failed (result refused). */
  failures: number;
  /** How long completed runs ran. */
  duration: { p50: number; p95: number; p99: number; mean: number } | null;
  /** From entering the queue ready (sent, due, retried) to the start. */
  wait: { p50: number; p95: number; mean: number } | null;
}

/**
 * Every actor that did anything in the window, by queue then actor.
 *
 * "hour": the 60 minute buckets up to and including the current one, so 59-60 minutes.
 * "day": the 24 hour buckets up to and including the current one, so 23-24 hours. Workers write the
 * current hour's bucket with every flush, as they write its minutes, so it is as fresh as the minute
 * buckets and needs no topping up from them; a 25th hour would count up to 25 hours instead, and the
 * minutes of the partial hour a day ago, which would make it exact, expired long before.
 */
export async function actorStats(store: HistoryStore, window: "hour" | "day", now = Date.now()): Promise<ActorStats[]> {
  const [resolution, step, buckets]: [HistoryResolution, number, number] =
    window === "hour" ? ["minute", minuteMs, 60] : ["hour", hourMs, 24];
  const last = Math.floor(now / step) * step;
  const tallies = new Map<string, { queue: string; actor: string; tally: Tally }>();
  for (const row of await store.read(resolution, last - (buckets - 1) * step, last)) {
    const key = `${row.queue}|${row.actor}`;
    let entry = tallies.get(key);
    if (!entry) tallies.set(key, (entry = { queue: row.queue, actor: row.actor, tally: newTally() }));
    addCounts(entry.tally, row.counts);
  }
  return [...tallies.values()].map(({ queue, actor, tally }) => statsOf(queue, actor, tally))
    .sort((a, b) => a.queue.localeCompare(b.queue) || a.actor.localeCompare(b.actor));
}

function statsOf(queue: string, actor: string, t: Tally): ActorStats {
  const c = t.counts;
  const p = (buckets: Float64Array, q: number) => percentile(buckets, q) ?? 0;
  const timed = (buckets: Float64Array) => buckets.reduce((a, b) => a + b, 0);
  const durations = timed(t.duration);
  const waits = timed(t.wait);
  return {
    queue, actor, runs: c.started, completed: c.completed, failures: c.retried + c.dead + c.failed,
    retried: c.retried, dead: c.dead, aborted: c.aborted, skipped: c.skipped, deferred: c.deferred, kills: c.kills,
    duration: durations === 0 ? null
      : { p50: p(t.duration, 0.5), p95: p(t.duration, 0.95), p99: p(t.duration, 0.99), mean: t.dsum / durations },
    wait: waits === 0 ? null : { p50: p(t.wait, 0.5), p95: p(t.wait, 0.95), mean: t.wsum / waits },
  };
}
