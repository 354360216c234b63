import { parseArgs } from "node:util";
import { settings } from "../config.ts";
import { crons } from "../cron/cron.ts";
import { ConfigError, UsageError } from "../errors.ts";
import { exit } from "../runtime/mod.ts";
import { loadModules } from "../worker.ts";
import { metricsFlags } from "./worker.ts";
import { useCliLogger } from "./log_format.ts";
import { onStopSignals } from "./signals.ts";
import { standaloneTicker } from "./ticker.ts";
import { helpRequested } from "./usage.ts";

export const usage = `usage: dray scheduler <module...>

Only the cron ticker: enqueues each tick of the crons these modules define, and runs no jobs.
Workers tick too (unless --no-cron); a scheduler is for deployments that want ticking apart from
the workers. Any number may run: each tick is still enqueued once. SIGTERM or Ctrl-C stops it.

options:
  --metrics-port N     serve GET /metrics (Prometheus: process metrics) and GET /healthz (is Redis
                       reachable) on this port (default: off; env DRAY_METRICS_PORT)
  --metrics-host ADDR  the address it listens on (default 0.0.0.0)
  -h, --help           this help

environment: REDIS_URL, DRAY_PREFIX, DRAY_LOG_LEVEL, DRAY_LOG_FORMAT (see 'dray --help'),
  DRAY_METRICS_PORT`;

export async function run(args: string[]): Promise<void> {
  if (helpRequested(args, usage)) return;
  const { values, positionals } = parseArgs({
    args, allowPositionals: true, options: { "metrics-port": { type: "string" }, "metrics-host": { type: "string" } },
  });
  if (positionals.length === 0) throw new UsageError("give at least one app module that defines crons");
  const { metricsPort, metricsHost } = metricsFlags(values["metrics-port"], values["metrics-host"]);
  useCliLogger();
  await loadModules(positionals);
  if (crons.size === 0) throw new ConfigError(`no crons defined in ${positionals.join(", ")}`);
  const s = settings();
  const ticker = standaloneTicker(s.logger);
  // Before the first tick: a taken port ends the start here.
  const metrics = metricsPort === undefined ? undefined : await (await import("../metrics/mod.ts"))
    .serveSchedulerMetrics({ port: metricsPort, host: metricsHost, logger: s.logger, broker: ticker.broker })
    .catch(async (error: unknown) => {
      await ticker.stop();
      throw error;
    });
  const stopped = new Promise<void>((resolve) => {
    onStopSignals((signal) => {
      s.logger.info({ signal }, "scheduler stopping");
      void ticker.stop().then(resolve);
    }, () => exit(1));
  });
  ticker.start();
  s.logger.info({ crons: [...crons.keys()] }, "scheduler started");
  await stopped;
  await metrics?.close();
  // App modules may hold handles (pools, timers) that would keep the process up.
  exit(0);
}
