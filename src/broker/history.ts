/**
 * Where the per-minute and per-hour rollups of src/history/ live: one hash per bucket, fields
 * `<queue>|<actor>|<count name>` (keys.ts, "History"). Workers add a few seconds of counts at a time,
 * the dashboard reads a range of buckets; buckets expire on their own a fixed time after they start.
 */
import { execPipeline, type Scripted } from "./connection.ts";
import { historyActorKey, historyKey } from "./keys.ts";
import type { HistoryResolution, HistoryRow, HistoryStore } from "./types.ts";

const minuteMs = 60_000;
const hourMs = 3_600_000;

/**
 * How long a minute bucket lives after its start: three hours, enough for the dashboard's "last
 * hour" chart and for a worker that was cut off from Redis for up to an hour to land what it kept.
 */
export const MINUTE_RETENTION_MS = 3 * hourMs;
/** How long an hour bucket lives after its start: eight days, so "the same hour a week ago" is still there. */
export const HOUR_RETENTION_MS = 8 * 24 * hourMs;

/** Later than now by more than this, no bucket is read: a worker's clock may run ahead a little, not days. */
const aheadMs = hourMs;

export const stepOf = (resolution: HistoryResolution): number => (resolution === "minute" ? minuteMs : hourMs);
export const retentionOf = (resolution: HistoryResolution): number =>
  resolution === "minute" ? MINUTE_RETENTION_MS : HOUR_RETENTION_MS;

/**
 * The starts of the buckets to read for [from, to]: those that may still exist (the range is cut to
 * the retention behind `now` and an hour ahead of it), so a careless range never reads 10,000 keys.
 */
export function bucketStarts(resolution: HistoryResolution, from: number, to: number, now = Date.now()): number[] {
  const step = stepOf(resolution);
  const first = Math.ceil(Math.max(from, now - retentionOf(resolution)) / step) * step;
  const last = Math.min(to, now + aheadMs);
  const starts: number[] = [];
  for (let at = first; at <= last; at += step) starts.push(at);
  return starts;
}

/**
 * A row's bucket start (its `at` rounded down to the resolution: a row that is not aligned still
 * lands in the bucket it falls in) and its non-zero counts as whole numbers, which is what HINCRBY
 * adds; undefined when nothing is left to add.
 */
function normalize(row: HistoryRow): { at: number; counts: Array<[string, number]> } | undefined {
  const step = stepOf(row.resolution);
  const counts: Array<[string, number]> = [];
  for (const [name, n] of Object.entries(row.counts)) {
    const whole = Math.round(n);
    if (Number.isFinite(whole) && whole !== 0) counts.push([name, whole]);
  }
  return counts.length > 0 ? { at: Math.floor(row.at / step) * step, counts } : undefined;
}

/** A bucket's member for one actor: "<queue>|<actor>" (queue names have no "|"; the actor is the rest). */
const memberOf = (queue: string, actor: string): string => `${queue}|${actor}`;

function rowOf(resolution: HistoryResolution, at: number, member: string, counts: Iterable<[string, number]>): HistoryRow | undefined {
  const bar = member.indexOf("|");
  if (bar < 0) return undefined;
  const row: HistoryRow = { resolution, at, queue: member.slice(0, bar), actor: member.slice(bar + 1), counts: {} };
  for (const [name, n] of counts) if (Number.isFinite(n)) row.counts[name] = n;
  return Object.keys(row.counts).length > 0 ? row : undefined;
}

const byActor = (a: HistoryRow, b: HistoryRow) => a.at - b.at || a.queue.localeCompare(b.queue) || a.actor.localeCompare(b.actor);

