import type { Redis } from "ioredis";
import { cronKeys, queueKeys } from "../broker/keys.ts";
import { encodeMessage } from "../message.ts";
import type { CronJob } from "./cron.ts";
import { cronHistory, publishCrons, publishedCrons } from "./history.ts";
import { CRON_RENEW, CRON_RUN, CRON_TICK } from "./scripts.ts";
import type { CronLock, CronRenewal, CronRunStep, CronStore, CronWrite } from "./store.ts";

type Scripted = Redis & {
  drayCronTick(...args: (string | number)[]): Promise<number>;
  drayCronRun(...args: (string | number)[]): Promise<number>;
  drayCronRenew(...args: (string | number)[]): Promise<number>;
};
type Pipe = Scripted & { exec(): Promise<[Error | null, unknown][] | null> };

/**
 * Cron state in Redis (keys in src/broker/keys.ts, scripts in scripts.ts), shared by every ticker
 * in every worker and scheduler. Time is the Redis clock, not this process's: a tick is claimed and
 * enqueued by one atomic script, so each tick is enqueued once whoever gets there first, and clock
 * skew between machines only changes who wins, never how many.
 */
export class RedisCronStore implements CronStore {
  readonly #redis: Scripted;
  readonly #prefix: string;

  /** `redis` should wait out outages (a worker's broker connection does). */
  constructor(redis: Redis, prefix: string) {
    this.#redis = redis as Scripted;
    this.#prefix = prefix;
    if (typeof this.#redis.drayCronTick !== "function") this.#redis.defineCommand("drayCronTick", { lua: CRON_TICK });
    if (typeof this.#redis.drayCronRun !== "function") this.#redis.defineCommand("drayCronRun", { numberOfKeys: 3, lua: CRON_RUN });
    if (typeof this.#redis.drayCronRenew !== "function") this.#redis.defineCommand("drayCronRenew", { numberOfKeys: 1, lua: CRON_RENEW });
  }

  #keys(job: CronJob) {
    return cronKeys(this.#prefix, job.actor.options.queue, job.name);
  }

  async read(jobs: CronJob[]): Promise<{ now: number; last: Array<number | undefined> }> {
    const pipe = this.#redis.pipeline().time();
    for (const job of jobs) pipe.get(this.#keys(job).last);
    const replies = (await pipe.exec()) ?? [];
    for (const [error] of replies) if (error) throw error;
    const [sec, usec] = replies[0]![1] as [string, string];
    const last = jobs.map((_, i) => replies[i + 1]![1] as string | null);
    return {
      now: Number(sec) * 1000 + Math.floor(Number(usec) / 1000),
      last: last.map((raw) => (raw === null ? undefined : Number(raw))),
    };
  }

  async write(writes: CronWrite[]): Promise<number[]> {
    const pipe = this.#redis.pipeline() as unknown as Pipe;
    for (const w of writes) {
      if (w.kind === "begin") {
        pipe.set(this.#keys(w.job).last, w.now, "NX");
        continue;
      }
      const { options } = w.job.actor;
      const q = queueKeys(this.#prefix, options.queue);
      pipe.drayCronTick(3 + w.messages.length, this.#keys(w.job).last, q.stream(options.priority), q.priorities,
        ...w.messages.map((m) => q.dedup(m.id)),
        w.newLast, options.priority, ...w.messages.flatMap((m) => [m.cron!.tick, encodeMessage(m)]));
    }
    const results = (await pipe.exec()) ?? [];
    return results.map(([error, reply], i) => {
      if (error) throw error;
      return writes[i]!.kind === "begin" ? (reply === "OK" ? 1 : 0) : Number(reply);
    });
  }

  run(s: CronRunStep): Promise<number> {
    const k = cronKeys(this.#prefix, s.queue, s.cron);
    return this.#redis.drayCronRun(k.lock, k.runs, k.order, s.mode, s.jobId, s.lockTtl, s.runId, JSON.stringify(s.run),
      s.skipped ? JSON.stringify(s.skipped) : "", s.score, s.cap);
  }

  async renew(l: CronLock): Promise<CronRenewal> {
    const reply = await this.#redis.drayCronRenew(cronKeys(this.#prefix, l.queue, l.cron).lock, l.jobId, l.lockTtl);
    return reply === 1 ? "renewed" : reply === 0 ? "expired" : "taken";
  }

  publish(jobs: Iterable<CronJob>): Promise<void> {
    return publishCrons(this.#redis, this.#prefix, jobs);
  }

  published() {
    return publishedCrons(this.#redis, this.#prefix);
  }

  history(cron: { name: string; queue: string }, limit?: number) {
    return cronHistory(this.#redis, this.#prefix, cron, limit);
  }
}
