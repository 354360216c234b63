/**
 * The history's store (src/broker/history.ts) on Redis and in memory, one conformance suite for both;
 * the bucket names and percentiles (src/history/buckets.ts) and the reader (src/history/read.ts).
 * The recorder in a real worker is in history_worker.test.ts.
 */
import { describe, expect, test } from "bun:test";
import { Redis } from "ioredis";
import { HOUR_RETENTION_MS, MemoryHistory, MINUTE_RETENTION_MS } from "../src/broker/history.ts";
import { historyActorKey, historyKey } from "../src/broker/keys.ts";
import { RedisBroker } from "../src/broker/redis.ts";
import type { HistoryRow, HistoryStore } from "../src/broker/types.ts";
import {
  addCounts, addDuration, addWait, BUCKETS, bucketBounds, bucketOf, countsOf, newTally, percentile,
} from "../src/history/buckets.ts";
import { ConfigError } from "../src/errors.ts";
import { actorStats, throughput } from "../src/history/read.ts";
import { cleanPrefix, REDIS_URL, testPrefix } from "./helpers.ts";
import { hasRedis, redisTest } from "./redis_test.ts";

const minute = 60_000;
const hour = 3_600_000;
const thisMinute = () => Math.floor(Date.now() / minute) * minute;
const thisHour = () => Math.floor(Date.now() / hour) * hour;

function row(resolution: "minute" | "hour", at: number, actor: string, counts: Record<string, number>, queue = "q"): HistoryRow {
  return { resolution, at, queue, actor, counts };
}

interface StoreFixture {
  store: HistoryStore;
  /** When the bucket's keys lapse, ms since epoch (Redis: from PTTL, for the index and each actor's hash). */
  expiries(resolution: "minute" | "hour", at: number, members: string[]): Promise<number[]>;
  cleanup(): Promise<void>;
}

function historyConformance(name: string, make: () => Promise<StoreFixture>, enabled: boolean): void {
  const it = (title: string, body: (f: StoreFixture) => Promise<void>) =>
    test.skipIf(!enabled)(title, async () => {
      const f = await make();
      try {
        await body(f);
      } finally {
        await f.cleanup();
      }
    });

  describe(`history store conformance: ${name}`, () => {
    it("given rows of two actors at both resolutions, when read back, then each row comes back as added", async ({ store }) => {
      const m = thisMinute() - 2 * minute;
      const h = thisHour();
      await store.add([
        row("minute", m, "b", { started: 3, completed: 2, d12: 2, dsum: 1500 }),
        row("minute", m, "a", { started: 1, w3: 1 }),
        row("hour", h, "a", { started: 4, kills: 1 }),
      ]);
      expect(await store.read("minute", m, m)).toEqual([
        row("minute", m, "a", { started: 1, w3: 1 }),
        row("minute", m, "b", { started: 3, completed: 2, d12: 2, dsum: 1500 }),
      ]);
      expect(await store.read("hour", h, h)).toEqual([row("hour", h, "a", { started: 4, kills: 1 })]);
    });

    it("given two adds to the same bucket (two workers, two flushes), then the counts are summed", async ({ store }) => {
      const m = thisMinute();
      await store.add([row("minute", m, "a", { started: 2, d5: 1 }), row("minute", m, "a", { started: 1 })]);
      await store.add([row("minute", m, "a", { started: 4, d5: 2, d6: 1 }, "q"), row("minute", m, "a", { started: 7 }, "other")]);
      expect(await store.read("minute", m, m)).toEqual([
        row("minute", m, "a", { started: 7 }, "other"),
        row("minute", m, "a", { started: 7, d5: 3, d6: 1 }),
      ]);
    });

    it("reads the buckets whose start is in [from, to], and nothing else", async ({ store }) => {
      const m0 = thisMinute() - 5 * minute;
      await store.add([0, 1, 2, 3].map((i) => row("minute", m0 + i * minute, "a", { started: i + 1 })));
      const starts = async (from: number, to: number) => (await store.read("minute", from, to)).map((r) => (r.at - m0) / minute);
      expect(await starts(m0 + minute, m0 + 2 * minute)).toEqual([1, 2]);
      expect(await starts(m0 + minute + 1, m0 + 3 * minute - 1)).toEqual([2]);
      expect(await starts(m0 - 10 * minute, m0 + 10 * minute)).toEqual([0, 1, 2, 3]);
      expect(await starts(m0 + 2 * minute, m0 + minute)).toEqual([]);
      // an hour read does not see minutes
      expect(await store.read("hour", m0 - hour, m0 + hour)).toEqual([]);
    });

    it("keeps a bucket from a row not aligned to it, and writes no zero counts", async ({ store }) => {
      const m = thisMinute() - minute;
      await store.add([row("minute", m + 12_345, "a", { started: 1, completed: 0, dsum: 0.4 }), row("minute", m, "z", { failed: 0 })]);
      expect(await store.read("minute", m, m)).toEqual([row("minute", m, "a", { started: 1 })]);
    });

    it("given an actor name that reads oddly (empty: an undecodable entry), then it comes back whole", async ({ store }) => {
      const m = thisMinute();
      await store.add([row("minute", m, "", { dead: 1 }, "q.1:x-y")]);
      expect(await store.read("minute", m, m)).toEqual([row("minute", m, "", { dead: 1 }, "q.1:x-y")]);
    });

    it("given a batch of 120,000 counts (an hour kept through an outage), then one add takes it whole", async ({ store }) => {
      const m0 = thisMinute() - 60 * minute;
      const counts = Object.fromEntries(Array.from({ length: 50 }, (_, i) => [`d${i}`, i + 1]));
      const rows = Array.from({ length: 60 }, (_, i) => m0 + i * minute)
        .flatMap((at) => Array.from({ length: 40 }, (_, a) => row("minute", at, `actor_${a}`, counts)));
      await store.add(rows);
      const back = await store.read("minute", m0, m0 + 59 * minute);
      expect(back.length).toBe(2_400);
      expect(back.every((r) => r.counts.d49 === 50 && Object.keys(r.counts).length === 50)).toBe(true);
    });

    it("sets each bucket to lapse its retention after it starts; a bucket already past it is not kept", async (f) => {
      const m = thisMinute() - 3 * minute;
      const h = thisHour() - hour;
      await f.store.add([row("minute", m, "a", { started: 1 }), row("minute", m, "b", { started: 1 }), row("hour", h, "a", { started: 1 })]);
      for (const at of await f.expiries("minute", m, ["q|a", "q|b"])) expect(Math.abs(at - (m + MINUTE_RETENTION_MS))).toBeLessThan(2_000);
      for (const at of await f.expiries("hour", h, ["q|a"])) expect(Math.abs(at - (h + HOUR_RETENTION_MS))).toBeLessThan(2_000);
      // a minute older than its retention: written to nothing, read as nothing
      const old = thisMinute() - MINUTE_RETENTION_MS - 2 * minute;
      await f.store.add([row("minute", old, "a", { started: 1 })]);
      expect(await f.store.read("minute", old, old)).toEqual([]);
      expect(await f.expiries("minute", old, ["q|a"])).toEqual([]);
    });
  });
}

