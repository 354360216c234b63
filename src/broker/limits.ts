import { limitKey } from "./keys.ts";
import type { Scripted } from "./connection.ts";
import type { LimitRule, RateLimits } from "./types.ts";

/** Rate-limit slots in Redis: the ACQUIRE script takes one (scripts.ts), a ZREM gives a concurrent slot back. */
export function redisLimits(redis: Scripted, prefix: string): RateLimits {
  return {
    acquire: (key: string, rule: LimitRule, token: string) => redis.drayAcquire(limitKey(prefix, key),
      rule.kind, rule.limit, rule.kind === "concurrent" ? rule.leaseMs : rule.windowMs, token),
    release: async (key: string, token: string) => void (await redis.zrem(limitKey(prefix, key), token)),
  };
}
