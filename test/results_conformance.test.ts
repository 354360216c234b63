/** The job-record conformance suite (results_conformance.ts) on Redis and on the MemoryBroker. */
import { MemoryBroker } from "../src/broker/memory.ts";
import { RedisBroker } from "../src/broker/redis.ts";
import { cleanPrefix, REDIS_URL, testPrefix } from "./helpers.ts";
import { hasRedis } from "./redis_test.ts";
import { resultsConformance } from "./results_conformance.ts";

resultsConformance("redis", async () => {
  const prefix = testPrefix("rconf");
  const broker = new RedisBroker({ url: REDIS_URL, prefix, patient: true });
  return { broker, cleanup: async () => { await broker.close(); await cleanPrefix(prefix); } };
}, hasRedis);

resultsConformance("memory", async () => {
  const broker = new MemoryBroker();
  return { broker, cleanup: () => broker.close() };
}, true);