historyConformance("memory", async () => {
  const store = new MemoryHistory();
  return {
    store,
    expiries: async (resolution, at) => {
      const e = store.expiresAt(resolution, at);
      return e === undefined ? [] : [e];
    },
    cleanup: async () => {},
  };
}, true);

historyConformance("redis", async () => {
  const prefix = testPrefix("history");
  const broker = new RedisBroker({ url: REDIS_URL, prefix });
  const redis = new Redis(REDIS_URL);
  return {
    store: broker.history,
    async expiries(resolution, at, members) {
      const index = historyKey(prefix, resolution, at);
      const keys = [index, ...members.map((m) => historyActorKey(index, m))];
      const now = Date.now();
      const ttls = await Promise.all(keys.map((k) => redis.pttl(k)));
      if (ttls.every((t) => t === -2)) return [];
      // -1 (no expiry) or -2 (missing) would read as a time long past: the assertion then fails.
      return ttls.map((t) => now + t);
    },
    async cleanup() {
      await broker.close();
      redis.disconnect();
      await cleanPrefix(prefix);
    },
  };
}, hasRedis);

/** A PRNG with a seed, so that the samples (and any failure) are the same on every run. */
function mulberry32(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe("duration and wait buckets", () => {
  test("each bucket takes the values between its edges, ~19% apart; bucket 0 from 0, the last to no end", () => {
    for (let i = 1; i < BUCKETS - 1; i++) {
      const [low, high] = bucketBounds(i);
      expect(high / low).toBeCloseTo(2 ** 0.25, 9);
      expect(bucketOf(low * 1.000001)).toBe(i);
      expect(bucketOf(high * 0.999999)).toBe(i);
    }
    expect([bucketOf(-5), bucketOf(0), bucketOf(0.05), bucketOf(Number.NaN)]).toEqual([0, 0, 0, 0]);
    expect(bucketBounds(0)[0]).toBe(0);
    expect(bucketOf(1e12)).toBe(BUCKETS - 1);
    expect(bucketBounds(BUCKETS - 1)[0] / 3_600_000).toBeGreaterThan(90);
  });

  const samples: Record<string, (r: () => number) => number> = {
    "uniform 1-1000 ms": (r) => 1 + r() * 999,
    "log-normal around 40 ms": (r) => 40 * Math.exp(0.8 * Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r())),
    "bimodal 2 ms / 3 s": (r) => (r() < 0.9 ? 2 + r() : 3_000 + r() * 500),
    "sub-bucket-0 waits": (r) => r() * 0.09,
  };
  for (const [name, draw] of Object.entries(samples)) {
    test(`given ${name}, then p50, p95 and p99 land within one bucket of the exact percentile`, () => {
      const r = mulberry32(42);
      const values = Array.from({ length: 5_000 }, () => draw(r));
      const t = newTally();
      for (const v of values) addDuration(t, v);
      const sorted = [...values].sort((a, b) => a - b);
      for (const q of [0.5, 0.95, 0.99]) {
        const exact = sorted[Math.ceil(q * sorted.length) - 1]!;
        const [low, high] = bucketBounds(bucketOf(exact));
        const estimate = percentile(t.duration, q)!;
        expect(Math.abs(estimate - exact)).toBeLessThanOrEqual(high - low);
      }
    });
  }

  test("no samples: no percentile; one sample: inside its bucket", () => {
    expect(percentile(new Float64Array(BUCKETS), 0.5)).toBeUndefined();
    const t = newTally();
    addWait(t, 250);
    const [low, high] = bucketBounds(bucketOf(250));
    expect(percentile(t.wait, 0.99)).toBeGreaterThanOrEqual(low);
    expect(percentile(t.wait, 0.99)).toBeLessThan(high);
  });

  test("counts written only where not zero, and read back to the same tally (sums in µs)", () => {
    const t = newTally();
    t.counts.started = 3;
    t.counts.kills = 1;
    addDuration(t, 12.3456);
    addWait(t, 0.5);
    const counts = countsOf(t);
    expect(counts).toEqual({ started: 3, kills: 1, [`d${bucketOf(12.3456)}`]: 1, [`w${bucketOf(0.5)}`]: 1, dsum: 12346, wsum: 500 });
    const back = newTally();
    addCounts(back, { ...counts, "some-newer-count": 5, d999: 1 });
    expect(countsOf(back)).toEqual(counts);
    expect(back.dsum).toBeCloseTo(12.346, 6);
  });
});

