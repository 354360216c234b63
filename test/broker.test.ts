import { describe, expect, test } from "bun:test";
import { Redis } from "ioredis";
import { RedisBroker } from "../src/broker/redis.ts";
import { MemoryBroker } from "../src/broker/memory.ts";
import { brokerConformance } from "./broker_conformance.ts";
import type { Delivery } from "../src/message.ts";
import { cleanPrefix, REDIS_URL, redisAvailable, testPrefix, until } from "./helpers.ts";

brokerConformance("redis", async (visibilityTimeout) => {
  const prefix = testPrefix("conf");
  const broker = new RedisBroker({ url: REDIS_URL, prefix, visibilityTimeout, patient: true });
  const raw = new Redis(REDIS_URL);
  return {
    broker,
    async addRaw(queue, body) {
      const k = broker.keys(queue);
      await raw.sadd(k.priorities, "0");
      await raw.xadd(k.stream(0), "*", "m", body);
    },
    async cleanup() {
      await broker.close();
      raw.disconnect();
      await cleanPrefix(prefix);
    },
  };
}, redisAvailable);

brokerConformance("memory", async (visibilityTimeout) => {
  const broker = new MemoryBroker({ visibilityTimeout });
  return {
    broker,
    addRaw: async (queue, body) => broker.addRaw(queue, body),
    cleanup: () => broker.close(),
  };
}, async () => true);

describe("the running hash on Redis", () => {
  test("is kept as a table, so marking and clearing a batch scans no list; status and abort read it", async () => {
    if (!(await redisAvailable())) return;
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
