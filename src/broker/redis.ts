import { Blocker } from "./blocker.ts";
import { RedisControl } from "./control.ts";
import { redisLimits } from "./limits.ts";
import { RedisHistory } from "./history.ts";
import { within } from "../timers.ts";
import { ackBatch, pruneConsumers, recoverOwn, renewLeases, settleTail } from "./leases.ts";
import type { Logger } from "pino";
import type { SerializedError } from "../errors.ts";
import { encodeMessage, type Delivery, type DeliveryRef, type MalformedDelivery } from "../message.ts";
import { encodeRecord, pendingRecord } from "../results/record.ts";
import { pendingRecords, type EnqueueItem } from "./send_batch.ts";
import { RedisJobStore } from "../results/redis.ts";
import type { JobRecord } from "../results/types.ts";
import { GROUP, queueKeys, queueOfStream, queuesKey, type QueueKeys } from "./keys.ts";
import { bySlotGroup, connect, defineScripts, untilConnected, valuesOf, type RedisClient, type Scripted } from "./connection.ts";
import { checkPrefix, settings, type ReplicaAcks } from "../config.ts";
import { replicaAcked } from "./replica_acks.ts";
import { browseQueue, findJob } from "./browse.ts";
import { markRunning, ReclaimPacing, readByScript, readPlain, StreamLevels } from "./read.ts";
import {
  listDeadLetters, lookupActor, publishActors, purgeDeadLetters, queueStats, queueStatsMany, requeueDeadLetters,
} from "./admin.ts";
import type { Acked, ActorMeta, Broker, BrowsedJob, BrowseOptions, Control, DeadLetter, JobState, Page, QueueStats,
  RateLimits, RetryOptions, SendRequest } from "./types.ts";

export interface RedisBrokerOptions {
  /** @default settings().redisUrl */
  url: string;
  prefix: string;
  /** Consumer name in the group; unique per worker process. */
  consumer?: string;
  /** Entries of a consumer idle this long are reclaimed by others. @default 10_000 */
  visibilityTimeout?: number;
  /**
   * Wait for Redis forever (workers) rather than failing a command after a few reconnect attempts
   * (senders, which should tell their caller). @default false
   */
  patient?: boolean;
  /** One round trip for the commands of one tick (see ConnectOptions.autoPipelining). @default false */
  autoPipelining?: boolean;
  /** Sends resolve once this many replicas have them (see Settings.replicaAcks). @default settings().replicaAcks */
  replicaAcks?: ReplicaAcks;
  logger?: Logger;
}

export class RedisBroker implements Broker {
  readonly prefix: string;
  readonly consumer: string;
  readonly visibilityTimeout: number;
  readonly jobs: RedisJobStore;
  readonly limits: RateLimits;
  readonly control: Control;
  readonly history: RedisHistory;
  readonly #redis: Scripted;
  readonly #blocker: Blocker;
  readonly #options: RedisBrokerOptions;
  readonly #knownPriorities = new Set<string>();
  readonly #knownQueues = new Set<string>();
  readonly #levels: StreamLevels;
  /** Queues whose last read found a single priority level (0): read without Lua, see read.ts. */
  readonly #oneLevel = new Set<string>();
  readonly #keys = new Map<string, QueueKeys>();
  readonly #reclaims: ReclaimPacing;
  /**
   * Each queue's reclaims counter as of its last read: what a blocking read's entries are confirmed
   * at. Its keys are the queues this consumer read, whose groups it leaves on close.
   */
  readonly #epochs = new Map<string, number>();
  #turn = 0;

