/**
 * What every cron store (src/cron/store.ts) must do, run against the Redis store and the memory one
 * by cron_store.test.ts: start counting at first sight, claim a tick once whoever asks, refuse stale
 * and early claims, and keep the overlap lock (taken, renewed by its holder only, released, expired)
 * and run history the run middleware relies on.
 */
import { describe, expect, test } from "bun:test";
import { pino } from "pino";
import { actor } from "../src/actor.ts";
import { cron, crons, type CronJob, type CronOptionsInput } from "../src/cron/cron.ts";
import { cronRuns } from "../src/cron/runs.ts";
import type { CronStore } from "../src/cron/store.ts";
import { tickMessages, Ticker } from "../src/cron/ticker.ts";
import type { Delivery, Message } from "../src/message.ts";
import type { Decision, ProcessInfo } from "../src/middleware.ts";

export const CONFORMANCE_QUEUE = "cron-conf";
const target = actor("cron_conf_actor", { queue: CONFORMANCE_QUEUE, timeLimit: 42_000 }, () => undefined);

export interface CronStoreUnderTest {
  store: CronStore;
  /** The messages of cron jobs enqueued on {@link CONFORMANCE_QUEUE} so far. */
  sent(): Promise<Message[]>;
}

let n = 0;
/** A cron left out of the global registry, so that no worker of another test file ticks it. */
function define(expression: string, options: CronOptionsInput = {}): CronJob {
  const job = cron(expression, target, { name: `cron_conf_${++n}`, ...options });
  crons.delete(job.name);
  return job;
}

