import { pathToFileURL } from "node:url";
import { resolve } from "node:path";
import type { Logger } from "pino";
import { registry } from "./actor.ts";
import { RedisBroker } from "./broker/redis.ts";
import type { Broker } from "./broker/types.ts";
import { settings } from "./config.ts";
import { closeBroker } from "./client.ts";
import { ConfigError } from "./errors.ts";
import { cronForWorker } from "./cron/mod.ts";
import { heartbeatEvery, startHeartbeat, type Heartbeat } from "./heartbeat.ts";
import { createExecutor, type Isolation } from "./executor/mod.ts";
import type { PoolHooks } from "./executor/types.ts";
import { HistoryRecorder, historyEvery } from "./history/recorder.ts";
import type { WorkerMetrics } from "./metrics/mod.ts";
import type { Middleware } from "./middleware.ts";
import { cwd, hostname, loaderFor, onShutdownSignal, pid } from "./runtime/mod.ts";
import { defaultMiddleware, Supervisor, type StopReport } from "./supervisor.ts";
import { within } from "./timers.ts";

export interface WorkerOptions {
  /** App modules that define actors (paths or URLs); imported here and in every thread. */
  modules: string[];
  queues?: string[];
  /** Jobs running at once across the whole worker. @default 16 */
  concurrency?: number;
  /** Threads (or processes) in the pool. @default cores */
  threads?: number;
  /**
   * Jobs read and handed to the threads or processes beyond `concurrency`, so that a host starts the
   * next job the moment one ends instead of waiting for the supervisor. Their time limits count from
   * their start. Other workers cannot take them meanwhile: for long jobs spread over many workers, 0.
   * Not used with isolation "inline". @default concurrency
   */
  prefetch?: number;
  /**
   * Threads (processes) started beyond `threads` and kept idle, so that one stopped for a hung job is
   * replaced at once; each costs a thread's memory (about 17 MB on Bun) or a process's (about 65 MB on
   * Deno). 0 for none: a stopped one is then replaced after its successor has loaded the app modules.
   * @default min(2, threads)
   */
  spares?: number;
  /** "thread" (default on Bun and Node), "process" (default on Deno), "inline" (no isolation). */
  isolation?: Isolation;
  /**
   * Per-thread/process memory cap, MB, enforced by the worker on every runtime: a thread's JS heap
   * plus its external memory (Buffers, ArrayBuffers), or a child process's RSS, is checked every
   * 250 ms; a host over the cap is stopped and replaced, and its running jobs go back to their queue
   * uncharged. Not enforced with isolation "inline". @default no cap
   */
  maxMemoryMb?: number;
  shutdownGrace?: number;
  visibilityTimeout?: number;
  middleware?: Middleware[];
  broker?: Broker;
  logger?: Logger;
  /** Install SIGTERM/SIGINT handlers (first: graceful stop; second: exit at once). @default true */
  handleSignals?: boolean;
  /** Run a cron ticker in this worker (`--no-cron` turns it off; cron jobs still run). @default true */
  cron?: boolean;
  /**
   * How often the worker reports itself live (`dray workers`, `getWorkers()`), ms; its entry lapses
   * after three missed beats. Without it, env DRAY_HEARTBEAT_MS (how `dray worker` takes it). @default 5000
   */
  heartbeatMs?: number;
  /**
   * How often the worker adds what it counted (jobs by outcome, durations and waits, per minute,
   * queue and actor) to the broker's history, which the dashboard charts; 0 turns it off. Without it,
   * env DRAY_HISTORY_MS (how `dray worker` takes it). @default 5000
   */
  historyMs?: number;
  /**
   * Serve `GET /metrics` (Prometheus) and `GET /healthz` on this port (0: any free one); the start
   * fails if it is taken. `dray worker --metrics-port` or env DRAY_METRICS_PORT. @default off
   */
  metricsPort?: number;
  /** The address the metrics port listens on. @default "0.0.0.0" */
  metricsHost?: string;
}

export interface RunningWorker {
  supervisor: Supervisor;
  /** Resolves when the worker has stopped, with what it could not settle (see Supervisor.stop). */
  stopped: Promise<StopReport>;
  stop(): Promise<StopReport>;
}

/** Resolves module specifiers against the working directory into importable URLs. */
export function moduleUrls(modules: string[]): string[] {
  return modules.map((m) => (/^[a-z]+:/.test(m) ? m : pathToFileURL(resolve(cwd(), m)).href));
}

export async function loadModules(modules: string[]): Promise<void> {
  await loaderFor(modules);
  for (const url of moduleUrls(modules)) await import(url);
}

