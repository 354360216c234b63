import type { Logger } from "pino";
import { env } from "./runtime/mod.ts";
import { createLogger } from "./logger.ts";

/** Process-wide settings shared by senders and workers. Set with {@link configure}. */
export interface Settings {
  /** @default process env REDIS_URL, else "redis://127.0.0.1:6379" (rediss:// and user:password work) */
  redisUrl: string;
  /** Key namespace: apps with different prefixes on one Redis never see each other's keys. @default env DRAY_PREFIX, else "dray" */
  prefix: string;
  logger: Logger;
}

let current: Settings | undefined;

export function settings(): Settings {
  current ??= {
    redisUrl: env("REDIS_URL") || "redis://127.0.0.1:6379",
    prefix: env("DRAY_PREFIX") || "dray",
    logger: createLogger(),
  };
  return current;
}

const listeners = new Set<() => void>();

/** Change settings in code; the default broker is rebuilt on next use. */
export function configure(patch: Partial<Settings>): Settings {
  current = { ...settings(), ...patch };
  for (const listener of listeners) listener();
  return current;
}

/** Called when settings change (the default broker drops its connection). */
export function onConfigure(listener: () => void): void {
  listeners.add(listener);
}
