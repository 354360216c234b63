/**
 * Cron in one process: definition and validation, tick times in a timezone across DST, the catch-up
 * plan, and the tick script against the real Redis (stale and early tickers).
 * The end-to-end runs with several processes are in cron_e2e.test.ts.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Redis } from "ioredis";
import { pino } from "pino";
import { z } from "zod";
import { actor } from "../src/actor.ts";
import { cronKeys, queueKeys } from "../src/broker/keys.ts";
import { cron, crons, type CronJob, type CronOptionsInput } from "../src/cron/cron.ts";
import { cronHistory } from "../src/cron/history.ts";
import { LATE_LIMIT, planTicks } from "../src/cron/plan.ts";
import { cronRuns } from "../src/cron/runs.ts";
import { CRON_TICK } from "../src/cron/scripts.ts";
import { Ticker } from "../src/cron/ticker.ts";
import { ConfigError } from "../src/errors.ts";
import { decodeMessage, type Delivery } from "../src/message.ts";
import type { ProcessInfo } from "../src/middleware.ts";
import { cleanPrefix, REDIS_URL, redisAvailable, testPrefix } from "./helpers.ts";

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

describe("tick script and ticker (real Redis)", () => {
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

  beforeAll(async () => {
    if (!(await redisAvailable())) return;
    prefix = testPrefix("cron");
    redis = new Redis(REDIS_URL) as typeof redis;
    redis.defineCommand("tick", { lua: CRON_TICK });
  });

  afterAll(async () => {
    if (!prefix) return;
    redis.disconnect();
    await cleanPrefix(prefix);
  });

  test("a stale ticker (clock behind) cannot redo a tick, even after its dedup key is gone", async () => {
    if (!(await redisAvailable())) return;
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

  test("a ticker whose clock runs ahead cannot fire a tick before the Redis clock reaches it", async () => {
    if (!(await redisAvailable())) return;
    // given the state of the previous test; when a tick 10 s in the future (by Redis) is claimed
    const future = Math.floor((await redisNow()) / 1000) * 1000 + 10_000;
    const before = await redis.xlen(k().q.stream(0));
    const result = await redis.tick(...tickArgs(future, [future]));
    // then it is refused, and the last tick handled does not jump ahead (no later tick is skipped)
    expect(result).toBe(-1);
    expect(await redis.xlen(k().q.stream(0))).toBe(before);
    expect(Number(await redis.get(k().c.last))).toBeLessThan(future);
  });

  test("the ticker enqueues a due tick once with a job id from (cron, tick), whichever of two tickers asks", async () => {
    if (!(await redisAvailable())) return;
    // given an every-second cron and two tickers on it, the last tick handled set 3 s back
    const job = define("* * * * * *", { payload: { hello: "cron" } });
    const jobs = new Map([[job.name, job]]);
    const logger = pino({ level: "silent" });
    const [a, b] = [new Ticker({ redis, prefix, jobs, logger }), new Ticker({ redis, prefix, jobs, logger })];
    const c = cronKeys(prefix, queue, job.name);
    const q = queueKeys(prefix, queue);
    const newest = Math.floor((await redisNow()) / 1000) * 1000;
    await redis.set(c.last, newest - 3_000);
    // when both tick at once
    await Promise.all([a.tick(), b.tick()]);
    // then the newest due tick was enqueued once (catchUp none passes over the two missed ones)
    const entries = await redis.xrange(q.stream(0), "-", "+");
    const messages = entries.map(([, f]) => decodeMessage(f[1], queue)).filter((m) => m.cron?.name === job.name);
    expect(messages.length).toBe(1);
    const m = messages[0]!;
    expect(m.cron!.tick).toBeGreaterThanOrEqual(newest);
    expect(m.id).toBe(`cron:${job.name}:${m.cron!.tick}`);
    expect(m).toMatchObject({ actor: "cron_unit_actor", queue, payload: { hello: "cron" }, dedup: true });
    expect(Number(await redis.get(c.last))).toBe(m.cron!.tick);
  });
});

describe("overlap lock and run history middleware (real Redis)", () => {
  let redis: Redis;
  let prefix = "";
  const logger = pino({ level: "silent" });
  const delivery = (job: CronJob, tick: number, retries = 0): Delivery => ({
    message: { id: `cron:${job.name}:${tick}`, actor: target.name, queue: "cron-unit", payload: null, priority: 0,
      sentAt: tick, dedup: true, cron: { name: job.name, tick } },
    retries,
    ref: { stream: "s", entryId: `${tick}-0` },
  });
  const setup = (options: CronOptionsInput) => {
    const job = define("* * * * * *", options);
    const mw = cronRuns({ redis, prefix, logger, jobs: new Map([[job.name, job]]) });
    // The supervisor passes the worker's broker too; this middleware does not use it.
    const info = (d: Delivery) => ({ delivery: d, actor: target }) as unknown as ProcessInfo;
    const before = (d: Delivery) => mw.beforeProcess!(info(d));
    const after = (d: Delivery, ok: boolean) => mw.afterProcess!(info(d),
      ok ? { status: "ok", value: { n: 1 }, duration: 3 } : { status: "error", error: { name: "Boom", message: "no" }, final: false, duration: 3 },
      { kind: "ack" });
    return { job, before, after, history: () => cronHistory(redis, prefix, { name: job.name, queue: "cron-unit" }) };
  };

  beforeAll(async () => {
    if (!(await redisAvailable())) return;
    prefix = testPrefix("cronlock");
    redis = new Redis(REDIS_URL);
  });

  afterAll(async () => {
    if (!prefix) return;
    redis.disconnect();
    await cleanPrefix(prefix);
  });

  test("a run while another holds the lock is SKIPPED; the lock is released on success and on failure", async () => {
    if (!(await redisAvailable())) return;
    // given a cron with a 60 s lock, and the run of tick 1 going
    const { job, before, after, history } = setup({ lockTtl: 60_000 });
    const [t1, t2, t3, t4] = [1, 2, 3, 4].map((t) => delivery(job, t * 1000));
    expect(await before(t1!)).toBeUndefined();
    // when tick 2 starts meanwhile / then it is skipped (acked without running)
    expect(await before(t2!)).toEqual({ kind: "ack" });
    // but a redelivery of tick 1 itself (its worker died) takes its own lock back
    const t1Again = delivery(job, 1000);
    expect(await before(t1Again)).toBeUndefined();
    // when tick 1 completes, tick 3 runs; when tick 3 fails, tick 4 runs too
    await after(t1Again, true);
    expect(await before(t3!)).toBeUndefined();
    await after(t3!, false);
    expect(await before(t4!)).toBeUndefined();
    // then the history tells it (one run per tick: the redelivery of tick 1 replaced its first record)
    const runs = (await history()).sort((a, b) => a.tick - b.tick);
    expect(runs.map((r) => [r.tick / 1000, r.status])).toEqual([[1, "COMPLETED"], [2, "SKIPPED"], [3, "FAILED"], [4, "RUNNING"]]);
    expect(runs[0]).toMatchObject({ cron: job.name, jobId: `cron:${job.name}:1000`, attempt: 1, result: { n: 1 }, duration: 3 });
    expect(runs[2]!.error).toEqual({ name: "Boom", message: "no" });
    expect(runs[0]!.completedAt).toBeGreaterThanOrEqual(runs[0]!.startedAt);
  });

  test("the lock expires after lockTtl when its holder never comes back", async () => {
    if (!(await redisAvailable())) return;
    // given a run holding a 300 ms lock whose worker died (no afterProcess)
    const { job, before } = setup({ lockTtl: 300 });
    expect(await before(delivery(job, 1000))).toBeUndefined();
    expect(await before(delivery(job, 2000))).toEqual({ kind: "ack" });
    // when lockTtl has passed / then the next tick runs
    await new Promise((r) => setTimeout(r, 350));
    expect(await before(delivery(job, 3000))).toBeUndefined();
  });

  test("lockTtl 0 takes no lock; history keeps only the newest historySize runs", async () => {
    if (!(await redisAvailable())) return;
    // given a cron without lock keeping 3 runs
    const { job, before, history } = setup({ lockTtl: 0, historySize: 3 });
    // when five ticks start while none finished
    const decisions = [];
    for (let t = 1; t <= 5; t++) decisions.push(await before(delivery(job, t * 1000)));
    // then all ran, and the three newest are kept
    expect(decisions).toEqual([undefined, undefined, undefined, undefined, undefined]);
    expect((await history()).map((r) => r.tick)).toEqual([5000, 4000, 3000]);
    expect(await redis.hlen(cronKeys(prefix, "cron-unit", job.name).runs)).toBe(3);
  });
});
