/**
 * Job records at the Broker interface, the same cases on every broker (Redis, a Redis Cluster, the
 * MemoryBroker): what a sender writes, what read/ack/retry/deadLetter/giveBack do to it, waiting,
 * abort, rate-limit slots. Run by results_conformance.test.ts and cluster_broker.test.ts.
 */
import { describe, expect, test } from "bun:test";
import type { Broker } from "../src/broker/types.ts";
import type { Delivery, Message } from "../src/message.ts";
import { settledRecord } from "../src/results/record.ts";
import { sleep } from "./helpers.ts";

export interface Made {
  broker: Broker;
  cleanup(): Promise<void>;
}

const msg = (over: Partial<Message> = {}): Message => ({
  id: `j-${crypto.randomUUID().slice(0, 8)}`, actor: "a", queue: "q", payload: 1, priority: 0, sentAt: Date.now(),
  tracked: true, ...over,
});

async function readOne(broker: Broker): Promise<Delivery> {
  const [d] = await broker.read(["q"], 1, 200);
  if (!d || "malformed" in d) throw new Error("nothing read");
  return d;
}

/** `enabled` is known before the tests are registered, so that bun reports them as skipped when false. */
export function resultsConformance(name: string, make: () => Promise<Made>, enabled: boolean) {
  const it = (title: string, body: (b: Broker) => Promise<void>) =>
    test.skipIf(!enabled)(title, async () => {
      const m = await make();
      try {
        await body(m.broker);
      } finally {
        await m.cleanup();
      }
    }, 20_000);

  describe(`job records: ${name}`, () => {
    it("queued, then running while held, then completed with the value, kept keepMs", async (broker) => {
      const m = msg();
      await broker.enqueue([{ message: m }]);
      expect(await broker.jobs.get("q", m.id)).toMatchObject({ status: "queued", attempts: 0, enqueuedAt: m.sentAt });
      const d = await readOne(broker);
      await sleep(20); // the running mark is sent without waiting
      expect((await broker.jobs.get("q", m.id))?.status).toBe("running");
      const waiting = broker.jobs.wait("q", m.id, 5_000);
      await broker.ack([{ delivery: d, keepMs: 300, record: settledRecord(d, "completed", { startedAt: Date.now(), result: { ok: 1 } }) }]);
      const done = await waiting;
      expect(done.kind).toBe("finished");
      expect(done.kind === "finished" && done.record).toMatchObject({ status: "completed", result: { ok: 1 }, attempts: 1 });
      await sleep(450);
      expect(await broker.jobs.get("q", m.id)).toBeUndefined();
    });

    it("a message without a record gets none; keepMs 0 removes the sender's", async (broker) => {
      const plain = msg({ tracked: false });
      const tracked = msg();
      await broker.enqueue([{ message: plain }, { message: tracked }]);
      expect(await broker.jobs.get("q", plain.id)).toBeUndefined();
      const [a, b] = (await broker.read(["q"], 2, 0)) as Delivery[];
      await broker.ack([{ delivery: a!, keepMs: 0 }, { delivery: b!, keepMs: 0 }]);
      expect(await broker.jobs.get("q", tracked.id)).toBeUndefined();
      expect(await broker.jobs.wait("q", tracked.id, 1_000)).toEqual({ kind: "unknown" });
    });

    it("delayed until due; a retry is delayed with its error; a dead letter keeps the error", async (broker) => {
      const m = msg();
      await broker.enqueue([{ message: m, delay: 150 }]);
      expect((await broker.jobs.get("q", m.id))?.status).toBe("delayed");
      await sleep(200);
      expect((await broker.jobs.get("q", m.id))?.status).toBe("queued");
      let d = await readOne(broker);
      const error = { name: "Error", message: "first try" };
      await broker.retry(d, 50, { record: settledRecord(d, "delayed", { startedAt: Date.now(), error, dueAt: Date.now() + 50 }) });
      expect(await broker.jobs.get("q", m.id)).toMatchObject({ status: "delayed", attempts: 1, error });
      await sleep(80);
      d = await readOne(broker);
      expect(d.retries).toBe(1);
      const dead = { name: "Error", message: "second try" };
      await broker.deadLetter(d, dead, 1_000, settledRecord(d, "dead", { startedAt: Date.now(), error: dead }));
      expect(await broker.jobs.get("q", m.id)).toMatchObject({ status: "dead", attempts: 2, error: dead });
    });

    it("a requeued dead letter reads queued again, without expiry, and holds its id again", async (broker) => {
      const m = msg({ dedup: true });
      await broker.enqueue([{ message: m }]);
      const d = await readOne(broker);
      const error = { name: "Error", message: "gave up" };
      await broker.deadLetter(d, error, 300, settledRecord(d, "dead", { startedAt: Date.now(), error }));
      expect(await broker.jobs.get("q", m.id)).toMatchObject({ status: "dead", attempts: 1, error });
      const [letter] = await broker.deadLetters("q");
      expect(await broker.requeue("q", [letter!.id])).toBe(1);
      await sleep(400); // past the dead record's and the id's 300 ms
      const record = await broker.jobs.get("q", m.id);
      expect(record).toMatchObject({ id: m.id, actor: "a", queue: "q", status: "queued", attempts: 0, enqueuedAt: m.sentAt });
      expect(record).not.toHaveProperty("error");
      expect(record).not.toHaveProperty("finishedAt");
      expect(await broker.enqueue([{ message: msg({ id: m.id, dedup: true, payload: "again" }) }])).toEqual([false]);
      const again = await readOne(broker);
      expect(again.message).toMatchObject({ id: m.id, payload: 1 });
      expect(again.retries).toBe(0);
    });

    it("a dead letter whose jobId a newer job holds stays in the dlq until that job settles; the newer job's record is left alone", async (broker) => {
      const m = msg({ dedup: true });
      await broker.enqueue([{ message: m }]);
      const d = await readOne(broker);
      // Nothing kept: the id is free again at once, and a newer job takes it.
      await broker.deadLetter(d, { name: "Error", message: "gave up" }, 0);
      const newer = msg({ id: m.id, dedup: true, payload: "newer", sentAt: m.sentAt + 5 });
      expect(await broker.enqueue([{ message: newer }])).toEqual([true]);
      const [letter] = await broker.deadLetters("q");
      expect(await broker.requeue("q", [letter!.id])).toBe(0);
      expect(await broker.requeue("q")).toBe(0);
      expect((await broker.deadLetters("q")).map((l) => l.id)).toEqual([letter!.id]);
      expect(await broker.jobs.get("q", m.id)).toMatchObject({ status: "queued", enqueuedAt: newer.sentAt });
      const running = await readOne(broker);
      expect(running.message.payload).toBe("newer");
      await broker.ack([{ delivery: running, keepMs: 0 }]);
      expect(await broker.requeue("q", [letter!.id])).toBe(1);
      expect((await readOne(broker)).message).toMatchObject({ id: m.id, payload: 1 });
    });

    it("a deferral charges no attempt; give back leaves the record queued", async (broker) => {
      const m = msg();
      await broker.enqueue([{ message: m }]);
      let d = await readOne(broker);
      await broker.retry(d, 0, { charge: false });
      d = await readOne(broker);
      expect(d.retries).toBe(0);
      await broker.giveBack([d]);
      expect((await broker.jobs.get("q", m.id))?.status).toBe("queued");
    });

    it("a duplicate send leaves the first job's record", async (broker) => {
      const first = msg({ id: "dup", dedup: true, payload: "first" });
      expect(await broker.enqueue([{ message: first }])).toEqual([true]);
      const d = await readOne(broker);
      await broker.ack([{ delivery: d, keepMs: 5_000, record: settledRecord(d, "completed", { startedAt: 1, result: "first" }) }]);
      expect(await broker.enqueue([{ message: msg({ id: "dup", dedup: true, payload: "second" }) }])).toEqual([false]);
      expect(await broker.jobs.get("q", "dup")).toMatchObject({ status: "completed", result: "first" });
    });

    it("abort: queued becomes aborted and is announced; running is announced; finished is left", async (broker) => {
      const seen: string[] = [];
      const stop = await broker.jobs.watchAborts(["q"], (id) => seen.push(id));
      const queued = msg();
      const running = msg();
      await broker.enqueue([{ message: running }]);
      const d = await readOne(broker);
      await broker.enqueue([{ message: queued }]);
      await sleep(20);
      const waiting = broker.jobs.wait("q", queued.id);
      expect(await broker.jobs.abort("q", queued.id)).toMatchObject({ aborted: true, status: "queued" });
      expect(await waiting).toMatchObject({ kind: "finished", record: { status: "aborted" } });
      expect(await broker.jobs.abort("q", running.id)).toMatchObject({ aborted: true, status: "running" });
      await sleep(50);
      expect(seen).toEqual([queued.id, running.id]);
      await broker.ack([{ delivery: d, keepMs: 1_000, record: settledRecord(d, "aborted", { error: { name: "JobAborted", message: "x" } }) }]);
      expect(await broker.jobs.abort("q", running.id)).toMatchObject({ aborted: false, status: "aborted" });
      expect(await broker.jobs.abort("q", "nobody")).toBeUndefined();
      await stop();
      // a worker starting now still learns of the queued one, not of the settled one
      const later: string[] = [];
      await (await broker.jobs.watchAborts(["q"], (id) => later.push(id)))();
      expect(later).toEqual([queued.id]);
    });

    it("locates a job's queue from its id", async (broker) => {
      const m = msg({ queue: "elsewhere" });
      await broker.enqueue([{ message: m }]);
      expect(await broker.jobs.locate(m.id)).toBe("elsewhere");
      expect(await broker.jobs.locate("nobody")).toBeUndefined();
    });

    it("rate-limit slots: concurrent leases and a sliding window", async (broker) => {
      const c = { kind: "concurrent", limit: 2, leaseMs: 10_000 } as const;
      expect(await broker.limits.acquire("k:running", c, "t1")).toBe(0);
      expect(await broker.limits.acquire("k:running", c, "t2")).toBe(0);
      expect(await broker.limits.acquire("k:running", c, "t3")).toBe(-1);
      await broker.limits.release("k:running", "t1");
      expect(await broker.limits.acquire("k:running", c, "t3")).toBe(0);
      const w = { kind: "window", limit: 2, windowMs: 300 } as const;
      expect(await broker.limits.acquire("k:window", w, "a")).toBe(0);
      expect(await broker.limits.acquire("k:window", w, "b")).toBe(0);
      const wait = await broker.limits.acquire("k:window", w, "c");
      expect(wait).toBeGreaterThan(200);
      expect(wait).toBeLessThanOrEqual(300);
      await sleep(wait + 20);
      expect(await broker.limits.acquire("k:window", w, "c")).toBe(0);
    });

    it("rate-limit slots: taking the same token twice (a send repeated after a lost reply) is granted once", async (broker) => {
      // given a full concurrency limit, one of whose slots is t1's
      const c = { kind: "concurrent", limit: 2, leaseMs: 10_000 } as const;
      expect(await broker.limits.acquire("k:running", c, "t1")).toBe(0);
      expect(await broker.limits.acquire("k:running", c, "t2")).toBe(0);
      // when t1's take is sent again, then it is granted without a slot more, and its release frees one
      expect(await broker.limits.acquire("k:running", c, "t1")).toBe(0);
      expect(await broker.limits.acquire("k:running", c, "t3")).toBe(-1);
      await broker.limits.release("k:running", "t1");
      expect(await broker.limits.acquire("k:running", c, "t3")).toBe(0);
      // and the same for a window
      const w = { kind: "window", limit: 1, windowMs: 10_000 } as const;
      expect(await broker.limits.acquire("k:window", w, "a")).toBe(0);
      expect(await broker.limits.acquire("k:window", w, "a")).toBe(0);
      expect(await broker.limits.acquire("k:window", w, "b")).toBeGreaterThan(0);
    });
  });
}

