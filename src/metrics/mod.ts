/**
 * `--metrics-port`: what a worker and a scheduler serve on it. The port is bound first, before the
 * process reads a job or ticks, so that a taken port fails the start. Loaded only when asked for.
 */
import type { Logger } from "pino";
import type { Actor } from "../actor.ts";
import type { Broker } from "../broker/types.ts";
import type { Executor, PoolHooks } from "../executor/types.ts";
import type { Supervisor } from "../supervisor.ts";
import { healthReport, PoolHealth, RedisHealth, type HealthReport } from "./health.ts";
import { cachedOverview, queueGauges } from "./queues.ts";
import { JobMetrics, newRegistry } from "./registry.ts";
import { serveMetrics, type MetricsServer } from "./server.ts";

export interface MetricsOptions {
  /** 0 picks a free port. */
  port: number;
  /** @default "0.0.0.0" */
  host?: string | undefined;
  logger: Logger;
}

export interface WorkerMetrics extends MetricsServer {
  /** For createExecutor: how the pool tells of time-limit kills and replaced hosts. */
  readonly poolHooks: PoolHooks;
  /** Starts counting the worker's jobs and answering for its pool and Redis; until then /healthz says "starting". */
  watch(worker: { supervisor: Supervisor; executor: Executor; broker: Broker; actors: Iterable<Actor> }): void;
}

export async function serveWorkerMetrics(options: MetricsOptions): Promise<WorkerMetrics> {
  const registry = newRegistry();
  const jobs = new JobMetrics(registry);
  let health: (() => Promise<HealthReport>) | undefined;
  let unwatch: (() => void) | undefined;
  const server = await serveMetrics({
    ...options,
    metrics: async () => ({ contentType: registry.contentType, text: await registry.metrics() }),
    health: () => health?.() ?? Promise.resolve(starting()),
  });
  return {
    port: server.port,
    poolHooks: jobs.poolHooks,
    watch({ supervisor, executor, broker, actors }) {
      const hosts = executor.hosts ? () => executor.hosts!() : undefined;
      const redis = new RedisHealth(() => broker.queues());
      jobs.seed(actors);
      const offJobs = jobs.watch(supervisor.events);
      const offErrors = supervisor.events.on("broker:error", (e) => redis.failed(e.error));
      unwatch = () => [offJobs, offErrors].forEach((off) => off());
      jobs.watchPool({ running: () => supervisor.running, ...(hosts ? { hosts } : {}) });
      queueGauges(registry, cachedOverview(broker, { onAnswer: () => redis.answered() }));
      const pool = new PoolHealth(hosts);
      health = () => healthReport(redis, pool);
    },
    async close() {
      unwatch?.();
      await server.close();
    },
  };
}

/** A scheduler's: process metrics, and whether Redis answers. The ticker has no hook to count ticks by. */
export function serveSchedulerMetrics(options: MetricsOptions & { broker: Broker }): Promise<MetricsServer> {
  const registry = newRegistry();
  const redis = new RedisHealth(() => options.broker.queues());
  return serveMetrics({
    ...options,
    metrics: async () => ({ contentType: registry.contentType, text: await registry.metrics() }),
    health: () => healthReport(redis),
  });
}

function starting(): HealthReport {
  return { status: "unavailable", reason: "the worker is starting", redis: { ok: false, error: "not asked yet" }, lastReadAgeMs: 0 };
}
