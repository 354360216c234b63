import type { ChainableCommander } from "ioredis";
import { bySlotGroup, type RedisClient } from "../broker/connection.ts";
import { cronKeys, queueKeys } from "../broker/keys.ts";
import { encodeMessage } from "../message.ts";
import type { CronJob } from "./cron.ts";
import { cronHistory, publishCrons, publishedCrons } from "./history.ts";
import { CRON_RENEW, CRON_RUN, CRON_TICK } from "./scripts.ts";
import type { CronLock, CronRenewal, CronRunStep, CronStore, CronWrite } from "./store.ts";

interface CronScripts {
  drayCronTick(...args: (string | number)[]): Promise<number>;
  drayCronRun(...args: (string | number)[]): Promise<number>;
  drayCronRenew(...args: (string | number)[]): Promise<number>;
}
type Scripted = RedisClient & CronScripts;
type Pipe = ChainableCommander & CronScripts;

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
  constructor(redis: RedisClient, prefix: string) {
    this.#redis = redis as Scripted;
    this.#prefix = prefix;
    if (typeof this.#redis.drayCronTick !== "function") this.#redis.defineCommand("drayCronTick", { lua: CRON_TICK });
    if (typeof this.#redis.drayCronRun !== "function") this.#redis.defineCommand("drayCronRun", { numberOfKeys: 3, lua: CRON_RUN });
    if (typeof this.#redis.drayCronRenew !== "function") this.#redis.defineCommand("drayCronRenew", { numberOfKeys: 1, lua: CRON_RENEW });
  }

  #keys(job: CronJob) {
    return cronKeys(this.#prefix, job.actor.options.queue, job.name);
  }

  /**
   * The Redis clock and the last tick of each cron: one round trip (one per node on a Cluster, TIME
   * then going with the first; the nodes' clocks may differ a little, which changes only who claims a
   * tick first, as above).
   */
  async read(jobs: CronJob[]): Promise<{ now: number; last: Array<number | undefined> }> {
    const items: Array<CronJob | undefined> = [undefined, ...jobs];
    const replies = await bySlotGroup(this.#redis, items, (job) => job && this.#keys(job).last,
      (pipe, job) => (job ? pipe.get(this.#keys(job).last) : pipe.time()));
    const values = replies.map(([[error, value] = [null, null]]) => {
      if (error) throw error;
      return value;
    });
    const [sec, usec] = values[0] as [string, string];
    const last = values.slice(1) as Array<string | null>;
    return {
      now: Number(sec) * 1000 + Math.floor(Number(usec) / 1000),
      last: last.map((raw) => (raw === null ? undefined : Number(raw))),
    };
  }

  /** Claims and enqueues ticks: each write touches its cron's queue slot; pipelined per node. */
  async write(writes: CronWrite[]): Promise<number[]> {
    const replies = await bySlotGroup(this.#redis, writes, (w) => this.#keys(w.job).last, (p, w) => {
      const pipe = p as unknown as Pipe;
      if (w.kind === "begin") return void pipe.set(this.#keys(w.job).last, w.now, "NX");
      const { options } = w.job.actor;
      const q = queueKeys(this.#prefix, options.queue);
      pipe.drayCronTick(3 + w.messages.length, this.#keys(w.job).last, q.stream(options.priority), q.priorities,
        ...w.messages.map((m) => q.dedup(m.id)),
        w.newLast, options.priority, ...w.messages.flatMap((m) => [m.cron!.tick, encodeMessage(m)]));
    });
    return replies.map(([[error, reply] = [null, null]], i) => {
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