/**
 * add: for each bucket, each actor's counts added to its hash (HINCRBY), the actor listed in the
 * bucket's index, and every key's expiry set: a worker's whole batch in one call, which a MULTI
 * could not promise for tens of thousands of fields. Its keys share the hash tag `{<p>:history}`,
 * so it touches one slot.
 * KEYS: for each bucket in turn, its index, then the counts hash of each of its actors
 * ARGV: for each bucket in turn: expireAtMs, actorCount, then per actor: member ("<queue>|<actor>"),
 *       fieldCount, fieldCount pairs of field, increment
 * Returns: how many fields were added to.
 */
export const HISTORY_ADD = `
local k, a, n = 1, 1, 0
while k <= #KEYS do
  local index, expireAt, actors = KEYS[k], ARGV[a], tonumber(ARGV[a + 1])
  k, a = k + 1, a + 2
  for _ = 1, actors do
    local key, member, fields = KEYS[k], ARGV[a], tonumber(ARGV[a + 1])
    k, a = k + 1, a + 2
    for _ = 1, fields do
      redis.call('HINCRBY', key, ARGV[a], ARGV[a + 1])
      a = a + 2
    end
    redis.call('PEXPIREAT', key, expireAt)
    redis.call('HSET', index, member, '1')
    n = n + fields
  end
  redis.call('PEXPIREAT', index, expireAt)
end
return n
`;

/**
 * The rollups in Redis (keys.ts, "History"). `redis` is the broker's command connection, with
 * HISTORY_ADD defined on it as `drayHistoryAdd` (RedisBroker does it with its other scripts).
 *
 * A bucket is an index of the actors that did something in it plus one small hash of counts per
 * actor, not one hash of "<queue>|<actor>|<count>" fields: a busy actor writes 60-90 counts per
 * bucket, so past ~8 busy actors one shared hash outgrows Redis's compact encoding (512 fields) and
 * costs 9x the memory of an actor's own hash (keys.ts has the measured numbers).
 */
export class RedisHistory implements HistoryStore {
  readonly #redis: Scripted;
  readonly #prefix: string;
  /** The actors ("<queue>|<actor>") the last read at each resolution found: see read. */
  readonly #found: Record<HistoryResolution, string[]> = { minute: [], hour: [] };

  constructor(redis: Scripted, prefix: string) {
    this.#redis = redis;
    this.#prefix = prefix;
    // Its key count varies with the batch, so it is passed first with each call (see add).
    redis.defineCommand("drayHistoryAdd", { lua: HISTORY_ADD });
  }

