/**
 * The one conformance suite every Broker implementation must pass (Redis, in-memory). Each case is
 * given/when/then on a fresh broker with its own prefix.
 */
import { describe, expect } from "bun:test";
import type { Redis } from "ioredis";
import { workersKey } from "../src/broker/keys.ts";
import type { Broker, WorkerInfo } from "../src/broker/types.ts";
import type { Delivery, MalformedDelivery, Message } from "../src/message.ts";
import { fixtureTest, type BrokerFixture } from "./conformance_fixture.ts";
import { sleep } from "./helpers.ts";
import { browseConformance } from "./browse_conformance.ts";

export type { BrokerFixture } from "./conformance_fixture.ts";

let seq = 0;
function msg(queue: string, over: Partial<Message> = {}): Message {
  return { id: `m${seq++}-${crypto.randomUUID().slice(0, 6)}`, actor: "a", queue, payload: { n: seq }, priority: 0, sentAt: Date.now(), ...over };
}

/** A worker's heartbeat entry, live for `ttl` ms from now. */
function workerInfo(id: string, ttl: number, over: Partial<WorkerInfo> = {}): WorkerInfo {
  const now = Date.now();
  return { id, host: "h", pid: 1, runtime: "bun", queues: ["q"], isolation: "threads", concurrency: 4, threads: 2,
    startedAt: now, beatAt: now, expiresAt: now + ttl, running: 0, processed: 0, failed: 0, ...over };
}

const ok = (ds: Array<Delivery | MalformedDelivery>): Delivery[] => ds.filter((d): d is Delivery => !("malformed" in d));

