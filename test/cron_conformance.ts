/**
 * What every cron store (src/cron/store.ts) must do, run against the Redis store and the memory one
 * by cron_store.test.ts: start counting at first sight, claim a tick once whoever asks, refuse stale
 * and early claims, and keep the overlap lock and run history the run middleware relies on.
 */
import { describe, expect, test } from "bun:test";
import { pino } from "pino";
import { actor } from "../src/actor.ts";
import { cron, crons, type CronJob, type CronOptionsInput } from "../src/cron/cron.ts";
import { cronRuns } from "../src/cron/runs.ts";
import type { CronStore } from "../src/cron/store.ts";
import { tickMessages, Ticker } from "../src/cron/ticker.ts";
import type { Delivery, Message } from "../src/message.ts";
import type { ProcessInfo } from "../src/middleware.ts";

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

export function cronStoreConformance(name: string, setup: () => Promise<CronStoreUnderTest | undefined>): void {
  const logger = pino({ level: "silent" });
  const second = (ms: number) => Math.floor(ms / 1000) * 1000;

  describe(`cron store conformance: ${name}`, () => {
    test("first sight starts counting from the given time; a second ticker's first sight changes nothing", async () => {
      const t = await setup();
      if (!t) return;
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
      if (!t) return;
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
      if (!t) return;
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
      if (!t) return;
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
      return { job, before, after, history: () => store.history({ name: job.name, queue: CONFORMANCE_QUEUE }) };
    };

    test("a run while another holds the lock is SKIPPED; the lock is released on success and on failure", async () => {
      const t = await setup();
      if (!t) return;
      // given a cron with a 60 s lock, and the run of tick 1 going
      const { job, before, after, history } = runs(t.store, { lockTtl: 60_000 });
      const [t1, t2, t3, t4] = [1, 2, 3, 4].map((i) => delivery(job, i * 1000));
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
      const all = (await history()).sort((a, b) => a.tick - b.tick);
      expect(all.map((r) => [r.tick / 1000, r.status])).toEqual([[1, "COMPLETED"], [2, "SKIPPED"], [3, "FAILED"], [4, "RUNNING"]]);
      expect(all[0]).toMatchObject({ cron: job.name, jobId: `cron:${job.name}:1000`, attempt: 1, result: { n: 1 }, duration: 3 });
      expect(all[2]!.error).toEqual({ name: "Boom", message: "no" });
      expect(all[0]!.completedAt).toBeGreaterThanOrEqual(all[0]!.startedAt);
    });

    test("the lock expires after lockTtl when its holder never comes back", async () => {
      const t = await setup();
      if (!t) return;
      // given a run holding a 300 ms lock whose worker died (no afterProcess)
      const { job, before } = runs(t.store, { lockTtl: 300 });
      expect(await before(delivery(job, 1000))).toBeUndefined();
      expect(await before(delivery(job, 2000))).toEqual({ kind: "ack" });
      // when lockTtl has passed / then the next tick runs
      await new Promise((r) => setTimeout(r, 350));
      expect(await before(delivery(job, 3000))).toBeUndefined();
    });

    test("lockTtl 0 takes no lock; history keeps only the newest historySize runs", async () => {
      const t = await setup();
      if (!t) return;
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
