/**
 * The broker conformance cases of the read-only views (browse, findJob, purge by id, statsMany),
 * part of brokerConformance (broker_conformance.ts): every broker passes them. Given/when/then on
 * a fresh broker with its own prefix.
 */
import { describe, expect } from "bun:test";
import { ConfigError } from "../src/errors.ts";
import type { Broker, BrowsedJob, JobState } from "../src/broker/types.ts";
import type { Delivery, MalformedDelivery, Message } from "../src/message.ts";
import { fixtureTest, type BrokerFixture } from "./conformance_fixture.ts";
import { sleep } from "./helpers.ts";

let seq = 0;
function msg(queue: string, over: Partial<Message> = {}): Message {
  return { id: `b${seq++}-${crypto.randomUUID().slice(0, 6)}`, actor: "a", queue, payload: seq, priority: 0, sentAt: Date.now(), ...over };
}

const ok = (ds: Array<Delivery | MalformedDelivery>): Delivery[] => ds.filter((d): d is Delivery => !("malformed" in d));
const payloads = (items: BrowsedJob[]) => items.map((i) => ("raw" in i.message ? i.message.raw : i.message.payload));

/** Every page of a state, following `next`; also how many pages it took. */
async function allPages(broker: Broker, queue: string, state: JobState, limit: number, between?: (page: number) => Promise<void>) {
  const items: BrowsedJob[] = [];
  let cursor: string | undefined;
  let pages = 0;
  do {
    const page = await broker.browse(queue, state, { limit, cursor });
    expect(page.items.length).toBeLessThanOrEqual(limit);
    items.push(...page.items);
    cursor = page.next;
    pages++;
    await between?.(pages);
  } while (cursor && pages < 100);
  return { items, pages };
}

