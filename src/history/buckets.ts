/**
 * The names of the counts in a history row (src/broker/types.ts `HistoryRow`) and how timings are
 * bucketed, as pure functions: the recorder (recorder.ts) fills a {@link Tally} per minute, queue and
 * actor and writes it with {@link countsOf}; the reader (read.ts) sums rows back into tallies with
 * {@link addCounts} and estimates percentiles from the buckets.
 *
 * Timings are kept as counts per bucket on a log scale, not as samples: a bucket's count adds up
 * across workers and minutes with HINCRBY, so an hour or a day of many workers still answers p95 in
 * one read. Bucket i covers [base·2^(i/4), base·2^((i+1)/4)) ms: each is ~19% wider than the one
 * before, so an estimate is off by at most ~19% of the value, from 0.1 ms (base) to ~100 hours.
 *
 * Names: the outcomes ({@link OUTCOMES}); `d<i>` and `w<i>`, the runs in duration and wait bucket i;
 * `dsum` and `wsum`, the total duration and wait in whole µs (Redis adds integers, and whole ms would
 * round a flush of sub-ms jobs to nothing).
 */

/** Outcomes, one count each. `started`: runs (job:start); `kills`: time-limit kills of a thread or process. */
export const OUTCOMES = ["started", "completed", "retried", "dead", "failed", "aborted", "skipped", "deferred", "kills"] as const;
export type Outcome = (typeof OUTCOMES)[number];

/** The lower edge of bucket 1, ms; bucket 0 also takes everything below it (down to 0). */
export const BUCKET_BASE_MS = 0.1;
/** Buckets per doubling: 4 makes each 2^(1/4) ≈ 1.19 times as wide as the one before. */
export const BUCKETS_PER_DOUBLING = 4;
/** Bucket 127 starts at 0.1 ms·2^31.75 ≈ 98 hours and takes everything longer. */
export const BUCKETS = 128;

/**
 * What one (minute or hour, queue, actor) counted. Duration buckets are of completed runs; wait
 * buckets are from entering the queue ready (sent, due, retried) to the start. `dsum` and `wsum` are
 * the totals in ms, for means (written in µs).
 */
export interface Tally {
  counts: Record<Outcome, number>;
  duration: Float64Array;
  wait: Float64Array;
  dsum: number;
  wsum: number;
}

export function newTally(): Tally {
  const counts = { started: 0, completed: 0, retried: 0, dead: 0, failed: 0, aborted: 0, skipped: 0, deferred: 0, kills: 0 };
  return { counts, duration: new Float64Array(BUCKETS), wait: new Float64Array(BUCKETS), dsum: 0, wsum: 0 };
}

/** The bucket `ms` falls in (negative and NaN in bucket 0, beyond the last in the last). */
export function bucketOf(ms: number): number {
  if (!(ms > BUCKET_BASE_MS)) return 0;
  const i = Math.floor(Math.log2(ms / BUCKET_BASE_MS) * BUCKETS_PER_DOUBLING);
  return i < BUCKETS ? i : BUCKETS - 1;
}

/** The edges of bucket `i`, ms: [low, high). Bucket 0 starts at 0. */
export function bucketBounds(i: number): [number, number] {
  const edge = (j: number) => BUCKET_BASE_MS * 2 ** (j / BUCKETS_PER_DOUBLING);
  return [i === 0 ? 0 : edge(i), edge(i + 1)];
}

/** Counts a completed run of `ms`. */
export function addDuration(t: Tally, ms: number): void {
  const i = bucketOf(ms);
  t.duration[i] = t.duration[i]! + 1;
  t.dsum += ms;
}

/** Counts a start after waiting `ms`. */
export function addWait(t: Tally, ms: number): void {
  const i = bucketOf(ms);
  t.wait[i] = t.wait[i]! + 1;
  t.wsum += ms;
}

/** Adds `from` into `into`. */
export function mergeTally(into: Tally, from: Tally): void {
  for (const o of OUTCOMES) into.counts[o] += from.counts[o];
  for (let i = 0; i < BUCKETS; i++) {
    into.duration[i] = into.duration[i]! + from.duration[i]!;
    into.wait[i] = into.wait[i]! + from.wait[i]!;
  }
  into.dsum += from.dsum;
  into.wsum += from.wsum;
}

/**
 * The counts to write: only those that are not zero (a minute of one actor is a handful of fields,
 * not 260), buckets named `d<i>` and `w<i>`, sums in whole µs.
 */
export function countsOf(t: Tally): Record<string, number> {
  const out: Record<string, number> = {};
  for (const o of OUTCOMES) if (t.counts[o] !== 0) out[o] = t.counts[o];
  for (let i = 0; i < BUCKETS; i++) {
    if (t.duration[i] !== 0) out[`d${i}`] = t.duration[i]!;
    if (t.wait[i] !== 0) out[`w${i}`] = t.wait[i]!;
  }
  const dsum = Math.round(t.dsum * 1000);
  const wsum = Math.round(t.wsum * 1000);
  if (dsum !== 0) out.dsum = dsum;
  if (wsum !== 0) out.wsum = wsum;
  return out;
}

const outcomeNames: ReadonlySet<string> = new Set(OUTCOMES);

/** Adds counts as written by {@link countsOf} into `t`; names it does not know are skipped (a newer dray's). */
export function addCounts(t: Tally, counts: Record<string, number>): void {
  for (const [name, n] of Object.entries(counts)) {
    if (!Number.isFinite(n)) continue;
    if (outcomeNames.has(name)) t.counts[name as Outcome] += n;
    else if (name === "dsum") t.dsum += n / 1000;
    else if (name === "wsum") t.wsum += n / 1000;
    else {
      const m = /^([dw])(\d{1,3})$/.exec(name);
      const i = m ? Number(m[2]) : -1;
      if (i < 0 || i >= BUCKETS) continue;
      const into = m![1] === "d" ? t.duration : t.wait;
      into[i] = into[i]! + n;
    }
  }
}

/**
 * The `q`-quantile (0 < q ≤ 1) of what `buckets` counted, ms; undefined when they are empty. It is
 * the nearest-rank value's bucket, interpolated within the bucket on the log scale (linearly in
 * bucket 0, which starts at 0): within one bucket's width of the exact value.
 */
export function percentile(buckets: ArrayLike<number>, q: number): number | undefined {
  let total = 0;
  for (let i = 0; i < buckets.length; i++) total += buckets[i]!;
  if (total <= 0) return undefined;
  const rank = Math.max(1, Math.ceil(q * total));
  let below = 0;
  for (let i = 0; i < buckets.length; i++) {
    const n = buckets[i]!;
    if (n <= 0 || below + n < rank) {
      below += Math.max(0, n);
      continue;
    }
    // Where the rank sits among this bucket's counts, as if they were spread evenly over it.
    const within = (rank - below - 0.5) / n;
    const [low, high] = bucketBounds(i);
    return i === 0 ? high * within : low * (high / low) ** within;
  }
  return bucketBounds(buckets.length - 1)[1];
}
