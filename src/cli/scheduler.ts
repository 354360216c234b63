import { parseArgs } from "node:util";
import { RedisBroker } from "../broker/redis.ts";
import { settings } from "../config.ts";
import { crons } from "../cron/cron.ts";
import { Ticker } from "../cron/ticker.ts";
import { ConfigError } from "../errors.ts";
import { exit, onShutdownSignal } from "../runtime/mod.ts";
import { loadModules } from "../worker.ts";

/**
 * `dray scheduler <module...>`: only the cron ticker, no jobs run here. Workers tick too (unless
 * `--no-cron`); a scheduler is for deployments that want ticking apart from the workers. Any number
 * may run: each tick is still enqueued once.
 */
export async function run(args: string[]): Promise<void> {
  const { positionals } = parseArgs({ args, allowPositionals: true, options: {} });
  if (positionals.length === 0) throw new ConfigError("give at least one app module that defines crons");
  await loadModules(positionals);
  if (crons.size === 0) throw new ConfigError(`no crons defined in ${positionals.join(", ")}`);
  const s = settings();
  const broker = new RedisBroker({ url: s.redisUrl, prefix: s.prefix, patient: true, logger: s.logger });
  const ticker = new Ticker({ store: broker.crons, jobs: crons, logger: s.logger });
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
