import { pino } from "pino";
import { registry as globalRegistry, type Actor } from "./actor.ts";
import type { Broker } from "./broker/types.ts";
import { MemoryBroker } from "./broker/memory.ts";
import { InlineExecutor } from "./executor/inline.ts";
import { Supervisor } from "./supervisor.ts";

export interface DrainOptions {
  queues?: string[];
  registry?: ReadonlyMap<string, Actor>;
  /** Run delayed messages and retries at once instead of waiting for them. @default true */
  skipDelays?: boolean;
  /** Give up after this long, ms. @default 10_000 */
  timeout?: number;
  concurrency?: number;
}

/**
 * Runs every queued job (and what those jobs send) to completion in this process, then returns the
 * supervisor's tally. For users' unit tests with a MemoryBroker, like Dramatiq's `broker.join()`.
 */
export async function drain(broker: Broker, options: DrainOptions = {}): Promise<{ completed: number; dead: number; retried: number }> {
  const registry = options.registry ?? globalRegistry;
  const logger = pino({ level: "silent" });
  const executor = new InlineExecutor({ registry, concurrency: options.concurrency ?? 8, logger });
  const supervisor = new Supervisor({ broker, executor, registry, logger, blockMs: 20, shutdownGrace: 0,
    ...(options.queues ? { queues: options.queues } : {}) });
  const tally = { completed: 0, dead: 0, retried: 0 };
  supervisor.events.on("job:complete", () => tally.completed++);
  supervisor.events.on("job:dead", () => tally.dead++);
  supervisor.events.on("job:retry", () => tally.retried++);
  await supervisor.start();
  const deadline = Date.now() + (options.timeout ?? 10_000);
  try {
    for (;;) {
      if (options.skipDelays ?? true) (broker as MemoryBroker).promoteDelayed?.();
      const stats = await Promise.all(supervisor.queues.map((q) => broker.stats(q)));
      const left = stats.reduce((n, s) => n + s.ready + s.running + s.delayed, 0);
      if (left === 0 && supervisor.running === 0) break;
      if (Date.now() > deadline) throw new Error(`drain: ${left} jobs still pending after ${options.timeout ?? 10_000} ms`);
      await new Promise((r) => setTimeout(r, 5));
    }
  } finally {
    await supervisor.stop();
  }
  return tally;
}
