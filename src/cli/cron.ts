import { parseArgs } from "node:util";
import type { RedisClient } from "../broker/connection.ts";
import { RedisBroker } from "../broker/redis.ts";
import { settings } from "../config.ts";
import { crons, parse } from "../cron/cron.ts";
import { cronHistory, describeCron, lastTick, publishedCrons, type CronRun, type PublishedCron } from "../cron/history.ts";
import { ConfigError, UsageError } from "../errors.ts";
import { loadModules } from "../worker.ts";
import { printTable } from "./table.ts";
import { helpRequested } from "./usage.ts";
import { positiveInt } from "./worker.ts";

export const usage = `usage: dray cron list [module...] [--json]
       dray cron history <name> [module...] [--limit N] [--json]

list     each cron's schedule, actor, queue, next run, last run and its status
history  the runs of one cron, newest first: RUNNING, COMPLETED, FAILED, SKIPPED

Without modules, the crons are those that workers and schedulers published to Redis.

options:
  --limit N   history: at most this many runs (default 50)
  --json      one JSON object per line instead of a table
  -h, --help  this help

environment: REDIS_URL, DRAY_PREFIX (see 'dray --help')`;

export async function run(args: string[]): Promise<void> {
  if (helpRequested(args, usage)) return;
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { limit: { type: "string" }, json: { type: "boolean" } },
  });
  const [action = "list", ...rest] = positionals;
  if (action !== "list" && action !== "history") throw new UsageError(`unknown action "${action}" (list, history)`);
  const name = action === "history" ? rest.shift() : undefined;
  if (action === "history" && !name) throw new UsageError("history: give the name of a cron");
  const s = settings();
  const broker = new RedisBroker({ url: s.redisUrl, prefix: s.prefix });
  try {
    const known = await knownCrons(broker.redis, s.prefix, rest);
    if (action === "list") return await list(broker.redis, s.prefix, known, values.json ?? false);
    const cron = known.find((c) => c.name === name);
    if (!cron) throw new ConfigError(`cron history: no cron named "${name}" (known: ${known.map((c) => c.name).join(", ") || "none"})`);
    const runs = await cronHistory(broker.redis, s.prefix, cron, values.limit ? positiveInt("--limit", values.limit) : 50);
    if (values.json) for (const r of runs) console.log(JSON.stringify(r));
    else printTable([["tick", "status", "attempt", "started", "duration", "result / error"], ...runs.map(historyRow)]);
  } finally {
    await broker.close();
  }
}

async function knownCrons(redis: RedisClient, prefix: string, modules: string[]): Promise<PublishedCron[]> {
  if (modules.length === 0) return await publishedCrons(redis, prefix);
  await loadModules(modules);
  return [...crons.values()].map(describeCron).sort((a, b) => a.name.localeCompare(b.name));
}

async function list(redis: RedisClient, prefix: string, known: PublishedCron[], json: boolean): Promise<void> {
  const now = Date.now();
  const rows = await Promise.all(known.map(async (c) => {
    const next = parse(`cron ${JSON.stringify(c.expression)}`, c.expression, c.timezone).nextRun(new Date(now));
    const [last] = await cronHistory(redis, prefix, c, 1);
    return { ...c, next: next?.toISOString() ?? null, lastTick: await lastTick(redis, prefix, c) ?? null,
      lastRun: last ?? null };
  }));
  if (json) {
    for (const r of rows) console.log(JSON.stringify(r));
    return;
  }
  printTable([["cron", "schedule", "actor", "queue", "next run", "last run", "status"], ...rows.map((r) => [
    r.name,
    r.timezone ? `${r.expression} (${r.timezone})` : r.expression,
    r.actor,
    r.queue,
    r.next ?? "never",
    r.lastRun ? iso(r.lastRun.tick) : "-",
    r.lastRun?.status ?? "-",
  ])]);
}

function historyRow(r: CronRun): string[] {
  const detail = r.error ? `${r.error.name}: ${r.error.message}` : r.result === undefined ? "" : JSON.stringify(r.result);
  return [iso(r.tick), r.status, String(r.attempt), iso(r.startedAt), r.duration === undefined ? "-" : `${r.duration} ms`,
    detail.length > 80 ? `${detail.slice(0, 77)}...` : detail];
}

const iso = (ms: number): string => new Date(ms).toISOString();
