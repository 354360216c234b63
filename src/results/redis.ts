import type { Logger } from "pino";
import { isCluster } from "../broker/cluster.ts";
import { bySlotGroup, type RedisClient } from "../broker/connection.ts";
import { abortChannel, queueKeys, queuesKey } from "../broker/keys.ts";
import { ABORT } from "../broker/scripts.ts";
import { decodeRecord, liveRecord } from "./record.ts";
import type { AbortResult, JobRecord, JobStatus, JobStore, WaitResult } from "./types.ts";
import { Waiters } from "./waiters.ts";

export interface RedisJobStoreOptions {
  prefix: string;
  /** The broker's command connection. */
  redis: RedisClient;
  /**
   * Opens the connection that subscribes (a subscribed connection can run no other command). On a
   * Redis Cluster, a Cluster client with ioredis' `shardedSubscribers`: a queue's done channel is
   * sharded (SSUBSCRIBE on the master of its slot, where the scripts SPUBLISH), the abort channel
   * plain (ioredis subscribes on one node, and Redis passes every PUBLISH to all nodes).
   */
  subscriber: () => RedisClient;
  logger?: Logger | undefined;
}

type WithAbort = RedisClient & { drayAbort(...args: string[]): Promise<[string, string]> };

/**
 * Job records in Redis. Waiting subscribes to the queue's `done` channel (a worker publishes the ids
 * of each ack batch there) and reads a record only when it may have changed: no polling, one read
 * per change however many wait. Aborts travel on the prefix's `abort` channel to every worker.
 */
export class RedisJobStore implements JobStore {
  readonly #o: RedisJobStoreOptions;
  readonly #redis: WithAbort;
  #sub: RedisClient | undefined;
  /** Channel -> its subscription, so a queue is subscribed once however many wait on it. */
  readonly #subscribed = new Map<string, Promise<unknown>>();
  readonly #abortWatchers = new Set<{ queues: Set<string>; onAbort: (id: string) => void }>();
  readonly #waiters: Waiters;
  readonly #joining = new Map<string, number>();

