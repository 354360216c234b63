import { parseArgs } from "node:util";
import { RedisBroker } from "../broker/redis.ts";
import { settings } from "../config.ts";
import { onShutdownSignal } from "../runtime/mod.ts";
import { helpRequested } from "./usage.ts";
import { positiveInt } from "./worker.ts";

export const usage = `usage: dray queues [--watch] [--interval MS]

One line per queue: jobs ready, running, delayed (retries, scheduled) and dead.

options:
  --watch          print again every interval until Ctrl-C
  --interval MS    with --watch, time between prints (default 1000)
  -h, --help       this help

environment: REDIS_URL, DRAY_PREFIX (see 'dray --help')`;

export async function run(args: string[]): Promise<void> {
  if (helpRequested(args, usage)) return;
  const { values } = parseArgs({ args, options: { watch: { type: "boolean" }, interval: { type: "string" } } });
  const interval = values.interval === undefined ? 1000 : positiveInt("--interval", values.interval);
  const s = settings();
  const broker = new RedisBroker({ url: s.redisUrl, prefix: s.prefix });
  let stop = false;
  const off = onShutdownSignal(() => (stop = true));
  try {
    do {
      const rows = await Promise.all((await broker.queues()).map((q) => broker.stats(q)));
      const lines = [["queue", "ready", "running", "delayed", "dead"], ...rows.map((r) =>
        [r.queue, r.ready, r.running, r.delayed, r.dead].map(String))];
      const width = lines[0]!.map((_, i) => Math.max(...lines.map((l) => l[i]!.length)));
      if (values.watch) console.log(`\n${new Date().toISOString()}`);
      for (const l of lines) console.log(l.map((c, i) => c.padEnd(width[i]!)).join("  "));
      if (values.watch) await new Promise((r) => setTimeout(r, interval));
    } while (values.watch && !stop);
  } finally {
    off();
    await broker.close();
  }
}