describe("reading the history", () => {
  test("throughput: one point per minute from `from` to `to`, zero where nothing was counted, by queue", async () => {
    // given counts in two of five minutes, on two queues
    const store = new MemoryHistory();
    const m0 = thisMinute() - 4 * minute;
    await store.add([
      row("minute", m0 + minute, "a", { started: 5, completed: 3, retried: 1, dead: 1, failed: 1, kills: 1 }),
      row("minute", m0 + minute, "b", { started: 2, completed: 2 }, "other"),
      row("minute", m0 + 3 * minute, "a", { started: 1, deferred: 2, aborted: 1 }),
      row("hour", thisHour(), "a", { started: 100 }),
    ]);
    // when read from inside the first minute to inside the last
    const points = await throughput(store, { from: m0 + 30_000, to: m0 + 4 * minute + 1 });
    // then five points, summed over actors; failed is retried + dead + failed
    expect(points.map((p) => p.at)).toEqual([0, 1, 2, 3, 4].map((i) => m0 + i * minute));
    expect(points[1]).toEqual({ at: m0 + minute, started: 7, completed: 5, failed: 3, retried: 1, dead: 1, aborted: 0,
      skipped: 0, deferred: 0, kills: 1 });
    expect(points[3]).toMatchObject({ started: 1, deferred: 2, aborted: 1, failed: 0 });
    expect(points[0]!.started + points[2]!.started + points[4]!.started).toBe(0);
    // and for one queue only its actors
    const other = await throughput(store, { from: m0, to: m0 + 4 * minute, queue: "other" });
    expect(other.map((p) => p.started)).toEqual([0, 2, 0, 0, 0]);
    // and a range of more than a day is refused rather than zero-filled point by point
    await expect(throughput(store, { from: 0, to: Date.now() })).rejects.toBeInstanceOf(ConfigError);
  });

  test("actorStats: per actor over the last hour of minutes or day of hours, with percentiles in ms", async () => {
    // given an actor's durations and waits in two minutes, a second actor, and an hour two days back
    const store = new MemoryHistory();
    const now = Date.now();
    const t = newTally();
    for (let i = 1; i <= 100; i++) addDuration(t, i * 10);
    for (let i = 0; i < 50; i++) addWait(t, 4);
    t.counts.started = 103;
    t.counts.completed = 100;
    t.counts.retried = 2;
    t.counts.dead = 1;
    t.counts.kills = 1;
    const m = thisMinute();
    await store.add([
      row("minute", m, "a", countsOf(t)), row("minute", m - 59 * minute, "a", { started: 1, failed: 1 }),
      row("minute", m - 60 * minute, "a", { started: 1000 }), row("minute", m, "b", { started: 1, skipped: 1 }, "p"),
      row("hour", thisHour(), "a", { started: 7 }), row("hour", thisHour() - 23 * hour, "a", { started: 3, completed: 3, d40: 3 }),
      row("hour", thisHour() - 24 * hour, "a", { started: 1000 }),
    ]);
    // when stats for the hour are read
    const [b, a] = await actorStats(store, "hour", now);
    // then the 60 minutes up to now count, the 61st does not
    expect(a).toMatchObject({ queue: "q", actor: "a", runs: 104, completed: 100, failures: 4, retried: 2, dead: 1, kills: 1 });
    expect(a!.duration!.p50).toBeGreaterThan(500 / 1.2);
    expect(a!.duration!.p50).toBeLessThan(500 * 1.2);
    expect(a!.duration!.p99).toBeGreaterThan(990 / 1.2);
    expect(a!.duration!.mean).toBeCloseTo(505, 3);
    expect(a!.wait!.p95).toBeGreaterThan(4 / 1.2);
    expect(a!.wait!.p95).toBeLessThan(4 * 1.2);
    expect(b).toEqual({ queue: "p", actor: "b", runs: 1, completed: 0, failures: 0, retried: 0, dead: 0, aborted: 0, skipped: 1,
      deferred: 0, kills: 0, duration: null, wait: null });
    // and for the day, the 24 hours up to now: the 25th back does not count
    const [day] = await actorStats(store, "day", now);
    expect(day).toMatchObject({ actor: "a", runs: 10, completed: 3 });
    expect(day!.duration!.p50).toBeGreaterThanOrEqual(bucketBounds(40)[0]);
    expect(day!.duration!.p50).toBeLessThan(bucketBounds(40)[1]);
  });
});

