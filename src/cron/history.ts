import type { RedisClient } from "../broker/connection.ts";
import { cronKeys, cronsKey } from "../broker/keys.ts";
import type { SerializedError } from "../errors.ts";
import type { CronJob } from "./cron.ts";

export type CronRunStatus = "RUNNING" | "COMPLETED" | "FAILED" | "SKIPPED";

/** One run of a cron job, as recorded in Redis (TaskIQ's `cron_job_runs` row). */
export interface CronRun {
  cron: string;
  /** The tick this run is for (ms since epoch). */
  tick: number;
  jobId: string;
  /** 1 on the first run of a tick, 2 on its first retry, ... */
  attempt: number;
  status: CronRunStatus;
  startedAt: number;
  completedAt?: number;
  duration?: number;
  /** What the handler returned (COMPLETED); large results are cut to a preview. */
  result?: unknown;
  /** Why it failed (FAILED) or was skipped (SKIPPED). */
  error?: Pick<SerializedError, "name" | "message">;
}

/** What a ticker publishes about each cron, so the CLI can list crons without the app modules. */
export interface PublishedCron {
  name: string;
  actor: string;
  queue: string;
  expression: string;
  timezone?: string;
}

export function describeCron(job: CronJob): PublishedCron {
  return {
    name: job.name,
    actor: job.actor.name,
    queue: job.actor.options.queue,
    expression: job.expression,
    ...(job.options.timezone ? { timezone: job.options.timezone } : {}),
  };
}

export async function publishCrons(redis: RedisClient, prefix: string, jobs: Iterable<CronJob>): Promise<void> {
  const fields = [...jobs].flatMap((j) => [j.name, JSON.stringify(describeCron(j))]);
  if (fields.length > 0) await redis.hset(cronsKey(prefix), ...fields);
}

export async function publishedCrons(redis: RedisClient, prefix: string): Promise<PublishedCron[]> {
  const all = await redis.hgetall(cronsKey(prefix));
  return Object.values(all).map((raw) => JSON.parse(raw) as PublishedCron).sort((a, b) => a.name.localeCompare(b.name));
}

/** The newest runs of a cron, newest first. */
export async function cronHistory(redis: RedisClient, prefix: string, cron: { name: string; queue: string },
  limit = 100): Promise<CronRun[]> {
  const k = cronKeys(prefix, cron.queue, cron.name);
  const ids = await redis.zrevrange(k.order, 0, Math.max(0, limit - 1));
  if (ids.length === 0) return [];
  const raws = await redis.hmget(k.runs, ...ids);
  return raws.flatMap((raw) => (raw ? [JSON.parse(raw) as CronRun] : []));
}

/** The last tick handled, or undefined when no ticker has seen this cron yet. */
export async function lastTick(redis: RedisClient, prefix: string, cron: { name: string; queue: string }): Promise<number | undefined> {
  const raw = await redis.get(cronKeys(prefix, cron.queue, cron.name).last);
  return raw === null ? undefined : Number(raw);
}