  constructor(options: RedisJobStoreOptions) {
    this.#o = options;
    this.#redis = options.redis as WithAbort;
    this.#redis.defineCommand("drayAbort", { numberOfKeys: 3, lua: ABORT });
    this.#waiters = new Waiters((queue, id) => this.get(queue, id), (queue) => {
      const channel = this.#keys(queue).done;
      if (!this.#joining.has(channel)) this.#unsubscribe(channel);
    });
  }

  #keys(queue: string) {
    return queueKeys(this.#o.prefix, queue);
  }

  async get(queue: string, id: string): Promise<JobRecord | undefined> {
    const k = this.#keys(queue);
    const [[e1, raw], [e2, since]] = (await this.#redis.pipeline().get(k.job(id)).hget(k.running, id).exec()) as
      [[Error | null, string | null], [Error | null, string | null]];
    if (e1 ?? e2) throw e1 ?? e2;
    const record = decodeRecord(raw);
    return record && liveRecord(record, since ? Number(since) : undefined);
  }

  async wait(queue: string, id: string, timeoutMs?: number): Promise<WaitResult> {
    const channel = this.#keys(queue).done;
    // Counted while subscribing so that the last waiter leaving meanwhile does not unsubscribe.
    this.#joining.set(channel, (this.#joining.get(channel) ?? 0) + 1);
    let waiting: Promise<WaitResult>;
    try {
      await this.#subscribe(channel);
      waiting = this.#waiters.wait(queue, id, timeoutMs); // registered once this returns
    } finally {
      const n = (this.#joining.get(channel) ?? 1) - 1;
      if (n > 0) this.#joining.set(channel, n);
      else this.#joining.delete(channel);
    }
    return await waiting;
  }

  async abort(queue: string, id: string): Promise<AbortResult | undefined> {
    const k = this.#keys(queue);
    const [what, before] = await this.#redis.drayAbort(k.job(id), k.running, k.aborted, id,
      abortChannel(this.#o.prefix), k.done, queue, isCluster(this.#redis) ? "1" : "0");
    const status = before as JobStatus;
    switch (what) {
      case "unknown":
        return undefined;
      case "finished":
        return { aborted: false, status, message: `job "${id}" already ${status}: nothing to abort` };
      case "running":
        return { aborted: true, status, message: `job "${id}" is running: its worker was told to stop it` };
      default:
        return { aborted: true, status, message: `job "${id}" was ${status}: it will not run` };
    }
  }

  async locate(id: string): Promise<string | undefined> {
    const queues = (await this.#redis.smembers(queuesKey(this.#o.prefix))).sort();
    if (queues.length === 0) return undefined;
    const key = (q: string) => this.#keys(q).job(id);
    const found = await bySlotGroup(this.#redis, queues, key, (pipe, q) => pipe.exists(key(q)));
    const index = found.findIndex(([[error, n] = [null, 0]]) => !error && n === 1);
    return index >= 0 ? queues[index] : undefined;
  }

  async watchAborts(queues: string[], onAbort: (id: string) => void): Promise<() => Promise<void>> {
    const watcher = { queues: new Set(queues), onAbort };
    this.#abortWatchers.add(watcher);
    await this.#subscribe(abortChannel(this.#o.prefix));
    await this.#loadAborted(watcher);
    return async () => {
      this.#abortWatchers.delete(watcher);
      if (this.#abortWatchers.size === 0) this.#unsubscribe(abortChannel(this.#o.prefix));
    };
  }

  /** Aborts made while no one listened (or while the connection was down). */
  async #loadAborted(watcher: { queues: Set<string>; onAbort: (id: string) => void }): Promise<void> {
    const key = (q: string) => this.#keys(q).aborted;
    const replies = await bySlotGroup(this.#redis, [...watcher.queues], key, (pipe, q) => pipe.smembers(key(q)));
    for (const [[error, ids] = [null, []]] of replies) {
      if (error) throw error;
      for (const id of ids as string[]) watcher.onAbort(id);
    }
  }

  #subscriber(): RedisClient {
    if (this.#sub) return this.#sub;
    const sub = this.#o.subscriber();
    let connectedBefore = false;
    sub.on("ready", () => {
      // ioredis subscribes again by itself after a reconnect; what was published meanwhile is lost,
      // so look again at everything that matters.
      if (connectedBefore) {
        this.#waiters.recheck();
        for (const w of this.#abortWatchers) {
          this.#loadAborted(w).catch((error) => this.#o.logger?.warn({ err: error }, "reloading aborted jobs failed"));
        }
      }
      connectedBefore = true;
    });
    sub.on("message", (channel: string, text: string) => this.#onMessage(channel, text));
    if (isCluster(sub)) {
      sub.on("smessage", (channel: string, text: string) => this.#onMessage(channel, text));
      // A master's sharded subscriber came back (a reconnect, a failover): what was published meanwhile is lost.
      sub.on("+subscriber", () => this.#waiters.recheck());
      sub.on("subscribersReady", () => this.#waiters.recheck());
    }
    return (this.#sub = sub);
  }

  #onMessage(channel: string, text: string): void {
    let data: unknown;
    try {
      data = JSON.parse(text);
    } catch {
      return;
    }
    if (channel === abortChannel(this.#o.prefix)) {
      const { queue, id } = data as { queue?: string; id?: string };
      if (typeof queue !== "string" || typeof id !== "string") return;
      for (const w of this.#abortWatchers) if (w.queues.has(queue)) w.onAbort(id);
      return;
    }
    const queue = this.#queueOfDone(channel);
    if (queue !== undefined && Array.isArray(data)) this.#waiters.changed(queue, data.map(String));
  }

  #queueOfDone(channel: string): string | undefined {
    const start = `{${this.#o.prefix}:`;
    if (!channel.startsWith(start) || !channel.endsWith("}:done")) return undefined;
    return channel.slice(start.length, -"}:done".length);
  }

  #subscribe(channel: string): Promise<unknown> {
    let done = this.#subscribed.get(channel);
    if (!done) {
      const sub = this.#subscriber();
      // A done channel is in its queue's slot: sharded on a Cluster, where one SSUBSCRIBE names one slot's channels.
      done = isCluster(sub) && this.#queueOfDone(channel) !== undefined ? sub.ssubscribe(channel) : sub.subscribe(channel);
      this.#subscribed.set(channel, done);
      done.catch(() => this.#subscribed.delete(channel));
    }
    return done;
  }

  #unsubscribe(channel: string): void {
    if (!this.#subscribed.delete(channel)) return;
    const sub = this.#sub;
    if (!sub) return;
    const sharded = isCluster(sub) && this.#queueOfDone(channel) !== undefined;
    (sharded ? sub.sunsubscribe(channel) : sub.unsubscribe(channel)).catch(() => undefined);
  }

  close(): void {
    this.#sub?.disconnect();
    this.#sub = undefined;
    this.#subscribed.clear();
  }
}
