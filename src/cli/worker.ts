import { parseArgs } from "node:util";
import { settings } from "../config.ts";
import { UsageError } from "../errors.ts";
import { startWorker } from "../worker.ts";
import { cpuCount, env, exit } from "../runtime/mod.ts";
import type { Isolation } from "../executor/mod.ts";
import { useCliLogger } from "./log_format.ts";
import { argsWithout, helpRequested } from "./usage.ts";

export const usage = `usage: dray worker <module...> [options]

Runs the actors these modules define: reads their queues, runs each job in a pool of threads (or
processes) under its time limit, retries and dead-letters. The first SIGTERM or Ctrl-C stops it
gracefully, a second at once. Exits 1 if jobs were left unsettled (they stay in Redis for others;
with --processes, if any process did not stop cleanly).

options:
  --processes N|auto       run N worker processes under this one (auto: one per core; default 1):
                           each a whole worker (--concurrency, --threads, --max-memory are per
                           process, logs say "process": i), restarted if it exits unasked (after
                           1 s, doubling to 30 s); crons tick here, once; signals are passed on
  --queues a,b             read only these queues (default: every queue of the modules' actors)
  --concurrency N          jobs running at once across the worker (default 16)
  --threads N              threads or processes in the pool (default: one per core)
  --isolation MODE         thread, process or inline (default: thread; process on Deno)
  --max-memory MB          per thread or process; over it, it is replaced and its jobs go back
                           to their queue (default: no cap)
  --prefetch N             jobs handed to threads ahead of free slots (default: the concurrency)
  --spares N               threads (processes) kept ready to replace one stopped at a time limit
                           (default: 2, or 1 with --threads 1; 0: none)
  --shutdown-grace MS      on stop, how long running jobs get to finish (default 30000)
  --visibility-timeout MS  a job held this long by a silent worker is taken by another (default 10000)
  --no-cron                no cron ticker in this worker (its cron jobs still run)
  --metrics-port N         serve GET /metrics (Prometheus) and GET /healthz on this port
                           (default: off; env DRAY_METRICS_PORT); with --processes, process i
                           (0-based) serves on N+i
  --metrics-host ADDR      the address it listens on (default 0.0.0.0)
  -h, --help               this help

environment: REDIS_URL, DRAY_PREFIX, DRAY_LOG_LEVEL, DRAY_LOG_FORMAT, DRAY_REDIS_CA,
  DRAY_METRICS_PORT, DRAY_HEARTBEAT_MS, DRAY_HISTORY_MS (see 'dray --help')`;

export async function run(args: string[]): Promise<void> {
  if (helpRequested(args, usage)) return;
  const { values, positionals, tokens } = parseArgs({
    args,
    allowPositionals: true,
    tokens: true,
    options: {
      processes: { type: "string" },
      queues: { type: "string" },
      concurrency: { type: "string" },
      threads: { type: "string" },
      prefetch: { type: "string" },
      spares: { type: "string" },
      isolation: { type: "string" },
      "max-memory": { type: "string" },
      "shutdown-grace": { type: "string" },
      "visibility-timeout": { type: "string" },
      "no-cron": { type: "boolean" },
      "metrics-port": { type: "string" },
      "metrics-host": { type: "string" },
    },
  });
  const isolation = values.isolation as Isolation | undefined;
  if (isolation && !["thread", "process", "inline"].includes(isolation)) {
    throw new UsageError(`--isolation must be thread, process or inline, not "${isolation}"`);
  }
  if (positionals.length === 0) throw new UsageError("give at least one app module that defines actors");
  const metrics = metricsFlags(values["metrics-port"], values["metrics-host"]);
  const processes = processCount(values.processes);
  if (metrics.metricsPort !== undefined && metrics.metricsPort + processes - 1 > 65_535) {
    throw new UsageError(`--metrics-port ${metrics.metricsPort} leaves no room for ${processes} processes (port + i must be at most 65535)`);
  }
  useCliLogger();
  if (processes > 1) {
    return (await import("./fleet.ts")).runFleet({
      processes, modules: positionals, args: argsWithout(args, tokens, ["processes", "metrics-port"]),
      metricsPort: metrics.metricsPort, cron: !values["no-cron"], logger: settings().logger,
    });
  }
  const worker = await startWorker({
    modules: positionals,
    ...(values.queues ? { queues: values.queues.split(",").map((q) => q.trim()).filter(Boolean) } : {}),
    ...(values.concurrency ? { concurrency: positiveInt("--concurrency", values.concurrency) } : {}),
    ...(values.threads ? { threads: positiveInt("--threads", values.threads) } : {}),
    ...(values.prefetch !== undefined ? { prefetch: nonNegativeInt("--prefetch", values.prefetch) } : {}),
    ...(values.spares !== undefined ? { spares: nonNegativeInt("--spares", values.spares) } : {}),
    ...(isolation ? { isolation } : {}),
    ...(values["max-memory"] ? { maxMemoryMb: positiveInt("--max-memory", values["max-memory"]) } : {}),
    ...(values["shutdown-grace"] ? { shutdownGrace: positiveInt("--shutdown-grace", values["shutdown-grace"]) } : {}),
    ...(values["visibility-timeout"] ? { visibilityTimeout: positiveInt("--visibility-timeout", values["visibility-timeout"]) } : {}),
    ...(values["no-cron"] ? { cron: false } : {}),
    ...metrics,
  });
  const report = await worker.stopped;
  // App modules may hold handles (pools, timers) that would keep the process up after a clean stop.
  // Jobs left unsettled (Redis away) are not lost, but the stop was not clean: say so to the supervisor.
  exit(report.unsettled > 0 ? 1 : 0);
}

/** `--metrics-port` (else env DRAY_METRICS_PORT) and `--metrics-host`, checked, as worker options. */
export function metricsFlags(port: string | undefined, host: string | undefined): { metricsPort?: number; metricsHost?: string } {
  const fromEnv = port === undefined ? env("DRAY_METRICS_PORT") : undefined;
  const raw = port ?? (fromEnv?.trim() ? fromEnv : undefined);
  if (raw === undefined) {
    if (host !== undefined) throw new UsageError("--metrics-host needs --metrics-port");
    return {};
  }
  const flag = port === undefined ? "DRAY_METRICS_PORT" : "--metrics-port";
  const n = Number(raw);
  if (raw.trim() === "" || !Number.isInteger(n) || n < 1 || n > 65_535) {
    throw new UsageError(`${flag} must be a port, 1-65535, not "${raw}"`);
  }
  if (host !== undefined && host.trim() === "") throw new UsageError("--metrics-host must not be empty");
  return { metricsPort: n, ...(host !== undefined ? { metricsHost: host } : {}) };
}

/** `--processes`: a positive whole number, or `auto` for one per core. */
function processCount(raw: string | undefined): number {
  if (raw === undefined) return 1;
  if (raw === "auto") return cpuCount();
  const n = Number(raw);
  if (raw.trim() === "" || !Number.isInteger(n) || n < 1) throw new UsageError(`--processes must be a positive integer or auto, not "${raw}"`);
  return n;
}

export function nonNegativeInt(flag: string, raw: string): number {
  const n = Number(raw);
  if (raw.trim() === "" || !Number.isInteger(n) || n < 0) throw new UsageError(`${flag} must be a whole number >= 0, not "${raw}"`);
  return n;
}

export function positiveInt(flag: string, raw: string): number {
  const n = Number(raw);
  if (!Number.isInteger(n) || n <= 0) throw new UsageError(`${flag} must be a positive integer, not "${raw}"`);
  return n;
}
