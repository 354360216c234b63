import { parseArgs } from "node:util";
import { RedisBroker } from "../broker/redis.ts";
import { settings } from "../config.ts";
import { crons } from "../cron/cron.ts";
import { cronStoreFor } from "../cron/stores.ts";
import { Ticker } from "../cron/ticker.ts";
import { ConfigError, UsageError } from "../errors.ts";
import { exit, onShutdownSignal } from "../runtime/mod.ts";
import { loadModules } from "../worker.ts";
import { useCliLogger } from "./log_format.ts";
import { helpRequested } from "./usage.ts";

export const usage = `usage: dray scheduler <module...>

Only the cron ticker: enqueues each tick of the crons these modules define, and runs no jobs.
Workers tick too (unless --no-cron); a scheduler is for deployments that want ticking apart from
the workers. Any number may run: each tick is still enqueued once. SIGTERM or Ctrl-C stops it.

options:
  -h, --help  this help

environment: REDIS_URL, DRAY_PREFIX, DRAY_LOG_LEVEL, DRAY_LOG_FORMAT (see 'dray --help')`;

export async function run(args: string[]): Promise<void> {
  if (helpRequested(args, usage)) return;
  const { positionals } = parseArgs({ args, allowPositionals: true, options: {} });
  if (positionals.length === 0) throw new UsageError("give at least one app module that defines crons");
  useCliLogger();
  await loadModules(positionals);
  if (crons.size === 0) throw new ConfigError(`no crons defined in ${positionals.join(", ")}`);
  const s = settings();
  const broker = new RedisBroker({ url: s.redisUrl, prefix: s.prefix, patient: true, logger: s.logger });
  const ticker = new Ticker({ store: cronStoreFor(broker), jobs: crons, logger: s.logger });
  const stopped = new Promise<void>((resolve) => {
    let first = 0;
    onShutdownSignal((signal) => {
      // A launcher forwards the terminal's Ctrl-C, so a copy may follow right behind the first.
      if (first > 0 && Date.now() - first < 1_000) return;
      if (first > 0) exit(1);
      first = Date.now();
      s.logger.info({ signal }, "scheduler stopping");
      void ticker.stop().then(resolve);
    });
  });
  ticker.start();
  s.logger.info({ crons: [...crons.keys()] }, "scheduler started");
  await stopped;
  await broker.close();
  // App modules may hold handles (pools, timers) that would keep the process up.
  exit(0);
}