describe("history memory in Redis", () => {
  redisTest("MEMORY USAGE of a realistic bucket: busy and quiet actors, per actor-minute and actor-hour", async () => {
    // given 20 busy actors (10 jobs/s, durations ~40 ms, waits ~5 ms, 2% retried) and 20 quiet ones (1 job/min)
    const prefix = testPrefix("history-mem");
    const broker = new RedisBroker({ url: REDIS_URL, prefix });
    try {
      const r = mulberry32(7);
      const lognormal = (median: number, sigma: number) =>
        median * Math.exp(sigma * Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r()));
      const counts = (jobs: number) => {
        const t = newTally();
        for (let i = 0; i < jobs; i++) {
          t.counts.started++;
          addWait(t, lognormal(5, 1));
          if (i % 50 === 49) t.counts.retried++;
          else {
            t.counts.completed++;
            addDuration(t, lognormal(40, 0.7));
          }
        }
        return countsOf(t);
      };
      const m = thisMinute();
      const h = thisHour();
      const busy = Array.from({ length: 20 }, (_, i) => `send_welcome_email_${i}`);
      const quiet = Array.from({ length: 20 }, (_, i) => `nightly_report_${i}`);
      const rows = [
        ...busy.flatMap((a) => [row("minute", m, a, counts(600), "default"), row("hour", h, a, counts(36_000), "default")]),
        ...quiet.flatMap((a) => [row("minute", m, a, counts(1), "default"), row("hour", h, a, counts(60), "default")]),
      ];
      await broker.history.add(rows);
      // when each key's MEMORY USAGE is taken (the index's share split over its 40 actors)
      const usage = async (key: string) => Number(await broker.redis.memory("USAGE", key, "SAMPLES", 0));
      const per = async (resolution: "minute" | "hour", at: number, actors: string[]) => {
        const index = historyKey(prefix, resolution, at);
        expect(await broker.redis.object("ENCODING", historyActorKey(index, `default|${actors[0]}`))).toBe("listpack");
        let bytes = 0;
        for (const a of actors) bytes += await usage(historyActorKey(index, `default|${a}`));
        return Math.round(bytes / actors.length + (await usage(index)) / 40);
      };
      const sizes = {
        busyMinute: await per("minute", m, busy), busyHour: await per("hour", h, busy),
        quietMinute: await per("minute", m, quiet), quietHour: await per("hour", h, quiet),
      };
      const fields = (i: number) => Object.keys(rows[i]!.counts).length;
      console.log("history bytes per actor and bucket", sizes, "fields: busy minute", fields(0), "busy hour", fields(1));
      // then a busy actor's minute stays under 1 KB (the figure in src/broker/keys.ts)
      expect(sizes.busyMinute).toBeLessThan(1_000);
      expect(sizes.busyHour).toBeLessThan(1_300);
    } finally {
      await broker.close();
      await cleanPrefix(prefix);
    }
  });
});
