import { RedisBroker } from "./broker/redis.ts";
import type { Broker } from "./broker/types.ts";
import { onConfigure, settings } from "./config.ts";

let explicit: Broker | undefined;
let fallback: RedisBroker | undefined;

onConfigure(() => {
  void fallback?.close();
  fallback = undefined;
});

/** The broker senders use: one set with {@link setBroker}, else a Redis broker from settings. */
export function useBroker(): Broker {
  if (explicit) return explicit;
  const s = settings();
  fallback ??= new RedisBroker({ url: s.redisUrl, prefix: s.prefix, logger: s.logger });
  return fallback;
}

/** Routes every send in this process to `broker` (e.g. a MemoryBroker in unit tests). */
export function setBroker(broker: Broker | undefined): void {
  explicit = broker;
}

/** Closes the default connection so a short script can exit. */
export async function closeBroker(): Promise<void> {
  await fallback?.close();
  fallback = undefined;
}
