/**
 * Cron in one process: definition and validation, tick times in a timezone across DST, the catch-up
 * plan, and the tick script against the real Redis (stale and early tickers). The tickers and the run
 * middleware on each cron store are in cron_store.test.ts; the end-to-end runs with several processes
 * in cron_e2e.test.ts.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Redis } from "ioredis";
import { z } from "zod";
import { actor } from "../src/actor.ts";
import { cronKeys, queueKeys } from "../src/broker/keys.ts";
import { cron, crons, type CronJob, type CronOptionsInput } from "../src/cron/cron.ts";
import { LATE_LIMIT, planTicks } from "../src/cron/plan.ts";
import { CRON_TICK } from "../src/cron/scripts.ts";
import { ConfigError } from "../src/errors.ts";
import { cleanPrefix, REDIS_URL, testPrefix } from "./helpers.ts";
import { hasRedis } from "./redis_test.ts";

const target = actor("cron_unit_actor", { queue: "cron-unit", timeLimit: 42_000 }, () => undefined);
const typed = actor("cron_unit_typed", { queue: "cron-unit", schema: z.object({ days: z.number() }) }, () => undefined);

let n = 0;
/**
 * A cron that is not left in the global registry: bun runs every test file in one process, and a
 * worker started in-process by another file must not tick crons defined here.
 */
function define(expression: string, options: CronOptionsInput = {}, on = target): CronJob {
  const job = cron(expression, on, { name: `cron_unit_${++n}`, ...options });
  crons.delete(job.name);
  return job;
}

const at = (iso: string) => new Date(iso).getTime();
const iso = (ms: number) => new Date(ms).toISOString();

