import type { Broker } from "../broker/types.ts";
import { MemoryBroker } from "../broker/memory.ts";
import { RedisBroker } from "../broker/redis.ts";
import { MemoryCronStore } from "./memory_store.ts";
import { RedisCronStore } from "./redis_store.ts";
import type { CronStore } from "./store.ts";

/**
 * Cron state lives beside a broker's data but is not the broker's business: cron depends on the
 * broker, never the other way round. Cached so that a broker always gets the same store: the memory
 * store holds the last ticks and locks itself, and a second one would tick everything again.
 */
const stores = new WeakMap<Broker, CronStore>();

/** The cron store on a broker's connection; undefined for a broker that keeps no cron state. */
export function cronStoreFor(broker: RedisBroker | MemoryBroker): CronStore;
export function cronStoreFor(broker: Broker): CronStore | undefined;
export function cronStoreFor(broker: Broker): CronStore | undefined {
  let store = stores.get(broker);
  if (store) return store;
  if (broker instanceof RedisBroker) store = new RedisCronStore(broker.redis, broker.prefix);
  // The broker's enqueue, whose dedup keeps a tick from being sent twice.
  else if (broker instanceof MemoryBroker) store = new MemoryCronStore((requests) => broker.enqueue(requests));
  else return undefined;
  stores.set(broker, store);
  return store;
}
