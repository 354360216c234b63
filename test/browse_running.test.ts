/**
 * The running page across priority levels, on Redis (the RUNNING script, browse_scripts.ts) and in
 * memory alike: oldest entry first, on equal ids the higher level first, paged by cursor with none
 * listed twice and none missed. Then what only Redis has: ids past a Lua number's precision, and an
 * entry deleted while pending.
 */
import { describe, expect, test } from "bun:test";
import { Redis } from "ioredis";
import { MemoryBroker } from "../src/broker/memory.ts";
import { compareRunning } from "../src/broker/pages.ts";
import { RedisBroker } from "../src/broker/redis.ts";
import type { Broker, BrowsedJob } from "../src/broker/types.ts";
import type { Delivery, MalformedDelivery, Message } from "../src/message.ts";
import { cleanPrefix, REDIS_URL, testPrefix } from "./helpers.ts";
import { hasRedis, redisTest } from "./redis_test.ts";

let seq = 0;
function msg(over: Partial<Message> = {}): Message {
  return { id: `br${seq++}`, actor: "a", queue: "q", payload: seq, priority: 0, sentAt: Date.now(), ...over };
}

const ok = (ds: Array<Delivery | MalformedDelivery>): Delivery[] => ds.filter((d): d is Delivery => !("malformed" in d));
const ids = (items: BrowsedJob[]) => items.map((i) => i.id);
const priorityOf = (item: BrowsedJob) => ("raw" in item.message ? 0 : item.message.priority);

async function allPages(broker: Broker, limit: number, between?: (page: number) => Promise<void>): Promise<BrowsedJob[]> {
  const items: BrowsedJob[] = [];
  let cursor: string | undefined;
  let pages = 0;
  do {
    const page = await broker.browse("q", "running", { limit, cursor });
    expect(page.items.length).toBeLessThanOrEqual(limit);
    items.push(...page.items);
    cursor = page.next;
    await between?.(++pages);
  } while (cursor && pages < 100);
  return items;
}

const brokers: Array<[string, boolean, () => { broker: Broker; cleanup: () => Promise<void> }]> = [
  ["redis", hasRedis, () => {
    const prefix = testPrefix("run");
    const broker = new RedisBroker({ url: REDIS_URL, prefix });
    return { broker, cleanup: async () => (await broker.close(), await cleanPrefix(prefix)) };
  }],
  ["memory", true, () => {
    const broker = new MemoryBroker();
    return { broker, cleanup: () => broker.close() };
  }],
];

for (const [name, enabled, make] of brokers) {
  describe(`the running page across levels: ${name}`, () => {
    test.skipIf(!enabled)("is in entry order, higher level first on equal ids, however it is paged", async () => {
      const { broker, cleanup } = make();
      try {
        // given twelve jobs a worker holds, on three levels, sent interleaved in one call
        const sends = [];
        for (let n = 0; n < 4; n++) for (const priority of [5, 0, -3]) sends.push({ message: msg({ priority }) });
        await broker.enqueue(sends);
        expect(ok(await broker.read(["q"], 20, 0)).length).toBe(12);
        // when listed in one page
        const whole = (await broker.browse("q", "running", { limit: 500 })).items;
        // then all twelve, in compareRunning's order
        expect(whole.length).toBe(12);
        const key = (item: BrowsedJob) => ({ id: item.ref, priority: priorityOf(item) });
        const expected = [...whole].sort((a, b) => compareRunning(key(a), key(b)));
        expect(ids(whole)).toEqual(ids(expected));
        // and paged one, two or five at a time, the same
        for (const limit of [1, 2, 5]) expect(ids(await allPages(broker, limit))).toEqual(ids(whole));
      } finally {
        await cleanup();
      }
    });

    test.skipIf(!enabled)("lists what changed under the pages neither twice nor missing, but for what settled", async () => {
      const { broker, cleanup } = make();
      try {
        // given six running jobs on two levels
        await broker.enqueue([5, 0, 5, 0, 5, 0].map((priority) => ({ message: msg({ priority }) })));
        const held = ok(await broker.read(["q"], 10, 0));
        const whole = ids((await broker.browse("q", "running", { limit: 500 })).items);
        // when, after the first page of two, a later job settles and a new one starts
        const late = held.find((d) => d.message.id === whole[4])!;
        let started = "";
        const items = await allPages(broker, 2, async (page) => {
          if (page !== 1) return;
          await broker.ack([{ delivery: late, keepMs: 0 }]);
          const fresh = msg({ priority: 5 });
          started = fresh.id;
          await broker.enqueue([{ message: fresh }]);
          expect(ok(await broker.read(["q"], 1, 0)).map((d) => d.message.id)).toEqual([started]);
        });
        // then each job still running is listed once, the settled one not, the new one last
        expect(ids(items)).toEqual([...whole.filter((id) => id !== whole[4]), started]);
      } finally {
        await cleanup();
      }
    });
  });
}

describe("the running page on Redis only", () => {
  redisTest("orders entry ids past 2^53 exactly, and lists an entry deleted while pending", async () => {
    // given three entries on two levels whose sequence numbers a double cannot tell apart (as
    // numbers, the first two are equal, and the tie would put level 1's first), read by a worker
    const prefix = testPrefix("run");
    const broker = new RedisBroker({ url: REDIS_URL, prefix });
    const raw = new Redis(REDIS_URL);
    try {
      const k = broker.keys("q");
      await raw.sadd(k.priorities, "0", "1");
      const entries: Array<[number, string]> = [[0, "1-9007199254740992"], [1, "1-9007199254740993"], [0, "1-9007199254740994"]];
      for (const [n, [level, id]] of entries.entries()) await raw.xadd(k.stream(level), id, "m", `raw${n}`);
      expect((await broker.read(["q"], 10, 0)).length).toBe(3);
      // when one is deleted while it is pending (not by dray) and the rest paged one at a time
      await raw.xdel(k.stream(0), entries[2]![1]);
      const items = await allPages(broker, 1);
      // then all three, in id order; the deleted one with no body
      expect(items.map((i) => i.ref)).toEqual(entries.map(([, id]) => id));
      expect(items.map((i) => i.message)).toEqual([{ raw: "raw0" }, { raw: "raw1" }, { raw: "" }]);
      expect(items.map((i) => i.deliveries)).toEqual([1, 1, 1]);
    } finally {
      await broker.close();
      raw.disconnect();
      await cleanPrefix(prefix);
    }
  });
});
