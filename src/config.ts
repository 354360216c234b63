import type { Logger } from "pino";
import type { Message } from "./message.ts";
import { env } from "./runtime/mod.ts";
import { createLogger } from "./logger.ts";

/**
 * The send side of a middleware (`Middleware` in middleware.ts extends it): what senders run. Here
 * rather than there so that settings, which every sender reads, need nothing of the worker's side.
 */
export interface SenderMiddleware {
  readonly name: string;
  /** Before a message is sent; may set `message.meta` (JSON). Throw to refuse it: nothing is sent. */
  beforeEnqueue?(message: Message): void | Promise<void>;
  /** After the broker took it (`duplicate`: a job with that id was already known, nothing sent). */
  afterEnqueue?(message: Message, duplicate: boolean): void | Promise<void>;
}

/** Process-wide settings shared by senders and workers. Set with {@link configure}. */
export interface Settings {
  /** @default process env REDIS_URL, else "redis://127.0.0.1:6379" (rediss:// and user:password work) */
  redisUrl: string;
  /** Key namespace: apps with different prefixes on one Redis never see each other's keys. @default env DRAY_PREFIX, else "dray" */
  prefix: string;
  logger: Logger;
  /** Senders' middleware: `beforeEnqueue` / `afterEnqueue` run on every send from this process. @default [] */
  middleware: SenderMiddleware[];
  /**
   * The largest return value a worker keeps (bytes of JSON); a bigger one is refused and the job
   * recorded as failed with ResultTooLarge. @default env DRAY_MAX_RESULT_BYTES, else 1_048_576 (1 MiB)
   */
  maxResultBytes: number;
}

let current: Settings | undefined;

export function settings(): Settings {
  current ??= {
    redisUrl: env("REDIS_URL") || "redis://127.0.0.1:6379",
    prefix: env("DRAY_PREFIX") || "dray",
    logger: createLogger(),
    middleware: [],
    maxResultBytes: Number(env("DRAY_MAX_RESULT_BYTES")) || 1_048_576,
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
