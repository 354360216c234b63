import { parseArgs } from "node:util";
import { RedisBroker } from "../broker/redis.ts";
import { settings } from "../config.ts";
import { onShutdownSignal } from "../runtime/mod.ts";

/** `dray queues [--watch] [--interval ms]`: one line per queue, refreshed with --watch. */
export async function run(args: string[]): Promise<void> {
  const { values } = parseArgs({ args, options: { watch: { type: "boolean" }, interval: { type: "string" } } });
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
      if (values.watch) await new Promise((r) => setTimeout(r, Number(values.interval ?? 1000)));
    } while (values.watch && !stop);
  } finally {
    off();
    await broker.close();
  }
}
