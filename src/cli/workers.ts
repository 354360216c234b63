import { parseArgs } from "node:util";
import { RedisBroker } from "../broker/redis.ts";
import { settings } from "../config.ts";
import { getWorkers, type WorkerInfo } from "../operations.ts";
import { printTable } from "./table.ts";
import { helpRequested } from "./usage.ts";

export const usage = `usage: dray workers [--json]

The workers alive now, oldest first: id, host and pid, runtime, queues, concurrency/threads, jobs
running now, jobs processed and failed since it started (one per run: a retried job counts once per
attempt), when it started and when it last reported.

Each worker reports every DRAY_HEARTBEAT_MS (default 5000). One that stops cleanly leaves the list at
once; one that dies without a word (SIGKILL, host gone) leaves it after three missed reports.

options:
  --json      print the list as a JSON array, times in ms since epoch
  -h, --help  this help

environment: REDIS_URL, DRAY_PREFIX (see 'dray --help')`;

export async function run(args: string[]): Promise<void> {
  if (helpRequested(args, usage)) return;
  const { values } = parseArgs({ args, options: { json: { type: "boolean" } } });
  const s = settings();
  const broker = new RedisBroker({ url: s.redisUrl, prefix: s.prefix });
  try {
    const workers = await getWorkers(broker);
    if (values.json) console.log(JSON.stringify(workers, null, 2));
    // A wrong DRAY_PREFIX is the usual reason for an empty list: name the one looked at.
    else if (workers.length === 0) console.log(`no live workers (prefix "${s.prefix}")`);
    else printWorkers(workers, Date.now());
  } finally {
    await broker.close();
  }
}

function printWorkers(workers: WorkerInfo[], now: number): void {
  printTable([
    ["id", "host", "pid", "runtime", "queues", "concurrency/threads", "running", "processed", "failed", "started", "last beat"],
    ...workers.map((w) => [
      w.id, w.host, String(w.pid), w.runtime, w.queues.join(","),
      `${w.concurrency}/${w.isolation === "inline" ? "inline" : w.threads}`,
      String(w.running), String(w.processed), String(w.failed), `${age(now - w.startedAt)} ago`, `${age(now - w.beatAt)} ago`,
    ]),
  ]);
}

/** A duration for a person: tenths of a second while short (beats can be that close), then coarser. */
export function age(ms: number): string {
  // Another host's clock may run ahead of this one.
  const t = Math.max(0, ms);
  if (t < 10_000) return `${(t / 1000).toFixed(1)}s`;
  const s = Math.floor(t / 1000);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${pad(s % 60)}s`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h ${pad(Math.floor(s / 60) % 60)}m`;
  return `${Math.floor(s / 86_400)}d ${Math.floor(s / 3600) % 24}h`;
}

const pad = (n: number): string => String(n).padStart(2, "0");