export async function startWorker(options: WorkerOptions): Promise<RunningWorker> {
  const s = settings();
  const logger = options.logger ?? s.logger;
  const heartbeatMs = heartbeatEvery(options.heartbeatMs);
  const historyMs = historyEvery(options.historyMs);
  if (options.modules.length === 0) throw new ConfigError("give at least one app module that defines actors");
  await loadModules(options.modules);
  if (registry.size === 0) throw new ConfigError(`no actors defined in ${options.modules.join(", ")}`);
  // Bound before anything else starts: a taken port ends the start here. Loaded only when asked for.
  const metrics: WorkerMetrics | undefined = options.metricsPort === undefined ? undefined
    : await (await import("./metrics/mod.ts")).serveWorkerMetrics({ port: options.metricsPort, host: options.metricsHost, logger });
  const consumer = `${hostname()}-${pid()}-${crypto.randomUUID().slice(0, 8)}`;
  const broker = options.broker ?? new RedisBroker({
    url: s.redisUrl, prefix: s.prefix, consumer, patient: true, logger,
    ...(options.visibilityTimeout ? { visibilityTimeout: options.visibilityTimeout } : {}),
  });
  // A Broker written before the history existed has none: its workers just do not record one.
  const store = (broker as Partial<Broker>).history;
  const history = historyMs > 0 && store ? new HistoryRecorder({ store, logger, everyMs: historyMs }) : undefined;
  const executor = createExecutor({
    isolation: options.isolation,
    modules: moduleUrls(options.modules),
    registry,
    concurrency: options.concurrency ?? 16,
    threads: options.threads,
    prefetch: options.prefetch,
    spares: options.spares,
    maxMemoryMb: options.maxMemoryMb,
    logger,
    redisUrl: s.redisUrl,
    prefix: s.prefix,
    hooks: bothHooks(metrics?.poolHooks, history?.poolHooks),
  });
  const cron = cronForWorker({ broker, logger, tick: options.cron ?? true });
  const supervisor = new Supervisor({
    broker, executor, registry, logger,
    middleware: [...(options.middleware ?? defaultMiddleware), ...cron.middleware],
    ...(options.queues ? { queues: options.queues } : {}),
    ...(options.shutdownGrace !== undefined ? { shutdownGrace: options.shutdownGrace } : {}),
    // Renew claims three times per visibility timeout, so one slow round trip never lets one lapse.
    renewEvery: Math.max(50, Math.floor(((broker as { visibilityTimeout?: number }).visibilityTimeout ?? 10_000) / 3)),
  });
  metrics?.watch({ supervisor, executor, broker, actors: registry.values() });
  history?.watch(supervisor.events);
  let resolveStopped!: (report: StopReport) => void;
  const stopped = new Promise<StopReport>((r) => (resolveStopped = r));
  let stopping: Promise<StopReport> | undefined;
  let heartbeat: Heartbeat | undefined;
  const stop = () => (stopping ??= (async () => {
    await cron.stop();
    const report = await supervisor.stop();
    // Listed until its jobs settled, and what was counted since the last flush written; each bounded
    // (1 s), side by side, so a stop with Redis away still ends soon.
    await Promise.all([heartbeat?.stop(), history?.stop()]);
    if (!options.broker) await broker.close();
    // Handlers that sent jobs opened the default connection; with Redis away its quit never answers.
    await within(closeBroker().catch(() => undefined), 1_000);
    await metrics?.close();
    resolveStopped(report);
    return report;
  })());
  if (options.handleSignals ?? true) {
    let first = 0;
    onShutdownSignal((signal) => {
      // Ctrl-C reaches every process of the group, so a launcher's forwarded copy can arrive right
      // after the terminal's: only a signal a second or more later means "exit now".
      if (first > 0 && Date.now() - first < 1_000) return;
      if (first > 0) {
        // What was running is recovered by another worker once its claim lapses.
        logger.warn({ signal }, "second signal: exiting now");
        import("./runtime/mod.ts").then((r) => r.exit(1));
        return;
      }
      first = Date.now();
      logger.info({ signal }, "shutting down: no new jobs; running jobs get the grace period");
      void stop();
    });
  }
  // A start can wait on Redis forever (a patient broker), and a signal may end it first: then there
  // is nothing more to start. A start that fails (a NOPERM, a refused certificate) takes down what
  // was started with it, so the process does not linger half-started.
  const started = await Promise.race([
    // A Redis Cluster's pipelines fail while no node answers, where one Redis's commands wait.
    (broker.connected?.() ?? Promise.resolve()).then(() => supervisor.start()).then(() => true),
    stopped.then(() => false),
  ]).catch(async (error: unknown) => {
    await within(stop().catch(() => undefined), 5_000);
    await metrics?.close();
    throw error;
  });
  if (!started) return { supervisor, stopped, stop };
  cron.start();
  history?.start();
  // A signal during start: an entry made now would never be removed, only lapse.
  if (!stopping) {
    heartbeat = startHeartbeat({ control: broker.control, supervisor, logger, id: consumer, everyMs: heartbeatMs,
      isolation: options.isolation, concurrency: options.concurrency ?? 16, threads: options.threads });
  }
  return { supervisor, stopped, stop };
}

/** The pool's hooks of the metrics and of the history, each called. */
function bothHooks(a: PoolHooks | undefined, b: PoolHooks | undefined): PoolHooks | undefined {
  if (!a || !b) return a ?? b;
  return {
    timeLimitKill: (job) => {
      a.timeLimitKill?.(job);
      b.timeLimitKill?.(job);
    },
    hostReplaced: () => {
      a.hostReplaced?.();
      b.hostReplaced?.();
    },
  };
}
