import { describe, expect } from "bun:test";
import { Redis } from "ioredis";
import { RedisBroker } from "../src/broker/redis.ts";
import { MemoryBroker } from "../src/broker/memory.ts";
import { brokerConformance } from "./broker_conformance.ts";
import type { Delivery } from "../src/message.ts";
import { cleanPrefix, REDIS_URL, testPrefix, until } from "./helpers.ts";
import { hasRedis, redisTest } from "./redis_test.ts";

brokerConformance("redis", async (visibilityTimeout) => {
  const prefix = testPrefix("conf");
  const broker = new RedisBroker({ url: REDIS_URL, prefix, visibilityTimeout, patient: true });
  const raw = new Redis(REDIS_URL);
  const peers: RedisBroker[] = [];
  return {
    broker,
    async addRaw(queue, body) {
      const k = broker.keys(queue);
      await raw.sadd(k.priorities, "0");
      await raw.xadd(k.stream(0), "*", "m", body);
    },
    async peer() {
      const peer = new RedisBroker({ url: REDIS_URL, prefix, visibilityTimeout, patient: true });
      peers.push(peer);
      return peer;
    },
    async cleanup() {
      for (const peer of peers) await peer.close();
      await broker.close();
      raw.disconnect();
      await cleanPrefix(prefix);
    },
  };
}, hasRedis);

brokerConformance("memory", async (visibilityTimeout) => {
  const broker = new MemoryBroker({ visibilityTimeout });
  return {
    broker,
    addRaw: async (queue, body) => broker.addRaw(queue, body),
    peer: async () => broker,
    cleanup: () => broker.close(),
  };
}, true);

describe("a newer sender's fields on Redis", () => {
  redisTest("survive a retry in the delayed body and in the stream entry it goes back to", async () => {
    // given an entry XADDed by hand with a field this version does not know
    const prefix = testPrefix("fut");
    const broker = new RedisBroker({ url: REDIS_URL, prefix, patient: true });
    const raw = new Redis(REDIS_URL);
    try {
      const k = broker.keys("q");
      const future = { flag: true, nested: { n: 1 } };
      await raw.sadd(k.priorities, "0");
      const sent = { id: "j-f", actor: "a", queue: "q", payload: 1, priority: 0, sentAt: Date.now(), future };
      await raw.xadd(k.stream(0), "*", "m", JSON.stringify(sent), "r", "0");
      const [d] = (await broker.read(["q"], 10, 0)) as Delivery[];
      // when the worker retries it after a delay
      await broker.retry(d!, 200);
      // then the delayed body still has the field
      const [member] = await raw.zrange(k.delayed, 0, -1);
      expect(JSON.parse(member!.slice(member!.indexOf("|", member!.indexOf("|") + 1) + 1)).future).toEqual(future);
      // and so does the stream entry it is moved back to when due
      await until(async () => (await broker.read(["q"], 10, 50)).length > 0 || undefined, "the retry back", 3_000);
      const entries = await raw.xrange(k.stream(0), "-", "+");
      expect(entries.length).toBe(1);
      expect(JSON.parse(entries[0]![1][1]!).future).toEqual(future);
    } finally {
      await broker.close();
      raw.disconnect();
      await cleanPrefix(prefix);
    }
  });
});

describe("the running hash on Redis", () => {
  redisTest("is kept as a table, so marking and clearing a batch scans no list; status and abort read it", async () => {
    // given three tracked jobs, read in one batch
    const prefix = testPrefix("pin");
    const broker = new RedisBroker({ url: REDIS_URL, prefix, patient: true });
    const raw = new Redis(REDIS_URL);
    try {
      const msgs = [1, 2, 3].map((i) => ({
        id: `j-${i}`, actor: "a", queue: "q", payload: i, priority: 0, sentAt: Date.now(), tracked: true,
      }));
      await broker.enqueue(msgs.map((message) => ({ message })));
      const read = (await broker.read(["q"], 10, 200)).filter((d) => !("malformed" in d)) as Delivery[];
      expect(read.length).toBe(3);
      const running = broker.keys("q").running;
      await until(async () => (await raw.hlen(running)) === 4, "the running mark", 2_000);
      // then Redis stores the hash as a table (three short fields would make a listpack)
      expect(await raw.object("ENCODING", running)).toBe("hashtable");
      expect(await broker.jobs.get("q", "j-1")).toMatchObject({ status: "running" });
      expect(await broker.jobs.abort("q", "j-2")).toMatchObject({ aborted: true, status: "running" });
      // when all three are acked, only the pin is left, and the key stays a table
      await broker.ack(read.map((delivery) => ({ delivery, keepMs: 1_000 })));
      expect(await raw.hkeys(running)).toEqual([""]);
      expect(await raw.object("ENCODING", running)).toBe("hashtable");
      expect(await broker.jobs.get("q", "j-1")).toBeUndefined();
    } finally {
      await broker.close();
      raw.disconnect();
      await cleanPrefix(prefix);
    }
  });
});
