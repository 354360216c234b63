import { parseArgs } from "node:util";
import { RedisBroker } from "../broker/redis.ts";
import { settings } from "../config.ts";
import { ConfigError, UsageError } from "../errors.ts";
import { pauseQueue, queueOverview, resumeQueue } from "../operations.ts";
import { onShutdownSignal } from "../runtime/mod.ts";
import { printTable } from "./table.ts";
import { helpRequested } from "./usage.ts";
import { positiveInt } from "./worker.ts";

export const usage = `usage: dray queues [--watch] [--interval MS]
       dray queues pause <queue>
       dray queues resume <queue>

One line per queue: jobs ready, running, delayed (retries, scheduled) and dead, and whether it is
paused.

pause    workers stop reading the queue within a second; running jobs finish, and sends, delays
         and retries still land (they run after resume). The pause holds across worker restarts,
         and for a queue no worker has declared yet
resume   workers read the queue again within a second

options:
  --watch          print again every interval until Ctrl-C
  --interval MS    with --watch, time between prints (default 1000)
  -h, --help       this help

environment: REDIS_URL, DRAY_PREFIX (see 'dray --help')`;

export async function run(args: string[]): Promise<void> {
  if (helpRequested(args, usage)) return;
  const { values, positionals } = parseArgs({
    args, allowPositionals: true, options: { watch: { type: "boolean" }, interval: { type: "string" } },
  });
  const [action, queue, ...extra] = positionals;
  if (action !== undefined && action !== "pause" && action !== "resume") throw new UsageError(`unknown action "${action}" (pause, resume)`);
  if (action && queue === undefined) throw new UsageError(`${action}: give the queue, as in 'dray queues ${action} <queue>'`);
  if (action && (extra.length > 0 || values.watch || values.interval)) throw new UsageError(`${action} takes one queue and no options`);
  const interval = values.interval === undefined ? 1000 : positiveInt("--interval", values.interval);
  const s = settings();
  const broker = new RedisBroker({ url: s.redisUrl, prefix: s.prefix });
  try {
    if (action) await steer(broker, action, queue!);
    else await overview(broker, values.watch ?? false, interval);
  } finally {
    await broker.close();
  }
}

async function steer(broker: RedisBroker, action: "pause" | "resume", queue: string): Promise<void> {
  try {
    if (action === "pause") {
      const { declared } = await pauseQueue(queue, broker);
      console.log(declared
        ? `paused "${queue}": workers stop reading it within a second; running jobs finish`
        : `paused "${queue}"; no worker has declared it yet: the pause holds for those that will`);
    } else {
      const { wasPaused } = await resumeQueue(queue, broker);
      console.log(wasPaused ? `resumed "${queue}": workers read it again within a second` : `"${queue}" was not paused: nothing to resume`);
    }
  } catch (error) {
    // A bad queue name is a mistake on the command line: told as one, with the hint to --help.
    if (error instanceof ConfigError) throw new UsageError(error.message, { cause: error });
    throw error;
  }
}

async function overview(broker: RedisBroker, watch: boolean, interval: number): Promise<void> {
  let stop = false;
  const off = onShutdownSignal(() => (stop = true));
  try {
    do {
      const rows = await queueOverview(broker);
      const lines = [["queue", "ready", "running", "delayed", "dead", "paused"], ...rows.map((r) =>
        [r.queue, r.ready, r.running, r.delayed, r.dead, r.paused ? "yes" : "no"].map(String))];
      if (watch) console.log(`\n${new Date().toISOString()}`);
      printTable(lines);
      if (watch) await new Promise((r) => setTimeout(r, interval));
    } while (watch && !stop);
  } finally {
    off();
  }
}