describe("cron(): definition", () => {
  test("an invalid expression fails at definition with a ConfigError naming it", () => {
    for (const bad of ["61 * * * *", "* * * *", "0 0 * * * * 2030", "every day", "0 0 30 2 *"]) {
      // when it is defined / then
      let error: unknown;
      try {
        define(bad);
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(ConfigError);
      expect((error as Error).message).toContain(JSON.stringify(bad));
    }
  });

  test("options are validated: timezone, lockTtl, catchUp, payload against the actor's schema, duplicates", () => {
    expect(() => define("0 6 * * *", { timezone: "Mars/Olympus" })).toThrow(/unknown timezone "Mars\/Olympus"/);
    expect(() => define("0 6 * * *", { lockTtl: -1 })).toThrow(ConfigError);
    expect(() => define("0 6 * * *", { catchUp: "some" as "all" })).toThrow(/catchUp/);
    expect(() => define("0 6 * * *", { payload: { days: "x" } }, typed)).toThrow(/does not fit actor "cron_unit_typed"/);
    expect(() => define("0 6 * * *", { payload: { days: 30 } }, typed)).not.toThrow();
    const kept = cron("0 6 * * *", target, { name: "cron_unit_twice" });
    try {
      expect(() => cron("0 7 * * *", target, { name: "cron_unit_twice" })).toThrow(/already defined/);
    } finally {
      crons.delete(kept.name);
    }
  });

  test("defaults: name from the actor, lockTtl from its timeLimit, catchUp none, history 1000", () => {
    // given a cron with no options
    const job = cron("*/5 * * * * *", target);
    crons.delete(job.name);
    // then
    expect(job.name).toBe("cron_unit_actor");
    expect(job.options).toEqual({ timezone: undefined, lockTtl: 42_000, payload: undefined, catchUp: "none",
      maxCatchUp: 100, historySize: 1000 });
  });

  test("five fields tick on minutes, six on seconds; L and # work", () => {
    const from = at("2025-01-01T00:00:00Z");
    expect(iso(define("*/15 * * * *").nextTick(from)!)).toBe("2025-01-01T00:15:00.000Z");
    expect(iso(define("*/5 * * * * *").nextTick(from)!)).toBe("2025-01-01T00:00:05.000Z");
    expect(iso(define("0 0 L * *").nextTick(from)!)).toBe("2025-01-31T00:00:00.000Z");
    expect(iso(define("0 9 * * 5#2").nextTick(from)!)).toBe("2025-01-10T09:00:00.000Z"); // 2nd Friday
  });
});

describe("cron(): timezone and DST", () => {
  test("0 2 * * * in Europe/Paris: 01:00Z in winter, the skipped 02:00 runs at 03:00 CEST, then 00:00Z", () => {
    // given the spring-forward night of 2025-03-30 (02:00 CET jumps to 03:00 CEST)
    const paris = define("0 2 * * *", { timezone: "Europe/Paris" });
    const utc = define("0 2 * * *");
    const from = at("2025-03-28T12:00:00Z");
    // when the next ticks are computed
    const ticks: number[] = [];
    for (let t = from, i = 0; i < 3; i++) ticks.push(t = paris.nextTick(t)!);
    // then they follow Paris wall-clock time, not UTC
    expect(ticks.map(iso)).toEqual(["2025-03-29T01:00:00.000Z", "2025-03-30T01:00:00.000Z", "2025-03-31T00:00:00.000Z"]);
    expect(iso(utc.nextTick(from)!)).toBe("2025-03-29T02:00:00.000Z");
  });

  test("30 1 * * * in America/New_York runs once on the fall-back night, when 01:30 happens twice", () => {
    // given the tick of 2025-11-01 handled, and the clock past both 01:30s of 2025-11-02 (05:30Z, 06:30Z)
    const ny = define("30 1 * * *", { timezone: "America/New_York", catchUp: "all" });
    const last = at("2025-11-01T05:30:00Z");
    // when a ticker plans at 07:00Z / then only the first 01:30 (EDT) is due
    expect(planTicks(ny, last, at("2025-11-02T07:00:00Z")).ticks.map(iso)).toEqual(["2025-11-02T05:30:00.000Z"]);
    // and the day after, it is 01:30 EST again
    expect(iso(ny.nextTick(at("2025-11-02T05:30:00Z"))!)).toBe("2025-11-03T06:30:00.000Z");
  });
});

describe("planTicks: on time and missed ticks", () => {
  const t0 = at("2025-06-01T10:00:00Z");
  const minute = 60_000;
  // given a minutely cron whose last tick handled is t0, and the tickers down for ten minutes
  const now = t0 + 10 * minute + 30_000;
  const plan = (options: CronOptionsInput) => planTicks(define("* * * * *", options), t0, now);

  test("on time: the newest due tick runs, and nothing before the last tick handled", () => {
    const p = planTicks(define("* * * * *"), t0, t0 + minute + 500);
    expect(p.ticks).toEqual([t0 + minute]);
    expect(p.last).toBe(t0 + minute);
    expect(planTicks(define("* * * * *"), t0, t0 + 59_000).ticks).toEqual([]);
  });

  test('after an outage, "none" runs only the tick that is due now', () => {
    const p = plan({ catchUp: "none" });
    expect(p.ticks).toEqual([t0 + 10 * minute]);
    expect(p.last).toBe(t0 + 10 * minute);
    expect(p.caughtUp).toBe(0);
  });

  test('"last" adds one run for the newest missed tick', () => {
    expect(plan({ catchUp: "last" }).ticks).toEqual([t0 + 9 * minute, t0 + 10 * minute]);
  });

  test('"all" runs every missed tick, oldest first, up to maxCatchUp (the newest ones)', () => {
    expect(plan({ catchUp: "all" }).ticks).toEqual(Array.from({ length: 10 }, (_, i) => t0 + (i + 1) * minute));
    expect(plan({ catchUp: "all", maxCatchUp: 3 }).ticks).toEqual([7, 8, 9, 10].map((i) => t0 + i * minute));
  });

  test("a daily tick found more than LATE_LIMIT late is missed: none skips it, last runs it", () => {
    const daily = (catchUp: "none" | "last") => define("0 6 * * *", { catchUp });
    const six = at("2025-06-02T06:00:00Z");
    const late = six + LATE_LIMIT + 1_000;
    expect(planTicks(daily("none"), six - 86_400_000, late)).toMatchObject({ ticks: [], last: six });
    expect(planTicks(daily("last"), six - 86_400_000, late).ticks).toEqual([six]);
    expect(planTicks(daily("none"), six - 86_400_000, six + 5_000).ticks).toEqual([six]);
  });
});

describe("tick script (real Redis)", () => {
  let redis: Redis & { tick(...args: (string | number)[]): Promise<number> };
  let prefix = "";
  const queue = "cron-unit";
  const k = () => ({ c: cronKeys(prefix, queue, "claim"), q: queueKeys(prefix, queue) });
  const tickArgs = (newLast: number, ticks: number[]) => {
    const { c, q } = k();
    return [3 + ticks.length, c.last, q.stream(0), q.priorities, ...ticks.map((t) => q.dedup(`cron:claim:${t}`)),
      newLast, 0, ...ticks.flatMap((t) => [t, JSON.stringify({ id: `cron:claim:${t}`, actor: "a", sentAt: t })])];
  };
  const redisNow = async () => {
    const [s, us] = await redis.time();
    return Number(s) * 1000 + Math.floor(Number(us) / 1000);
  };

  // beforeAll and afterAll run even when every test here is skipped.
  beforeAll(() => {
    if (!hasRedis) return;
    prefix = testPrefix("cron");
    redis = new Redis(REDIS_URL) as typeof redis;
    redis.defineCommand("tick", { lua: CRON_TICK });
  });

  afterAll(async () => {
    if (!prefix) return;
    redis.disconnect();
    await cleanPrefix(prefix);
  });

  test.skipIf(!hasRedis)("a stale ticker (clock behind) cannot redo a tick, even after its dedup key is gone", async () => {
    // given a cron whose first ticker set the last tick handled, and one tick claimed since
    const now = await redisNow();
    const t1 = Math.floor(now / 1000) * 1000 - 5_000;
    expect(await redis.tick(...tickArgs(t1 - 1000, []))).toBe(0); // first sight: only sets last
    expect(await redis.tick(...tickArgs(t1, [t1]))).toBe(1);
    // when the job settled (dedup key released) and a ticker with an old plan claims t1 and older again
    await redis.del(k().q.dedup(`cron:claim:${t1}`));
    const again = await redis.tick(...tickArgs(t1, [t1 - 1000, t1]));
    // then nothing is enqueued and the last tick handled stays
    expect(again).toBe(-1);
    expect(await redis.xlen(k().q.stream(0))).toBe(1);
    expect(Number(await redis.get(k().c.last))).toBe(t1);
  });

  test.skipIf(!hasRedis)("a ticker whose clock runs ahead cannot fire a tick before the Redis clock reaches it", async () => {
    // given the state of the previous test; when a tick 10 s in the future (by Redis) is claimed
    const future = Math.floor((await redisNow()) / 1000) * 1000 + 10_000;
    const before = await redis.xlen(k().q.stream(0));
    const result = await redis.tick(...tickArgs(future, [future]));
    // then it is refused, and the last tick handled does not jump ahead (no later tick is skipped)
    expect(result).toBe(-1);
    expect(await redis.xlen(k().q.stream(0))).toBe(before);
    expect(Number(await redis.get(k().c.last))).toBeLessThan(future);
  });
});