  constructor(options: RedisBrokerOptions) {
    this.#options = options;
    this.prefix = checkPrefix(options.prefix);
    this.consumer = options.consumer ?? `c-${crypto.randomUUID()}`;
    this.visibilityTimeout = options.visibilityTimeout ?? 10_000;
    this.#redis = defineScripts(connect(options, "dray"));
    this.#blocker = new Blocker(options, this.prefix, this.consumer, this.#redis);
    this.#reclaims = new ReclaimPacing(this.visibilityTimeout);
    this.#levels = new StreamLevels(this.#redis, (queue) => this.keys(queue));
    // ioredis sends a command again when its connection dropped before the reply: a read sent again
    // leaves the first one's entries pending here, unseen. Look for them once reading again.
    let down = false;
    this.#redis.on("close", () => {
      down = true;
      this.#blocker.noteLostReply();
    });
    this.#redis.on("ready", () => {
      if (down) this.#reclaims.redisWasAway();
      down = false;
    });
    this.jobs = new RedisJobStore({
      prefix: this.prefix, redis: this.#redis, logger: options.logger,
      subscriber: () => connect({ ...options, patient: true, sharded: true }, "dray-sub"),
    });
    this.control = new RedisControl(this.#redis, this.prefix);
    this.history = new RedisHistory(this.#redis, this.prefix);
    this.limits = redisLimits(this.#redis, this.prefix);
  }

  /**
   * The command connection, for handlers' `ctx.redis`, the cron store (src/cron/stores.ts) and tools:
   * a Cluster client when the URL names a Redis Cluster.
   */
  get redis(): RedisClient {
    return this.#redis;
  }

  /** A queue's keys, built once per queue: the hot path asks for them for every job. */
  keys(queue: string): QueueKeys {
    let k = this.#keys.get(queue);
    if (!k) this.#keys.set(queue, (k = queueKeys(this.prefix, queue)));
    return k;
  }

  /**
   * One pipeline on a single Redis; on a Cluster one per node (bySlotGroup), with the queue
   * directory's SADD in the group of its own slot. Each request's commands touch its queue's slot.
   * The plain sends' pending records go first, in MSETs of one queue each (send_batch.ts): one
   * command for many keys rather than a SET each.
   */
  async enqueue(requests: SendRequest[]): Promise<boolean[]> {
    // So that a handle made from a bare id can find the queue its record is in.
    const fresh = [...new Set(requests.map((r) => r.message.queue))].filter((q) => !this.#knownQueues.has(q));
    for (const queue of fresh) this.#knownQueues.add(queue);
    // The fast path, a plain XADD, answers no "duplicate": only the script dedups.
    const plain = (r: SendRequest) => !r.message.dedup && r.delay === undefined && r.at === undefined;
    // Before the XADDs: a worker's final record must never be overwritten by a pending one.
    const records = pendingRecords(requests.filter((r) => plain(r) && r.message.tracked).map((r) => r.message),
      (queue, id) => this.keys(queue).job(id));
    const items: EnqueueItem[] = [...(fresh.length > 0 ? [{ directory: fresh }] : []), ...records, ...requests];
    const before = items.length - requests.length;
    // Durable sends: a WAIT for its replicas after each node's pipeline, on its connection (replica_acks.ts).
    const acked = replicaAcked(this.#redis, this.#options.replicaAcks ?? settings().replicaAcks,
      () => defineScripts(connect(this.#options, "dray-acked")));
    // Priority levels this call registers, by the request that does: a level counts as known only
    // once its SADD has run, so that a send that failed leaves it for the next to register.
    const registering = new Map<string, SendRequest>();
    const replies = await bySlotGroup(acked?.client ?? this.#redis, items,
      (item) => ("directory" in item ? queuesKey(this.prefix) : this.keys("pairs" in item ? item.queue : item.message.queue).priorities),
      (pipe, item) => {
        if ("directory" in item) return void pipe.sadd(queuesKey(this.prefix), ...item.directory);
        if ("pairs" in item) return void pipe.mset(...item.pairs);
        const { message, delay, at } = item;
        const k = this.keys(message.queue);
        const body = encodeMessage(message);
        const prio = String(message.priority);
        if (plain(item)) {
          // The fast path: one XADD. The priority level is registered once per process.
          const known = `${message.queue}\u0000${prio}`;
          if (!this.#knownPriorities.has(known) && (registering.get(known) ?? registering.set(known, item).get(known)) === item) {
            pipe.sadd(k.priorities, prio);
          }
          pipe.xadd(k.stream(message.priority), "*", "m", body, "r", "0");
        } else {
          const dueAt = delay !== undefined ? Date.now() + delay : at;
          pipe.drayEnqueue(k.stream(message.priority), k.delayed, k.priorities,
            message.dedup ? k.dedup(message.id) : k.none, message.tracked ? k.job(message.id) : k.none,
            body, prio, delay ?? -1, at ?? -1, message.tracked ? encodeRecord(pendingRecord(message, dueAt)) : "",
            String(message.sentAt));
        }
      }, acked?.after);
    // A failed directory SADD or record MSET fails the call, as a failed send does.
    for (const reply of replies.slice(0, before)) valuesOf(reply);
    const results = replies.slice(before).map((r) => valuesOf(r));
    for (const known of registering.keys()) this.#knownPriorities.add(known);
    return results.map((values, n) => plain(requests[n]!) || values[values.length - 1] === 1);
  }

  async read(queues: string[], count: number, blockMs: number): Promise<Array<Delivery | MalformedDelivery>> {
    try {
      return await this.#read(queues, count, blockMs);
    } catch (error) {
      // The read may have run and its reply been lost; and holders could not renew meanwhile.
      this.#blocker.noteLostReply();
      this.#reclaims.redisWasAway();
      throw error;
    }
  }

  async #read(queues: string[], count: number, blockMs: number): Promise<Array<Delivery | MalformedDelivery>> {
    const reclaim = this.#reclaims.take(this.#redis.status === "ready");
    if (reclaim) this.#prune(queues);
    const out: Array<Delivery | MalformedDelivery> = [];
    let nextDue = Infinity;
    // Start from a different queue each time so one busy queue cannot starve the others.
    const start = this.#turn++ % Math.max(1, queues.length);
    for (let n = 0; n < queues.length && out.length < count; n++) {
      const queue = queues[(start + n) % queues.length]!;
      const k = this.keys(queue);
      const fast = !reclaim && this.#oneLevel.has(queue);
      let got = fast ? await readPlain(this.#redis, k, queue, this.consumer, count - out.length, out) : undefined;
      // Reclaiming, first sight of the queue, a level that just appeared, no group yet: the script reads.
      if (!got || (got.levels !== 1 && out.length < count)) {
        got = await readByScript(this.#redis, k, queue, this.consumer, count - out.length,
          reclaim ? this.visibilityTimeout : 0, out);
      }
      this.#epochs.set(queue, got.epoch);
      if (got.levels === 1) this.#oneLevel.add(queue);
      else this.#oneLevel.delete(queue);
      if (got.due >= 0) nextDue = Math.min(nextDue, got.due);
    }
    if (out.length > 0 || blockMs <= 0) return this.#markRunning(out);
    // Nothing ready: block on the streams until something arrives or the next delayed job is due
    // (the Redis clock and ours may differ a little; waking early only costs one more read).
    const wait = Math.max(1, Math.min(blockMs, nextDue === Infinity ? blockMs : nextDue - Date.now()));
    await this.#block(queues, count, wait, out);
    return this.#markRunning(out);
  }

  #markRunning(out: Array<Delivery | MalformedDelivery>): Array<Delivery | MalformedDelivery> {
    markRunning(this.#redis, this.prefix, (queue) => this.keys(queue), out, this.#options.logger);
    return out;
  }

  async #block(queues: string[], count: number, waitMs: number, out: Array<Delivery | MalformedDelivery>) {
    const streams = await this.#levels.streams(queues);
    if (streams.length === 0) {
      await new Promise((r) => setTimeout(r, Math.min(waitMs, 250)));
      return;
    }
    const from = out.length;
    try {
      await this.#blocker.read(streams, count, waitMs, out);
      // Read just before the block, for every queue: an earlier value only errs on the safe side.
      for (let i = from; i < out.length; i++) {
        const { ref } = out[i]!;
        ref.epoch = this.#epochs.get(queueOfStream(this.prefix, ref.stream)) ?? -1;
      }
    } catch (error) {
      if (String(error).includes("NOGROUP")) this.#levels.clear();
      else if (!String(error).includes("Connection is closed")) throw error;
    }
  }

  /**
   * Removes consumers of these queues that hold nothing and have not read for six visibility
   * timeouts (workers that are gone), so that consumer groups do not grow with every worker start.
   * Runs with the reclaim pass, not awaited: it changes nothing any read depends on.
   */
  #prune(queues: string[]): void {
    const streams = queues.flatMap((queue) => this.#levels.cached(queue) ?? [this.keys(queue).stream(0)]);
    pruneConsumers(this.#redis, this.consumer, streams, this.visibilityTimeout * 6).catch(() => undefined);
  }

  /** See Broker.recover: after a connection dropped, entries this consumer holds but never saw. */
  async recover(queues: string[], holds: (ref: DeliveryRef) => boolean): Promise<Array<Delivery | MalformedDelivery>> {
    if (!this.#blocker.takeLostReplies()) return [];
    try {
      return this.#markRunning(await recoverOwn(this.#redis, this.prefix, this.consumer, await this.#levels.streams(queues), holds));
    } catch (error) {
      this.#blocker.noteLostReply(); // look again next time
      throw error;
    }
  }

  /**
   * One ACK script per queue for a batch: the records of the batch (kept `keepMs`), the acks, and one
   * message per queue to whoever waits on these jobs. The ack and the outcome land together or not at
   * all, and only for entries this consumer still holds.
   */
  async ack(done: Acked[]): Promise<DeliveryRef[]> {
    if (done.length === 0) return [];
    return await ackBatch(this.#redis, (ref) => this.#refKeys(ref), this.consumer, done);
  }

  /**
   * The keys of the queue whose stream holds `ref`: a script that settles an entry takes the stream
   * from the ref, so its other keys come from there too, in the stream's slot whatever the message says.
   */
  #refKeys(ref: DeliveryRef): QueueKeys {
    return this.keys(queueOfStream(this.prefix, ref.stream));
  }

  async retry(delivery: Delivery, delayMs: number, options: RetryOptions = {}): Promise<boolean> {
    const k = this.#refKeys(delivery.ref);
    const retries = options.charge === false ? delivery.retries : delivery.retries + 1;
    const settled = await this.#redis.draySettle(delivery.ref.stream, k.delayed, k.none, ...this.#recordKeys(delivery, options.record),
      GROUP, delivery.ref.entryId, "delay", encodeMessage(delivery.message), retries, Math.max(0, Math.round(delayMs)),
      "", 0, ...this.#recordArgs(delivery, options.record, 0, false), ...settleTail(this.#redis, this.consumer));
    // Our own read loop may be blocked past the new due time; wake it rather than run the retry late.
    const until = this.#blocker.blockingUntil;
    if (until > 0 && Date.now() + delayMs < until - 10) this.#blocker.wake();
    return settled > 0;
  }

  async deadLetter(delivery: Delivery | MalformedDelivery, error: SerializedError, keepMs = 0, record?: JobRecord): Promise<boolean> {
    const isMalformed = "malformed" in delivery;
    const k = this.#refKeys(delivery.ref);
    const body = isMalformed ? JSON.stringify(delivery.raw) : encodeMessage(delivery.message);
    const dedup = !isMalformed && delivery.message.dedup ? k.dedup(delivery.message.id) : k.none;
    const kept = keepMs > 0 ? record : undefined;
    const settled = await this.#redis.draySettle(delivery.ref.stream, k.dlq, dedup,
      ...(isMalformed ? [k.none, k.none, k.none] : this.#recordKeys(delivery, kept)),
      GROUP, delivery.ref.entryId, "dlq", body, isMalformed ? 0 : delivery.retries, 0, JSON.stringify(error), keepMs,
      ...(isMalformed ? ["", "", 0, ""] : this.#recordArgs(delivery, kept, keepMs, true)), ...settleTail(this.#redis, this.consumer));
    return settled > 0;
  }

  async giveBack(deliveries: Delivery[]): Promise<DeliveryRef[]> {
    if (deliveries.length === 0) return [];
    const settled = await bySlotGroup(this.#redis, deliveries, (d) => d.ref.stream, (pipe, d) => pipe.draySettle(d.ref.stream,
      d.ref.stream, this.#refKeys(d.ref).none, ...this.#recordKeys(d, undefined), GROUP, d.ref.entryId, "stream", encodeMessage(d.message),
      d.retries, 0, "", 0, ...this.#recordArgs(d, undefined, 0, false), ...settleTail(this.#redis, this.consumer)));
    return deliveries.filter((_, n) => !(Number(valuesOf(settled[n]!)[0]) > 0)).map((d) => d.ref);
  }

  /** SETTLE's record keys: none for a job that has no record and gets none. */
  #recordKeys(d: Delivery, record: JobRecord | undefined): [string, string, string] {
    const k = this.#refKeys(d.ref);
    if (!d.message.tracked && !record) return [k.none, k.none, k.none];
    return [k.job(d.message.id), k.running, k.aborted];
  }

  /** SETTLE's record arguments: job id, record JSON, its ttl, and the channel to tell when finished. */
  #recordArgs(d: Delivery, record: JobRecord | undefined, ttl: number, finished: boolean): [string, string, number, string] {
    const tell = finished && (d.message.tracked || record) ? this.#refKeys(d.ref).done : "";
    return [d.message.id, record ? encodeRecord(record) : "", ttl, tell];
  }

  extend(refs: DeliveryRef[]): Promise<DeliveryRef[]> {
    return renewLeases(this.#redis, this.consumer, refs, (stream) => this.keys(queueOfStream(this.prefix, stream)).reclaims);
  }

  connected(): Promise<void> {
    return untilConnected(this.#redis);
  }

  publishActors(actors: ActorMeta[]): Promise<void> {
    return publishActors(this.#redis, this.prefix, actors);
  }

  lookupActor(name: string): Promise<ActorMeta | undefined> {
    return lookupActor(this.#redis, this.prefix, name);
  }

  deadLetters(queue: string, options: { limit?: number } = {}): Promise<DeadLetter[]> {
    return listDeadLetters(this.#redis, this.keys(queue), queue, options.limit ?? 100);
  }

  requeue(queue: string, ids?: string[]): Promise<number> {
    return requeueDeadLetters(this.#redis, this.keys(queue), ids);
  }

  purgeDeadLetters(queue: string, ids?: string[]): Promise<number> {
    return purgeDeadLetters(this.#redis, this.keys(queue), ids);
  }

  browse(queue: string, state: JobState, options?: BrowseOptions): Promise<Page<BrowsedJob>> {
    return browseQueue(this.#redis, this.keys(queue), queue, state, options);
  }

  findJob(queue: string, id: string, options?: { scanLimit?: number }): Promise<BrowsedJob | undefined> {
    return findJob(this.#redis, this.keys(queue), queue, id, options);
  }

  stats(queue: string): Promise<QueueStats> {
    return queueStats(this.#redis, this.keys(queue), queue);
  }

  statsMany(queues: string[]): Promise<QueueStats[]> {
    return queueStatsMany(this.#redis, queues.map((q) => this.keys(q)), queues);
  }

  async queues(): Promise<string[]> {
    return (await this.#redis.smembers(queuesKey(this.prefix))).sort();
  }

  /** Ends a blocking read in progress at once, without losing what it may have read (see Blocker). */
  interrupt(): void {
    this.#blocker.wake();
  }

  /**
   * Leaves the consumer groups this consumer read (where it holds nothing: what it still holds stays
   * pending and is reclaimed), then closes. Bounded: with Redis away, a worker still stops.
   */
  async close(): Promise<void> {
    this.#blocker.close();
    this.jobs.close();
    if (this.#redis.status === "ready" && this.#epochs.size > 0) {
      const leave = async () => pruneConsumers(this.#redis, this.consumer, await this.#levels.streams([...this.#epochs.keys()]), 0);
      await within(leave().catch(() => undefined), 1_000);
    }
    await within(this.#redis.quit().catch(() => undefined), 1_000);
    this.#redis.disconnect();
  }
}