export function browseConformance(name: string, make: (visibilityTimeout: number) => Promise<BrokerFixture>, enabled: boolean) {
  const it = fixtureTest(make, enabled);

  describe(`broker conformance, browsing: ${name}`, () => {
    it("ready: highest level first, oldest first, paged by cursor with none twice and none missing", async ({ broker }) => {
      // given seven jobs at level 5 and six at level 0, sent interleaved, of which a worker took two
      const sends = [];
      for (let n = 0; n < 7; n++) {
        sends.push({ message: msg("q", { priority: 5, payload: `h${n}` }) });
        if (n < 6) sends.push({ message: msg("q", { payload: `l${n}` }) });
      }
      await broker.enqueue(sends);
      expect(ok(await broker.read(["q"], 2, 0)).map((d) => d.message.payload)).toEqual(["h0", "h1"]);
      // when paging three at a time, while after the first page one more is sent and one more taken
      const { items, pages } = await allPages(broker, "q", "ready", 3, async (page) => {
        if (page !== 1) return;
        await broker.enqueue([{ message: msg("q", { priority: 5, payload: "h7" }) }]);
        expect(ok(await broker.read(["q"], 1, 0)).map((d) => d.message.payload)).toEqual(["h2"]);
      });
      // then each waiting job is listed once, in the order workers take them, and the last page says so
      expect(payloads(items)).toEqual(["h2", "h3", "h4", "h5", "h6", "h7", "l0", "l1", "l2", "l3", "l4", "l5"]);
      expect(pages).toBe(4);
      for (const item of items) {
        expect(item).toMatchObject({ state: "ready", queue: "q", retries: 0 });
        expect(item.id).toBe((item.message as Message).id);
        expect(typeof item.ref).toBe("string");
      }
    });

    it("running: oldest first with consumer and deliveries, when a tracked run started, and reclaims counted", async ({ broker }) => {
      // given three jobs a worker holds, one of them tracked (it has a record)
      const before = Date.now();
      await broker.enqueue([msg("q", { payload: 1, tracked: true }), msg("q", { payload: 2 }), msg("q", { payload: 3 })]
        .map((message) => ({ message })));
      expect(ok(await broker.read(["q"], 10, 0)).length).toBe(3);
      // when listed two at a time
      const { items, pages } = await allPages(broker, "q", "running", 2);
      // then all three, oldest first, each delivered once to a named consumer
      expect(pages).toBe(2);
      expect(payloads(items)).toEqual([1, 2, 3]);
      for (const item of items) {
        expect(item).toMatchObject({ state: "running", deliveries: 1, retries: 0 });
        expect(item.consumer).toEqual(expect.any(String));
      }
      expect(items[0]!.startedAt).toBeGreaterThanOrEqual(before - 5);
      expect(items[1]!.startedAt).toBeUndefined();
      expect((await broker.browse("q", "ready")).items).toEqual([]);
      // and a job taken back from a worker that died counts its second delivery
      await sleep(450);
      expect(ok(await broker.read(["q"], 10, 0)).length).toBe(3);
      expect((await broker.browse("q", "running")).items.map((i) => i.deliveries)).toEqual([2, 2, 2]);
    }, 400);

    it("delayed: soonest due first with dueAt and retries, paged stably through equal due times", async ({ broker }) => {
      // given jobs due in 30, 10 and 20 s, three due at the same instant later, and a retry due last
      const now = Date.now();
      const at = now + 40_000;
      await broker.enqueue([
        { message: msg("q", { payload: "30s" }), delay: 30_000 }, { message: msg("q", { payload: "10s" }), delay: 10_000 },
        { message: msg("q", { payload: "20s" }), delay: 20_000 }, ...["t1", "t2", "t3"].map((p) => ({ message: msg("q", { payload: p }), at })),
        { message: msg("q", { payload: "retry" }) },
      ]);
      const [d] = ok(await broker.read(["q"], 10, 0));
      await broker.retry(d!, 50_000);
      // when paged one at a time
      const { items, pages } = await allPages(broker, "q", "delayed", 1);
      // then soonest first, each once, with when it is due
      expect(pages).toBe(7);
      expect(payloads(items).slice(0, 3)).toEqual(["10s", "20s", "30s"]);
      expect(payloads(items).slice(3, 6).sort()).toEqual(["t1", "t2", "t3"]);
      expect(payloads(items)[6]).toBe("retry");
      expect(items[0]!.dueAt).toBeGreaterThanOrEqual(now + 9_000);
      expect(items[0]!.dueAt).toBeLessThanOrEqual(now + 11_000);
      expect(items.slice(3, 6).map((i) => i.dueAt)).toEqual([at, at, at]);
      expect(items[6]).toMatchObject({ state: "delayed", retries: 1 });
      expect(new Set(items.map((i) => i.ref)).size).toBe(7);
    });

    it("dead: newest first with the error; purge by ids removes only those", async ({ broker }) => {
      // given three jobs dead-lettered in turn
      await broker.enqueue([1, 2, 3].map((n) => ({ message: msg("q", { payload: n }) })));
      for (const d of ok(await broker.read(["q"], 10, 0))) {
        await broker.deadLetter(d, { name: "Boom", message: `e${d.message.payload}` });
      }
      // when listed a page of two at a time
      const { items, pages } = await allPages(broker, "q", "dead", 2);
      // then newest first, each with its error and when it died
      expect(pages).toBe(2);
      expect(payloads(items)).toEqual([3, 2, 1]);
      expect(items.map((i) => i.error?.message)).toEqual(["e3", "e2", "e1"]);
      for (const item of items) expect(item.deadAt).toBeGreaterThan(Date.now() - 10_000);
      // and purging the middle one by its letter id (with ids that are no letters) removes it alone
      expect(await broker.purgeDeadLetters("q", [items[1]!.ref, "1-1", "not-an-id"])).toBe(1);
      expect(payloads((await broker.browse("q", "dead")).items)).toEqual([3, 1]);
      expect(await broker.purgeDeadLetters("q", [])).toBe(0);
      expect(await broker.purgeDeadLetters("q")).toBe(2);
      expect((await broker.browse("q", "dead")).items).toEqual([]);
    });

    it("an entry that is not a dray message lists with its raw body, ready and running", async (f) => {
      // given an entry a foreign program wrote
      await f.addRaw("q", "{not json");
      // then it lists as ready, its body raw and its locator as id
      const [ready] = (await f.broker.browse("q", "ready")).items;
      expect(ready!.message).toEqual({ raw: "{not json" });
      expect(ready!.id).toBe(ready!.ref);
      // and as running once a worker holds it
      expect((await f.broker.read(["q"], 10, 0)).length).toBe(1);
      const [running] = (await f.broker.browse("q", "running")).items;
      expect(running!.message).toEqual({ raw: "{not json" });
      expect(running!.startedAt).toBeUndefined();
    });

    it("findJob finds a job in each state, within scanLimit; undefined for an unknown id", async ({ broker }) => {
      // given a running job, three ready ones, a delayed one and a dead one
      const [running, r1, r2, r3, later, dead] = [0, 1, 2, 3, 4, 5].map((n) => msg("q", { payload: n }));
      await broker.enqueue([{ message: running! }, { message: dead! }]);
      const [held, dying] = ok(await broker.read(["q"], 2, 0));
      await broker.deadLetter(dying!, { name: "Boom", message: "no" });
      await broker.enqueue([{ message: r1! }, { message: r2! }, { message: r3! }, { message: later!, delay: 60_000 }]);
      // then each is found where it is
      expect(await broker.findJob("q", running!.id)).toMatchObject({ state: "running", id: running!.id, ref: held!.ref.entryId, deliveries: 1 });
      expect(await broker.findJob("q", r2!.id)).toMatchObject({ state: "ready", id: r2!.id, message: r2 });
      expect((await broker.findJob("q", later!.id))).toMatchObject({ state: "delayed", id: later!.id, dueAt: expect.any(Number) });
      expect((await broker.findJob("q", dead!.id))).toMatchObject({ state: "dead", id: dead!.id, error: { message: "no" } });
      expect(await broker.findJob("q", "no-such-job")).toBeUndefined();
      expect(await broker.findJob("nowhere", running!.id)).toBeUndefined();
      // and a scan stops at scanLimit entries per list: the fourth entry of the stream is past 3
      expect(await broker.findJob("q", r3!.id, { scanLimit: 3 })).toBeUndefined();
      expect(await broker.findJob("q", r3!.id, { scanLimit: 4 })).toMatchObject({ state: "ready", id: r3!.id });
    });

    it("a bad limit, cursor or state is a ConfigError; an unknown queue is an empty page", async ({ broker }) => {
      await broker.enqueue([{ message: msg("q") }, { message: msg("q") }]);
      for (const limit of [0, -1, 501, 2.5, Number.NaN]) {
        await expect(broker.browse("q", "ready", { limit })).rejects.toBeInstanceOf(ConfigError);
      }
      const { next } = await broker.browse("q", "ready", { limit: 1 });
      expect(next).toEqual(expect.any(String));
      for (const cursor of ["garbage", "r:x:1-0", "x:1-0:2", "d:1:-1"]) {
        await expect(broker.browse("q", "ready", { cursor })).rejects.toBeInstanceOf(ConfigError);
      }
      // a cursor of another state's list is refused too
      await expect(broker.browse("q", "dead", { cursor: next })).rejects.toBeInstanceOf(ConfigError);
      await expect(broker.browse("q", "bogus" as JobState)).rejects.toBeInstanceOf(ConfigError);
      await expect(broker.findJob("q", "x", { scanLimit: 0 })).rejects.toBeInstanceOf(ConfigError);
      // and an unknown queue has empty pages and is not made by looking
      for (const state of ["ready", "running", "delayed", "dead"] as const) {
        expect(await broker.browse("never-sent", state)).toEqual({ items: [] });
      }
      expect(await broker.queues()).not.toContain("never-sent");
    });

    it("statsMany counts each queue as stats does", async ({ broker }) => {
      // given a queue with jobs in every state, one with only ready ones (never read), and an unknown one
      await broker.enqueue([...[1, 2, 3, 4].map(() => ({ message: msg("a") })), { message: msg("a"), delay: 60_000 }]);
      await broker.enqueue([{ message: msg("b") }]);
      const [dying] = ok(await broker.read(["a"], 2, 0));
      await broker.deadLetter(dying!, { name: "Boom", message: "no" });
      // when counted all at once
      const many = await broker.statsMany!(["a", "b", "c"]);
      // then each as counted alone
      expect(many).toEqual([
        { queue: "a", ready: 2, running: 1, delayed: 1, dead: 1 },
        { queue: "b", ready: 1, running: 0, delayed: 0, dead: 0 },
        { queue: "c", ready: 0, running: 0, delayed: 0, dead: 0 },
      ]);
      expect(many).toEqual(await Promise.all(["a", "b", "c"].map((q) => broker.stats(q))));
    });
  });
}