/** `enabled` is known before the tests are registered, so that bun reports them as skipped when false. */
export function brokerConformance(name: string, make: (visibilityTimeout: number) => Promise<BrokerFixture>, enabled: boolean) {
  const it = fixtureTest(make, enabled);

  // The read-only views' cases (browse, findJob, purge by id, statsMany) live in their own file.
  browseConformance(name, make, enabled);

  describe(`broker conformance: ${name}`, () => {
    it("delivers what was sent, once, and ack removes it", async ({ broker }) => {
      const m = msg("q");
      expect(await broker.enqueue([{ message: m }])).toEqual([true]);
      const [d] = ok(await broker.read(["q"], 10, 0));
      expect(d!.message).toEqual(m);
      expect(d!.retries).toBe(0);
      expect(await broker.read(["q"], 10, 0)).toEqual([]);
      await broker.ack([{ delivery: d!, keepMs: 0 }]);
      expect(await broker.stats("q")).toMatchObject({ ready: 0, running: 0, delayed: 0, dead: 0 });
    });

    it("reads no more than asked, oldest first", async ({ broker }) => {
      await broker.enqueue([1, 2, 3, 4, 5].map((n) => ({ message: msg("q", { payload: n }) })));
      const first = ok(await broker.read(["q"], 2, 0));
      expect(first.map((d) => d.message.payload)).toEqual([1, 2]);
      const rest = ok(await broker.read(["q"], 10, 0));
      expect(rest.map((d) => d.message.payload)).toEqual([3, 4, 5]);
    });

    it("serves higher priority first", async ({ broker }) => {
      await broker.enqueue([
        { message: msg("q", { payload: "low", priority: 0 }) },
        { message: msg("q", { payload: "high", priority: 5 }) },
        { message: msg("q", { payload: "lowest", priority: -1 }) },
      ]);
      const got: unknown[] = [];
      for (let i = 0; i < 3; i++) got.push(...ok(await broker.read(["q"], 1, 0)).map((d) => d.message.payload));
      expect(got).toEqual(["high", "low", "lowest"]);
    });

    it("serves a priority level that appears after the queue was read", async ({ broker }) => {
      // Redis reads a one-level queue without Lua and learns of a new level from that read: the
      // batch in flight may still come from the old level, never a second one.
      await broker.enqueue([1, 2, 3, 4].map((n) => ({ message: msg("q", { payload: n }) })));
      expect(ok(await broker.read(["q"], 1, 0)).map((d) => d.message.payload)).toEqual([1]);
      await broker.enqueue([{ message: msg("q", { payload: "high", priority: 5 }) }]);
      const next = ok(await broker.read(["q"], 1, 0)).map((d) => d.message.payload);
      if (next[0] !== "high") expect(ok(await broker.read(["q"], 1, 0)).map((d) => d.message.payload)).toEqual(["high"]);
      expect(ok(await broker.read(["q"], 10, 0)).map((d) => d.message.payload)).not.toContain("high");
    });

    it("holds a delayed message until it is due, then delivers it", async ({ broker }) => {
      const sent = Date.now();
      await broker.enqueue([{ message: msg("q"), delay: 400 }, { message: msg("q", { payload: "at" }), at: Date.now() + 400 }]);
      expect(await broker.read(["q"], 10, 0)).toEqual([]);
      expect((await broker.stats("q")).delayed).toBe(2);
      const got: Delivery[] = [];
      while (got.length < 2 && Date.now() - sent < 3_000) got.push(...ok(await broker.read(["q"], 10, 200)));
      expect(got.length).toBe(2);
      expect(Date.now() - sent).toBeGreaterThanOrEqual(390);
    });

    it("a blocking read wakes up when a message arrives", async ({ broker }) => {
      await broker.read(["q"], 1, 0); // creates what the queue needs
      const t0 = Date.now();
      const reading = broker.read(["q"], 1, 3_000);
      await sleep(100);
      await broker.enqueue([{ message: msg("q") }]);
      expect(ok(await reading).length + ok(await broker.read(["q"], 1, 0)).length).toBe(1);
      expect(Date.now() - t0).toBeLessThan(2_500);
    });

    it("dedups by job id while the job is known, and forgets it when settled without keep", async ({ broker }) => {
      const m = msg("q", { id: "same-id", dedup: true });
      expect(await broker.enqueue([{ message: m }, { message: { ...m, payload: "second" } }])).toEqual([true, false]);
      const [d] = ok(await broker.read(["q"], 10, 0));
      expect(await broker.enqueue([{ message: m }])).toEqual([false]);
      await broker.ack([{ delivery: d!, keepMs: 0 }]);
      expect(await broker.enqueue([{ message: m }])).toEqual([true]);
    });

    it("keeps a settled job id known for keepMs", async ({ broker }) => {
      const m = msg("q", { id: "kept", dedup: true });
      await broker.enqueue([{ message: m }]);
      const [d] = ok(await broker.read(["q"], 10, 0));
      await broker.ack([{ delivery: d!, keepMs: 300 }]);
      expect(await broker.enqueue([{ message: m }])).toEqual([false]);
      await sleep(450);
      expect(await broker.enqueue([{ message: m }])).toEqual([true]);
    });

    it("retry puts the message back after its delay with one more retry counted", async ({ broker }) => {
      await broker.enqueue([{ message: msg("q") }]);
      const [d] = ok(await broker.read(["q"], 10, 0));
      await broker.retry(d!, 250);
      expect(await broker.stats("q")).toMatchObject({ ready: 0, running: 0, delayed: 1 });
      expect(await broker.read(["q"], 10, 0)).toEqual([]);
      await sleep(300);
      const [again] = ok(await broker.read(["q"], 10, 0));
      expect(again!.message.id).toBe(d!.message.id);
      expect(again!.retries).toBe(1);
    });

    it("dead letters keep message, error and retries; requeue runs them again; purge empties", async ({ broker }) => {
      await broker.enqueue([{ message: msg("q", { payload: "x" }) }, { message: msg("q", { payload: "y" }) }]);
      const ds = ok(await broker.read(["q"], 10, 0));
      await broker.retry(ds[0]!, 0);
      await sleep(20);
      const [retried] = ok(await broker.read(["q"], 10, 0));
      await broker.deadLetter(retried!, { name: "Boom", message: "it broke", stack: "at x" });
      await broker.deadLetter(ds[1]!, { name: "Other", message: "no" });
      const letters = await broker.deadLetters("q");
      expect(letters.length).toBe(2);
      expect(letters[0]).toMatchObject({ queue: "q", retries: 1, error: { name: "Boom", message: "it broke", stack: "at x" } });
      expect((letters[0]!.message as Message).payload).toBe("x");
      expect(await broker.requeue("q", [letters[0]!.id])).toBe(1);
      const [back] = ok(await broker.read(["q"], 10, 0));
      expect(back!.message.payload).toBe("x");
      expect(back!.retries).toBe(0);
      expect(await broker.purgeDeadLetters("q")).toBe(1);
      expect((await broker.stats("q")).dead).toBe(0);
    });

    it("give back returns a message at once without counting a retry", async ({ broker }) => {
      await broker.enqueue([{ message: msg("q") }]);
      const [d] = ok(await broker.read(["q"], 10, 0));
      await broker.giveBack([d!]);
      const [again] = ok(await broker.read(["q"], 10, 0));
      expect(again!.message.id).toBe(d!.message.id);
      expect(again!.retries).toBe(0);
    });

    it("reclaims what a consumer held past the visibility timeout, unless extended", async ({ broker }) => {
      await broker.enqueue([{ message: msg("q", { payload: "kept" }) }, { message: msg("q", { payload: "lost" }) }]);
      const ds = ok(await broker.read(["q"], 10, 0));
      const kept = ds.find((d) => d.message.payload === "kept")!;
      for (let i = 0; i < 6; i++) {
        await sleep(100);
        await broker.extend([kept.ref]);
      }
      const again = ok(await broker.read(["q"], 10, 0));
      expect(again.map((d) => d.message.payload)).toEqual(["lost"]);
    }, 400);

    it("counts the claims it takes back on a message; a new entry (a retry) starts again at none", async ({ broker }) => {
      await broker.enqueue([{ message: msg("q") }]);
      const [d] = ok(await broker.read(["q"], 10, 0));
      expect(d!.lost).toBeUndefined();
      for (const lost of [1, 2]) {
        await sleep(450); // the consumer holding it "died": no settle, no extend
        const [again] = ok(await broker.read(["q"], 10, 0));
        expect(again!.message.id).toBe(d!.message.id);
        expect(again!.lost).toBe(lost);
        expect(again!.retries).toBe(0);
      }
      await sleep(450);
      const [third] = ok(await broker.read(["q"], 10, 0));
      await broker.retry(third!, 0);
      await sleep(20);
      const [retried] = ok(await broker.read(["q"], 10, 0));
      expect(retried!.retries).toBe(1);
      expect(retried!.lost).toBeUndefined();
    }, 400);

    it("a settle by a consumer that lost its claim does not duplicate the message", async ({ broker }) => {
      await broker.enqueue([{ message: msg("q") }]);
      const [d] = ok(await broker.read(["q"], 10, 0));
      await sleep(450);
      const [reclaimed] = ok(await broker.read(["q"], 10, 0));
      expect(reclaimed!.message.id).toBe(d!.message.id);
      await broker.ack([{ delivery: reclaimed!, keepMs: 0 }]);
      await broker.retry(d!, 0); // the first consumer wakes up late
      await sleep(20);
      expect(await broker.read(["q"], 10, 0)).toEqual([]);
      expect(await broker.stats("q")).toMatchObject({ ready: 0, delayed: 0 });
    }, 400);

    it("a holder whose claim was reclaimed by another worker can neither renew nor settle it", async (f) => {
      // given a job read by one worker, whose claim lapsed and another worker reclaimed
      const peer = await f.peer();
      await f.broker.enqueue([{ message: msg("q") }]);
      const [d] = ok(await f.broker.read(["q"], 10, 0));
      await sleep(450);
      const [r] = ok(await peer.read(["q"], 10, 0));
      expect(r!.message.id).toBe(d!.message.id);
      // when the first holder, late, renews and settles it every way
      expect(await f.broker.extend([d!.ref])).toEqual([d!.ref]);
      expect(await f.broker.ack([{ delivery: d!, keepMs: 0 }])).toEqual([d!.ref]);
      expect(await f.broker.retry(d!, 0)).toBe(false);
      expect(await f.broker.giveBack([d!])).toEqual([d!.ref]);
      expect(await f.broker.deadLetter(d!, { name: "Late", message: "too late" })).toBe(false);
      // then nothing moved: the new holder still holds it, renews it and settles it
      await sleep(20);
      expect(await f.broker.stats("q")).toMatchObject({ ready: 0, delayed: 0, dead: 0, running: 1 });
      expect(await peer.extend([r!.ref])).toEqual([]);
      expect(await peer.ack([{ delivery: r!, keepMs: 0 }])).toEqual([]);
      expect(await f.broker.stats("q")).toMatchObject({ ready: 0, delayed: 0, dead: 0, running: 0 });
    }, 400);

    it("hands over entries that are not dray messages as malformed, and dead-letters them", async (f) => {
      await f.addRaw("q", "{not json");
      await f.addRaw("q", JSON.stringify({ hello: "world" }));
      const ds = await f.broker.read(["q"], 10, 0);
      expect(ds.length).toBe(2);
      for (const d of ds) {
        expect("malformed" in d).toBe(true);
        await f.broker.deadLetter(d, { name: "MalformedMessageError", message: (d as MalformedDelivery).error.message });
      }
      const letters = await f.broker.deadLetters("q");
      expect(letters.map((l) => l.error.message)).toEqual([expect.stringContaining("not JSON"), expect.stringContaining("no id")]);
    });

    it("keeps fields a newer sender added through retry, give back and dead letter", async (f) => {
      // given an entry written by a newer sender, with a field this version does not know
      const future = { flag: true, nested: { n: 1 } };
      await f.addRaw("q", JSON.stringify({ ...msg("q"), future }));
      const [d] = ok(await f.broker.read(["q"], 10, 0));
      // when it is retried, then given back, then dead-lettered
      await f.broker.retry(d!, 0);
      await sleep(20);
      const [retried] = ok(await f.broker.read(["q"], 10, 0));
      expect(retried!.retries).toBe(1);
      expect(retried!.message).toMatchObject({ future });
      await f.broker.giveBack([retried!]);
      const [back] = ok(await f.broker.read(["q"], 10, 0));
      expect(back!.message).toMatchObject({ future });
      await f.broker.deadLetter(back!, { name: "Boom", message: "no" });
      // then the dead letter still has it
      const [letter] = await f.broker.deadLetters("q");
      expect(letter!.message).toMatchObject({ future });
    });

    it("publishes actors so senders can route by name", async ({ broker }) => {
      await broker.publishActors([{ name: "x_task", queue: "email", priority: 3 }]);
      expect(await broker.lookupActor("x_task")).toEqual({ name: "x_task", queue: "email", priority: 3 });
      expect(await broker.lookupActor("missing")).toBeUndefined();
      expect(await broker.queues()).toContain("email");
    });

    it("reads several queues", async ({ broker }) => {
      await broker.enqueue([{ message: msg("a", { payload: 1 }) }, { message: msg("b", { payload: 2 }) }]);
      const got = ok(await broker.read(["a", "b"], 10, 0));
      expect(got.map((d) => d.message.payload).sort()).toEqual([1, 2]);
    });

    it("pause, resume and paused: the paused set, sorted; resume says whether the queue was paused", async ({ broker }) => {
      // given nothing paused
      expect(await broker.control.paused()).toEqual([]);
      // when two queues are paused (one twice), out of order
      await broker.control.pause("b");
      await broker.control.pause("a");
      await broker.control.pause("b");
      // then both are listed once, sorted
      expect(await broker.control.paused()).toEqual(["a", "b"]);
      // and resuming one says it was paused, a second time that it was not, and leaves the other
      expect(await broker.control.resume("b")).toBe(true);
      expect(await broker.control.resume("b")).toBe(false);
      expect(await broker.control.resume("never")).toBe(false);
      expect(await broker.control.paused()).toEqual(["a"]);
    });

    it("a paused queue still takes sends and delays: they wait in it", async ({ broker }) => {
      // given a paused queue
      await broker.control.pause("q");
      // when a job is sent to it, and one with a delay
      await broker.enqueue([{ message: msg("q") }, { message: msg("q"), delay: 60_000 }]);
      // then both are there (pausing is the workers' business: the broker keeps taking writes)
      expect(await broker.stats("q")).toMatchObject({ ready: 1, delayed: 1 });
    });

    it("heartbeat, workers and removeWorker: live entries by start time, a second beat updates one", async ({ broker }) => {
      // given two workers that beat, the younger first
      await broker.control.heartbeat(workerInfo("w2", 5_000, { startedAt: 2_000 }));
      await broker.control.heartbeat(workerInfo("w1", 5_000, { startedAt: 1_000 }));
      expect((await broker.control.workers()).map((w) => w.id)).toEqual(["w1", "w2"]);
      // when one beats again with new counts
      await broker.control.heartbeat(workerInfo("w1", 5_000, { startedAt: 1_000, running: 3, processed: 7, failed: 1 }));
      // then its entry is replaced, not added
      const workers = await broker.control.workers();
      expect(workers.length).toBe(2);
      expect(workers[0]).toMatchObject({ id: "w1", running: 3, processed: 7, failed: 1, queues: ["q"] });
      // and removeWorker takes exactly that one off
      await broker.control.removeWorker("w1");
      expect((await broker.control.workers()).map((w) => w.id)).toEqual(["w2"]);
      await broker.control.removeWorker("absent");
      expect((await broker.control.workers()).map((w) => w.id)).toEqual(["w2"]);
    });

    it("a worker whose entry lapsed is not listed, and is pruned", async ({ broker }) => {
      // given a worker that beat once with a short expiry, and one that stays live
      await broker.control.heartbeat(workerInfo("gone", 150));
      await broker.control.heartbeat(workerInfo("live", 10_000));
      expect((await broker.control.workers()).map((w) => w.id).sort()).toEqual(["gone", "live"]);
      // when its expiry passes without another beat
      await sleep(200);
      // then only the live one is listed
      expect((await broker.control.workers()).map((w) => w.id)).toEqual(["live"]);
      // and the lapsed entry is gone from the store, where the store can be looked at (Redis): else
      // the hash grows with every worker that died without taking itself off
      const redis = (broker as { redis?: Redis }).redis;
      if (redis) expect(await redis.hkeys(workersKey(broker.prefix))).toEqual(["live"]);
    });
  });
}
