import { Redis } from "ioredis";
import { RedisBroker } from "../src/broker/redis.ts";
import { MemoryBroker } from "../src/broker/memory.ts";
import { brokerConformance } from "./broker_conformance.ts";
import { cleanPrefix, REDIS_URL, redisAvailable, testPrefix } from "./helpers.ts";

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
