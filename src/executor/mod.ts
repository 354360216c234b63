import type { Logger } from "pino";
import type { Actor } from "../actor.ts";
import { ConfigError } from "../errors.ts";
import { cpuCount, runtime, type RuntimeName } from "../runtime/mod.ts";
import { InlineExecutor } from "./inline.ts";
import { ProcessExecutor } from "./processes.ts";
import { ThreadExecutor } from "./threads.ts";
import type { Executor, PoolHooks } from "./types.ts";

export type Isolation = "thread" | "process" | "inline";

export interface ExecutorChoice {
  /** @default "thread" on Bun and Node, "process" on Deno (which cannot stop a thread stuck on the CPU) */
  isolation?: Isolation | undefined;
  /** App module URLs each thread or process imports to build its own registry. */
  modules: string[];
  registry: ReadonlyMap<string, Actor>;
  concurrency: number;
  /** Threads or processes. @default cpuCount() */
  threads?: number | undefined;
  maxMemoryMb?: number | undefined;
  /** Jobs handed to threads or processes ahead of a free slot (see PoolOptions.prefetch). @default concurrency */
  prefetch?: number | undefined;
  /** Threads or processes kept ready to replace one stopped for a hung job (see PoolOptions.spares). */
  spares?: number | undefined;
  logger: Logger;
  redisUrl: string;
  prefix: string;
  /** After a job's signal aborts, how long it has to settle before its thread or process is stopped, ms. @default 100 */
  graceMs?: number | undefined;
  /** Told of time-limit kills and replaced threads or processes (the worker's metrics); not called inline. */
  hooks?: PoolHooks | undefined;
}

export function defaultIsolation(rt: RuntimeName = runtime()): Isolation {
  return rt === "deno" ? "process" : "thread";
}

export function createExecutor(choice: ExecutorChoice): Executor {
  const isolation = choice.isolation ?? defaultIsolation();
  if (choice.prefetch !== undefined && !(Number.isInteger(choice.prefetch) && choice.prefetch >= 0)) {
    throw new ConfigError(`prefetch must be a whole number >= 0, not ${String(choice.prefetch)}`);
  }
  if (choice.spares !== undefined && !(Number.isInteger(choice.spares) && choice.spares >= 0)) {
    throw new ConfigError(`spares must be a whole number >= 0, not ${String(choice.spares)}`);
  }
  const pool = {
    modules: choice.modules, concurrency: choice.concurrency, threads: choice.threads ?? cpuCount(),
    maxMemoryMb: choice.maxMemoryMb, logger: choice.logger, redisUrl: choice.redisUrl, prefix: choice.prefix,
    graceMs: choice.graceMs, prefetch: choice.prefetch, spares: choice.spares, hooks: choice.hooks,
  };
  switch (isolation) {
    case "inline":
      if (choice.maxMemoryMb) choice.logger.warn("--max-memory is not enforced with --isolation inline");
      if (choice.prefetch) choice.logger.warn("--prefetch has no effect with --isolation inline: handlers run in the worker itself");
      return new InlineExecutor({ registry: choice.registry, concurrency: choice.concurrency, logger: choice.logger, redisUrl: choice.redisUrl });
    case "thread":
      if (runtime() === "deno") {
        choice.logger.warn("Deno cannot stop a thread stuck on the CPU: time limits only hold for cooperative handlers; prefer --isolation process");
      }
      return new ThreadExecutor(pool);
    case "process":
      return new ProcessExecutor(pool);
    default:
      throw new ConfigError(`isolation "${isolation}" is not available`);
  }
}