  async add(rows: HistoryRow[]): Promise<void> {
    const buckets = new Map<string, { expireAt: number; actors: Map<string, Array<[string, number]>> }>();
    for (const row of rows) {
      const r = normalize(row);
      if (!r) continue;
      const index = historyKey(this.#prefix, row.resolution, r.at);
      let bucket = buckets.get(index);
      if (!bucket) buckets.set(index, (bucket = { expireAt: r.at + retentionOf(row.resolution), actors: new Map() }));
      const member = memberOf(row.queue, row.actor);
      const counts = bucket.actors.get(member);
      if (counts) counts.push(...r.counts);
      else bucket.actors.set(member, r.counts);
    }
    if (buckets.size === 0) return;
    const keys: string[] = [];
    const args: Array<string | number> = [];
    for (const [index, { expireAt, actors }] of buckets) {
      keys.push(index);
      args.push(expireAt, actors.size);
      for (const [member, counts] of actors) {
        keys.push(historyActorKey(index, member));
        args.push(member, counts.length);
        for (const [name, n] of counts) args.push(name, n);
      }
    }
    // Defined without numberOfKeys: ioredis then takes the key count as the first argument.
    await this.#redis.drayHistoryAdd(keys.length, keys, args);
  }

  /**
   * Plain commands, one round trip as a rule however many buckets: the indexes of the buckets in
   * range, sent with the counts of every actor the previous read at this resolution found, in each
   * bucket (a dashboard reads about the same range every few seconds, and the actors of one minute
   * are mostly those of the next; a bucket an actor skipped answers an empty hash, a lookup of a
   * missing key). Only actors an index lists beyond those cost a second round trip, for their
   * counts. Nothing here needs to be atomic, and a script doing both would hold Redis for every hash
   * of a long range at once.
   */
  async read(resolution: HistoryResolution, from: number, to: number): Promise<HistoryRow[]> {
    const starts = bucketStarts(resolution, from, to);
    if (starts.length === 0) return [];
    const indexes = starts.map((at) => historyKey(this.#prefix, resolution, at));
    const guessed = indexes.flatMap((index) => this.#found[resolution].map((member) => historyActorKey(index, member)));
    const pipe = this.#redis.pipeline();
    for (const index of indexes) pipe.hkeys(index);
    for (const key of guessed) pipe.hgetall(key);
    const replies = await execPipeline(pipe);
    const listed = replies.slice(0, indexes.length) as string[][];
    const counts = new Map(guessed.map((key, i) => [key, replies[indexes.length + i] as Record<string, string>]));
    const missing = listed.flatMap((members, i) => (members ?? []).map((member) => historyActorKey(indexes[i]!, member)))
      .filter((key) => !counts.has(key));
    if (missing.length > 0) {
      const more = this.#redis.pipeline();
      for (const key of missing) more.hgetall(key);
      (await execPipeline(more)).forEach((reply, i) => counts.set(missing[i]!, reply as Record<string, string>));
    }
    const rows: HistoryRow[] = [];
    const found = new Set<string>();
    listed.forEach((members, i) => {
      for (const member of members ?? []) {
        found.add(member);
        const fields = Object.entries(counts.get(historyActorKey(indexes[i]!, member)) ?? {});
        const row = rowOf(resolution, starts[i]!, member, fields.map(([name, v]): [string, number] => [name, Number(v)]));
        if (row) rows.push(row);
      }
    });
    this.#found[resolution] = [...found];
    return rows.sort(byActor);
  }
}

/** The rollups in memory, for the MemoryBroker: the same buckets, and the same expiry. */
export class MemoryHistory implements HistoryStore {
  /** "<resolution>:<at>" → when it lapses, and each actor's counts by member. */
  readonly #buckets = new Map<string, { expiresAt: number; actors: Map<string, Map<string, number>> }>();

  async add(rows: HistoryRow[]): Promise<void> {
    const now = Date.now();
    for (const row of rows) {
      const r = normalize(row);
      if (!r) continue;
      const key = `${row.resolution}:${r.at}`;
      const expiresAt = r.at + retentionOf(row.resolution);
      // As PEXPIREAT in the past does on Redis: a bucket already past its retention is gone at once.
      if (expiresAt <= now) {
        this.#buckets.delete(key);
        continue;
      }
      let bucket = this.#buckets.get(key);
      if (!bucket || bucket.expiresAt <= now) this.#buckets.set(key, (bucket = { expiresAt, actors: new Map() }));
      const member = memberOf(row.queue, row.actor);
      let counts = bucket.actors.get(member);
      if (!counts) bucket.actors.set(member, (counts = new Map()));
      for (const [name, n] of r.counts) counts.set(name, (counts.get(name) ?? 0) + n);
    }
  }

  async read(resolution: HistoryResolution, from: number, to: number): Promise<HistoryRow[]> {
    const now = Date.now();
    for (const [key, bucket] of this.#buckets) if (bucket.expiresAt <= now) this.#buckets.delete(key);
    return bucketStarts(resolution, from, to, now).flatMap((at) => {
      const bucket = this.#buckets.get(`${resolution}:${at}`);
      const rows = [...(bucket?.actors ?? [])].map(([member, counts]) => rowOf(resolution, at, member, counts));
      return rows.filter((r): r is HistoryRow => r !== undefined).sort(byActor);
    });
  }

  /** When a bucket lapses (ms since epoch), for tests: undefined when it does not exist. */
  expiresAt(resolution: HistoryResolution, at: number): number | undefined {
    return this.#buckets.get(`${resolution}:${at}`)?.expiresAt;
  }
}