/** `enabled` is known before the tests are registered, so that bun reports them as skipped when false. */
export function cronStoreConformance(name: string, setup: () => Promise<CronStoreUnderTest>, enabled: boolean): void {
  const logger = pino({ level: "silent" });
  const second = (ms: number) => Math.floor(ms / 1000) * 1000;

  describe.skipIf(!enabled)(`cron store conformance: ${name}`, () => {
    test("first sight starts counting from the given time; a second ticker's first sight changes nothing", async () => {
      const t = await setup();
      // given a cron no ticker has seen
      const job = define("* * * * * *");
      const { now, last } = await t.store.read([job]);
      expect(last).toEqual([undefined]);
      // when two tickers see it
      expect(await t.store.write([{ kind: "begin", job, now }])).toEqual([1]);
      expect(await t.store.write([{ kind: "begin", job, now: now + 5_000 }])).toEqual([0]);
      // then the first one's start holds, and nothing was sent
      expect((await t.store.read([job])).last).toEqual([now]);
      expect((await t.sent()).filter((m) => m.cron?.name === job.name)).toEqual([]);
    });

    test("a claim sends each due tick once; a stale claim (its plan read before another moved on) sends nothing", async () => {
      const t = await setup();
      // given a cron handled up to 5 s ago
      const job = define("* * * * * *");
      const t1 = second((await t.store.read([])).now) - 4_000;
      await t.store.write([{ kind: "begin", job, now: t1 - 1_000 }]);
      // when tick t1 is claimed, then claimed again with the tick before it by a stale ticker
      expect(await t.store.write([{ kind: "claim", job, newLast: t1, messages: tickMessages(job, [t1]) }])).toEqual([1]);
      const again = await t.store.write([{ kind: "claim", job, newLast: t1, messages: tickMessages(job, [t1 - 1_000, t1]) }]);
      // then the second is refused and the last tick handled stays
      expect(again).toEqual([-1]);
      expect((await t.sent()).filter((m) => m.cron?.name === job.name).map((m) => m.cron!.tick)).toEqual([t1]);
      expect((await t.store.read([job])).last).toEqual([t1]);
    });

    test("a tick later than the store's clock is refused, and the last tick handled does not jump ahead", async () => {
      const t = await setup();
      const job = define("* * * * * *");
      const now = (await t.store.read([])).now;
      await t.store.write([{ kind: "begin", job, now: now - 1_000 }]);
      // when a ticker whose clock runs ahead claims a tick 10 s in the future
      const future = second(now) + 10_000;
      expect(await t.store.write([{ kind: "claim", job, newLast: future, messages: tickMessages(job, [future]) }])).toEqual([-1]);
      // then nothing is sent and the later ticks are not skipped
      expect((await t.sent()).filter((m) => m.cron?.name === job.name)).toEqual([]);
      expect((await t.store.read([job])).last[0]).toBeLessThan(future);
    });

    test("two tickers at once enqueue the newest due tick once, with a job id from (cron, tick)", async () => {
      const t = await setup();
      // given an every-second cron handled up to 3 s ago, and two tickers on it
      const job = define("* * * * * *", { payload: { hello: "cron" } });
      const jobs = new Map([[job.name, job]]);
      const newest = second((await t.store.read([])).now);
      await t.store.write([{ kind: "begin", job, now: newest - 3_000 }]);
      const [a, b] = [new Ticker({ store: t.store, jobs, logger }), new Ticker({ store: t.store, jobs, logger })];
      // when both tick
      await Promise.all([a.tick(), b.tick()]);
      // then the newest due tick was enqueued once (catchUp none passes over the two missed ones)
      const messages = (await t.sent()).filter((m) => m.cron?.name === job.name);
      expect(messages.length).toBe(1);
      const m = messages[0]!;
      expect(m.cron!.tick).toBeGreaterThanOrEqual(newest);
      expect(m.id).toBe(`cron:${job.name}:${m.cron!.tick}`);
      expect(m).toMatchObject({ actor: target.name, queue: CONFORMANCE_QUEUE, payload: { hello: "cron" }, dedup: true });
      expect((await t.store.read([job])).last).toEqual([m.cron!.tick]);
    });

    const delivery = (job: CronJob, tick: number, retries = 0): Delivery => ({
      message: { id: `cron:${job.name}:${tick}`, actor: target.name, queue: CONFORMANCE_QUEUE, payload: null, priority: 0,
        sentAt: tick, dedup: true, cron: { name: job.name, tick } },
      retries,
      ref: { stream: "s", entryId: `${tick}-0` },
    });
    const runs = (store: CronStore, options: CronOptionsInput) => {
      const job = define("* * * * * *", options);
      const mw = cronRuns({ store, logger, jobs: new Map([[job.name, job]]) });
      // The supervisor passes the worker's broker too; this middleware does not use it.
      const info = (d: Delivery) => ({ delivery: d, actor: target }) as unknown as ProcessInfo;
      const before = (d: Delivery) => mw.beforeProcess!(info(d));
      const after = (d: Delivery, ok: boolean) => mw.afterProcess!(info(d),
        ok ? { status: "ok", value: { n: 1 }, duration: 3 } : { status: "error", error: { name: "Boom", message: "no" }, final: false, duration: 3 },
        { kind: "ack" });
      const skip = (d: Delivery, decision: Decision | undefined) => mw.afterSkip!(info(d), decision);
      return { job, before, after, skip, history: () => store.history({ name: job.name, queue: CONFORMANCE_QUEUE }) };
    };
    const lock = (job: CronJob, tick: number, lockTtl: number) =>
      ({ queue: CONFORMANCE_QUEUE, cron: job.name, jobId: `cron:${job.name}:${tick}`, lockTtl });
    const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

    test("a run while another holds the lock is SKIPPED; the lock is released on success and on failure", async () => {
      const t = await setup();
      // given a cron with a 60 s lock, and the run of tick 1 going
      const { job, before, after, history } = runs(t.store, { lockTtl: 60_000 });
      const [t1, t2, t3, t4] = [1, 2, 3, 4].map((i) => delivery(job, i * 1000));
      expect(await before(t1!)).toBeUndefined();
      // when tick 2 starts meanwhile / then it is skipped: removed unrun, its record saying why
      expect(await before(t2!)).toEqual({ kind: "discard", status: "skipped",
        error: { name: "Locked", message: "the previous run still holds the overlap lock" } });
      // but a redelivery of tick 1 itself (its worker died) takes its own lock back
      const t1Again = delivery(job, 1000);
      expect(await before(t1Again)).toBeUndefined();
      // when tick 1 completes, tick 3 runs; when tick 3 fails, tick 4 runs too
      await after(t1Again, true);
      expect(await before(t3!)).toBeUndefined();
      await after(t3!, false);
      expect(await before(t4!)).toBeUndefined();
      // then the history tells it (one run per tick: the redelivery of tick 1 replaced its first record)
      const all = (await history()).sort((a, b) => a.tick - b.tick);
      expect(all.map((r) => [r.tick / 1000, r.status])).toEqual([[1, "COMPLETED"], [2, "SKIPPED"], [3, "FAILED"], [4, "RUNNING"]]);
      expect(all[0]).toMatchObject({ cron: job.name, jobId: `cron:${job.name}:1000`, attempt: 1, result: { n: 1 }, duration: 3 });
      expect(all[2]!.error).toEqual({ name: "Boom", message: "no" });
      expect(all[0]!.completedAt).toBeGreaterThanOrEqual(all[0]!.startedAt);
      await after(t4!, true);
    });

    test("the lock expires after lockTtl when its holder never comes back", async () => {
      const t = await setup();
      // given a 300 ms lock taken by a run whose worker died (no middleware left to renew or release it)
      const { job, before, after } = runs(t.store, { lockTtl: 300 });
      const dead = delivery(job, 1000);
      expect(await t.store.run({ queue: CONFORMANCE_QUEUE, cron: job.name, mode: "start", jobId: dead.message.id,
        lockTtl: 300, runId: `${dead.message.id}#1`, run: { cron: job.name, tick: 1000, jobId: dead.message.id,
          attempt: 1, status: "RUNNING", startedAt: Date.now() }, score: 1000, cap: 10 })).toBe(1);
      expect(await before(delivery(job, 2000))).toMatchObject({ kind: "discard", status: "skipped" });
      // when lockTtl has passed / then the next tick runs
      await sleep(350);
      const third = delivery(job, 3000);
      expect(await before(third)).toBeUndefined();
      await after(third, true);
    });

    test("renew extends the holder's lock; another job's renew and a renew after expiry change nothing", async () => {
      const t = await setup();
      // given tick 1 holding a 300 ms lock
      const { job } = runs(t.store, { lockTtl: 0 });
      const start = (tick: number) => t.store.run({ queue: CONFORMANCE_QUEUE, cron: job.name, mode: "start",
        jobId: `cron:${job.name}:${tick}`, lockTtl: 300, runId: `r${tick}`,
        run: { cron: job.name, tick, jobId: `cron:${job.name}:${tick}`, attempt: 1, status: "RUNNING", startedAt: tick }, score: tick, cap: 10 });
      expect(await start(1000)).toBe(1);
      // when its holder renews it at 200 ms, and tick 2 tries to renew it too
      await sleep(200);
      expect(await t.store.renew(lock(job, 1000, 300))).toBe("renewed");
      expect(await t.store.renew(lock(job, 2000, 60_000))).toBe("taken");
      // then it is still held past its first 300 ms, and tick 2's renew did not stretch it
      await sleep(200);
      expect(await start(3000)).toBe(0);
      await sleep(200);
      expect(await start(4000)).toBe(1);
      // and once it expired, its old holder cannot renew it back, nor does anyone hold it
      await sleep(350);
      expect(await t.store.renew(lock(job, 4000, 300))).toBe("expired");
      expect(await t.store.renew(lock(job, 4000, 300))).toBe("expired");
      expect(await start(5000)).toBe(1);
    });

    test("a run longer than lockTtl keeps its lock: the middleware renews it until the run ends", async () => {
      const t = await setup();
      // given a cron with a 300 ms lock and tick 1 running
      const { job, before, after, history } = runs(t.store, { lockTtl: 300 });
      const first = delivery(job, 1000);
      expect(await before(first)).toBeUndefined();
      // when it runs for three times lockTtl / then ticks started meanwhile are skipped
      await sleep(450);
      expect(await before(delivery(job, 2000))).toMatchObject({ kind: "discard", status: "skipped" });
      await sleep(450);
      expect(await before(delivery(job, 3000))).toMatchObject({ kind: "discard", status: "skipped" });
      // and once it ended, the next tick runs, and stays alone even after lockTtl (renewal stopped with tick 1)
      await after(first, true);
      const fourth = delivery(job, 4000);
      expect(await before(fourth)).toBeUndefined();
      await sleep(450);
      expect(await before(delivery(job, 5000))).toMatchObject({ kind: "discard", status: "skipped" });
      await after(fourth, true);
      expect((await history()).map((r) => [r.tick / 1000, r.status])).toEqual([[5, "SKIPPED"], [4, "COMPLETED"],
        [3, "SKIPPED"], [2, "SKIPPED"], [1, "COMPLETED"]]);
    });

    test("a run settled without its afterProcess stops renewing and releases its lock, unless its lease was lost", async () => {
      const t = await setup();
      // given a cron with a 300 ms lock and tick 1 running
      const { job, before, skip, history } = runs(t.store, { lockTtl: 300 });
      const first = delivery(job, 1000);
      expect(await before(first)).toBeUndefined();
      // when a later middleware dead-letters it before it ran / then the next tick runs at once
      await skip(first, { kind: "deadLetter", error: { name: "MaxAgeExceeded", message: "too old" } });
      const second = delivery(job, 2000);
      expect(await before(second)).toBeUndefined();
      // when tick 2 is given back (a hook threw) / then the lock is free for tick 3 too
      await skip(second, { kind: "giveBack" });
      const third = delivery(job, 3000);
      expect(await before(third)).toBeUndefined();
      const runs1 = await history();
      expect(runs1.find((r) => r.tick === 1000)).toMatchObject({ status: "FAILED", error: { name: "MaxAgeExceeded", message: "too old" } });
      expect(runs1.find((r) => r.tick === 2000)).toMatchObject({ status: "SKIPPED" });
      // when this worker loses tick 3's lease (another worker runs it now) / then its lock and its
      // RUNNING record are left to that worker, and no longer renewed from here
      await skip(third, undefined);
      expect(await before(delivery(job, 4000))).toMatchObject({ kind: "discard", status: "skipped" });
      expect((await history()).find((r) => r.tick === 3000)).toMatchObject({ status: "RUNNING" });
      await sleep(350);
      expect(await t.store.renew(lock(job, 3000, 300))).toBe("expired");
    });

    test("lockTtl 0 takes no lock; history keeps only the newest historySize runs", async () => {
      const t = await setup();
      // given a cron without lock keeping 3 runs
      const { job, before, history } = runs(t.store, { lockTtl: 0, historySize: 3 });
      // when five ticks start while none finished
      const decisions = [];
      for (let i = 1; i <= 5; i++) decisions.push(await before(delivery(job, i * 1000)));
      // then all ran, and the three newest are kept
      expect(decisions).toEqual([undefined, undefined, undefined, undefined, undefined]);
      expect((await history()).map((r) => r.tick)).toEqual([5000, 4000, 3000]);
      expect((await history()).length).toBe(3);
    });
  });
}
