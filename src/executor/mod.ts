import type { Logger } from "pino";
import type { Actor } from "../actor.ts";
import { ConfigError } from "../errors.ts";
import { InlineExecutor } from "./inline.ts";
import type { Executor } from "./types.ts";

export type Isolation = "thread" | "process" | "inline";

export interface ExecutorChoice {
  isolation?: Isolation | undefined;
  /** App module URLs each thread or process imports to build its own registry. */
  modules: string[];
  registry: ReadonlyMap<string, Actor>;
  concurrency: number;
  threads?: number | undefined;
  maxMemoryMb?: number | undefined;
  logger: Logger;
  redisUrl: string;
  prefix: string;
}

export function createExecutor(choice: ExecutorChoice): Executor {
  const isolation = choice.isolation ?? "inline";
  switch (isolation) {
    case "inline":
      return new InlineExecutor({ registry: choice.registry, concurrency: choice.concurrency, logger: choice.logger, redisUrl: choice.redisUrl });
    default:
      throw new ConfigError(`isolation "${isolation}" is not available`);
  }
}
