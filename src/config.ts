import type { Logger } from "pino";
import type { Middleware } from "./middleware.ts";
import { env } from "./runtime/mod.ts";
import { createLogger } from "./logger.ts";

/** Process-wide settings shared by senders and workers. Set with {@link configure}. */
export interface Settings {
  /** @default process env REDIS_URL, else "redis://127.0.0.1:6379" (rediss:// and user:password work) */
  redisUrl: string;
  /** Key namespace: apps with different prefixes on one Redis never see each other's keys. @default env DRAY_PREFIX, else "dray" */
  prefix: string;
  logger: Logger;
  /** Senders' middleware: `beforeEnqueue` / `afterEnqueue` run on every send from this process. @default [] */
  middleware: Middleware[];
  /**
   * The largest return value a worker keeps (bytes of JSON); a bigger one is refused and the job
   * recorded as failed with ResultTooLarge. @default env DRAY_MAX_RESULT_BYTES, else 1_048_576 (1 MiB)
   */
  maxResultBytes: number;
}

let current: Settings | undefined;

export function settings(): Settings {
  if (current) return current;
  const defaults: Omit<Settings, "logger"> = {
    redisUrl: env("REDIS_URL") || "redis://127.0.0.1:6379",
    prefix: env("DRAY_PREFIX") || "dray",
    middleware: [],
    maxResultBytes: Number(env("DRAY_MAX_RESULT_BYTES")) || 1_048_576,
  };
  // The default logger is made when first asked for: a pool thread that configures itself but whose
  // handlers never log then never loads pino.
  let logger: Logger | undefined;
  return (current = Object.defineProperty(defaults, "logger", {
    enumerable: true, configurable: true, get: () => (logger ??= createLogger()),
  }) as Settings);
}

const listeners = new Set<() => void>();

/** Change settings in code; the default broker is rebuilt on next use. */
export function configure(patch: Partial<Settings>): Settings {
  // Copied as property descriptors, not values: a spread would call the default logger's getter.
  current = Object.defineProperties({}, {
    ...Object.getOwnPropertyDescriptors(settings()), ...Object.getOwnPropertyDescriptors(patch),
  }) as Settings;
  for (const listener of listeners) listener();
  return current;
}

/** Called when settings change (the default broker drops its connection). */
export function onConfigure(listener: () => void): void {
  listeners.add(listener);
}
