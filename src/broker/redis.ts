import { Redis, type RedisOptions } from "ioredis";
import type { Logger } from "pino";
import { BrokerError, MalformedMessageError, type SerializedError } from "../errors.ts";
import { decodeMessage, encodeMessage, type Delivery, type DeliveryRef, type MalformedDelivery } from "../message.ts";
import { actorsKey, GROUP, queueKeys, queueOfStream, queuesKey, type QueueKeys } from "./keys.ts";
import { ENQUEUE, READ, REQUEUE, SETTLE } from "./scripts.ts";
import type { Acked, ActorMeta, Broker, DeadLetter, QueueStats, SendRequest } from "./types.ts";

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
  logger?: Logger;
}

type Entry = [string, string[] | null];
type Scripted = Redis & {
  drayRead(...args: (string | number)[]): Promise<unknown[]>;
  drayEnqueue(...args: (string | number)[]): Promise<number>;
  draySettle(...args: (string | number)[]): Promise<number>;
  drayRequeue(...args: (string | number)[]): Promise<number>;
};

export class RedisBroker implements Broker {
  readonly prefix: string;
  readonly consumer: string;
  readonly visibilityTimeout: number;
  readonly #redis: Scripted;
  #blocker: Redis | undefined;
  readonly #options: RedisBrokerOptions;
  readonly #knownPriorities = new Set<string>();
  readonly #streamsByQueue = new Map<string, string[]>();
  #lastReclaim = 0;
  /** When the blocking read in progress gives up (0 when none): a retry due sooner interrupts it. */
  #blockUntil = 0;
  #turn = 0;

  constructor(options: RedisBrokerOptions) {
    this.#options = options;
    this.prefix = options.prefix;
    this.consumer = options.consumer ?? `c-${crypto.randomUUID()}`;
    this.visibilityTimeout = options.visibilityTimeout ?? 10_000;
    this.#redis = connect(options, "dray") as Scripted;
    this.#redis.defineCommand("drayRead", { numberOfKeys: 2, lua: READ });
    this.#redis.defineCommand("drayEnqueue", { numberOfKeys: 4, lua: ENQUEUE });
    this.#redis.defineCommand("draySettle", { numberOfKeys: 3, lua: SETTLE });
    this.#redis.defineCommand("drayRequeue", { numberOfKeys: 2, lua: REQUEUE });
  }

  /** The command connection, for handlers' `ctx.redis` and for tools. */
  get redis(): Redis {
    return this.#redis;
  }

  keys(queue: string): QueueKeys {
    return queueKeys(this.prefix, queue);
  }

  async enqueue(requests: SendRequest[]): Promise<boolean[]> {
    const pipe = this.#redis.pipeline() as unknown as Scripted;
    const plain: boolean[] = [];
    let commands = 0;
    const lastOf: number[] = [];
    for (const { message, delay, at } of requests) {
      const k = this.keys(message.queue);
      const body = encodeMessage(message);
      const prio = String(message.priority);
      if (!message.dedup && delay === undefined && at === undefined) {
        // The fast path: one XADD. The priority level is registered once per process.
        const known = `${message.queue}\u0000${prio}`;
        if (!this.#knownPriorities.has(known)) {
          pipe.sadd(k.priorities, prio);
          this.#knownPriorities.add(known);
          commands++;
        }
        pipe.xadd(k.stream(message.priority), "*", "m", body, "r", "0");
        plain.push(true);
      } else {
        pipe.drayEnqueue(k.stream(message.priority), k.delayed, k.priorities,
          message.dedup ? k.dedup(message.id) : "", body, prio, delay ?? -1, at ?? -1);
        plain.push(false);
      }
      lastOf.push(commands++);
    }
    const results = await execPipeline(pipe);
    return lastOf.map((index, n) => plain[n] || results[index] === 1);
  }

  async read(queues: string[], count: number, blockMs: number): Promise<Array<Delivery | MalformedDelivery>> {
    const now = Date.now();
    const reclaim = now - this.#lastReclaim >= this.visibilityTimeout / 2;
    if (reclaim) this.#lastReclaim = now;
    const out: Array<Delivery | MalformedDelivery> = [];
    let nextDue = Infinity;
    // Start from a different queue each time so one busy queue cannot starve the others.
    const start = this.#turn++ % Math.max(1, queues.length);
    for (let n = 0; n < queues.length && out.length < count; n++) {
      const queue = queues[(start + n) % queues.length]!;
      const k = this.keys(queue);
      const res = await this.#redis.drayRead(k.priorities, k.delayed, k.streamPrefix, GROUP, this.consumer,
        count - out.length, reclaim ? this.visibilityTimeout : 0, 1000);
      const due = Number(res[0]);
      if (due >= 0) nextDue = Math.min(nextDue, due);
      for (let j = 1; j < res.length; j += 2) {
        this.#decodeInto(out, queue, res[j] as string, res[j + 1] as Entry[]);
      }
    }
    if (out.length > 0 || blockMs <= 0) return out;
    // Nothing ready: block on the streams until something arrives or the next delayed job is due
    // (the Redis clock and ours may differ a little; waking early only costs one more read).
    const wait = Math.max(1, Math.min(blockMs, nextDue === Infinity ? blockMs : nextDue - Date.now()));
    await this.#block(queues, count, wait, out);
    return out;
  }

  async #block(queues: string[], count: number, waitMs: number, out: Array<Delivery | MalformedDelivery>) {
    const streams = await this.#streams(queues);
    if (streams.length === 0) {
      await new Promise((r) => setTimeout(r, Math.min(waitMs, 250)));
      return;
    }
    this.#blocker ??= connect({ ...this.#options, patient: true }, "dray-block");
    let res: [string, Entry[]][] | null;
    this.#blockUntil = Date.now() + waitMs;
    try {
      res = (await this.#blocker.xreadgroup("GROUP", GROUP, this.consumer, "COUNT", count, "BLOCK", waitMs,
        "STREAMS", ...streams, ...streams.map(() => ">"))) as [string, Entry[]][] | null;
    } catch (error) {
      if (String(error).includes("NOGROUP")) this.#streamsByQueue.clear();
      else if (!String(error).includes("Connection is closed")) throw error;
      return;
    } finally {
      this.#blockUntil = 0;
    }
    for (const [stream, entries] of res ?? []) {
      this.#decodeInto(out, queueOfStream(this.prefix, stream), stream, entries);
    }
  }

  async #streams(queues: string[]): Promise<string[]> {
    const all: string[] = [];
    for (const queue of queues) {
      let streams = this.#streamsByQueue.get(queue);
      if (!streams) {
        const k = this.keys(queue);
        streams = (await this.#redis.smembers(k.priorities)).map((p) => k.streamPrefix + p);
        // Re-read the levels now and then: a sender may have started using a new one.
        if (streams.length > 0) {
          this.#streamsByQueue.set(queue, streams);
          setTimeout(() => this.#streamsByQueue.delete(queue), 2_000).unref?.();
        }
      }
      all.push(...streams);
    }
    return all;
  }

  #decodeInto(out: Array<Delivery | MalformedDelivery>, queue: string, stream: string, entries: Entry[]) {
    for (const [entryId, fields] of entries) {
      if (!fields) continue; // deleted while pending: nothing left to run
      const raw: Record<string, string> = {};
      for (let i = 0; i + 1 < fields.length; i += 2) raw[fields[i]!] = fields[i + 1]!;
      const ref = { stream, entryId };
      try {
        const message = decodeMessage(raw.m, queue);
        out.push({ message, retries: Number(raw.r ?? 0) || 0, ref });
      } catch (error) {
        const e = error instanceof MalformedMessageError ? error : new MalformedMessageError(String(error));
        out.push({ malformed: true, raw, error: e, ref, queue });
      }
    }
  }

  async ack(done: Acked[]): Promise<void> {
    if (done.length === 0) return;
    const byStream = new Map<string, string[]>();
    const multi = this.#redis.multi();
    for (const { delivery, keepMs } of done) {
      const ids = byStream.get(delivery.ref.stream) ?? [];
      ids.push(delivery.ref.entryId);
      byStream.set(delivery.ref.stream, ids);
      if (delivery.message.dedup) {
        const key = this.keys(delivery.message.queue).dedup(delivery.message.id);
        if (keepMs > 0) multi.pexpire(key, keepMs);
        else multi.del(key);
      }
    }
    for (const [stream, ids] of byStream) {
      multi.xack(stream, GROUP, ...ids);
      multi.xdel(stream, ...ids);
    }
    await execPipeline(multi);
  }

  async retry(delivery: Delivery, delayMs: number): Promise<void> {
    const k = this.keys(delivery.message.queue);
    await this.#redis.draySettle(delivery.ref.stream, k.delayed, "", GROUP, delivery.ref.entryId, "delay",
      encodeMessage(delivery.message), delivery.retries + 1, Math.max(0, Math.round(delayMs)), "", 0);
    // Our own read loop may be blocked past the new due time; wake it rather than run the retry late.
    if (this.#blockUntil > 0 && Date.now() + delayMs < this.#blockUntil - 10) this.interrupt();
  }

  async deadLetter(delivery: Delivery | MalformedDelivery, error: SerializedError, keepMs = 0): Promise<void> {
    const isMalformed = "malformed" in delivery;
    const queue = isMalformed ? delivery.queue : delivery.message.queue;
    const k = this.keys(queue);
    const body = isMalformed ? JSON.stringify(delivery.raw) : encodeMessage(delivery.message);
    const dedup = !isMalformed && delivery.message.dedup ? k.dedup(delivery.message.id) : "";
    await this.#redis.draySettle(delivery.ref.stream, k.dlq, dedup, GROUP, delivery.ref.entryId, "dlq", body,
      isMalformed ? 0 : delivery.retries, 0, JSON.stringify(error), keepMs);
  }

  async giveBack(deliveries: Delivery[]): Promise<void> {
    if (deliveries.length === 0) return;
    const pipe = this.#redis.pipeline() as unknown as Scripted;
    for (const d of deliveries) {
      pipe.draySettle(d.ref.stream, d.ref.stream, "", GROUP, d.ref.entryId, "stream", encodeMessage(d.message),
        d.retries, 0, "", 0);
    }
    await execPipeline(pipe);
  }

  async extend(refs: DeliveryRef[]): Promise<void> {
    if (refs.length === 0) return;
    const byStream = new Map<string, string[]>();
    for (const r of refs) byStream.set(r.stream, [...(byStream.get(r.stream) ?? []), r.entryId]);
    const pipe = this.#redis.pipeline();
    for (const [stream, ids] of byStream) pipe.xclaim(stream, GROUP, this.consumer, 0, ...ids, "JUSTID");
    await execPipeline(pipe);
  }

  async publishActors(actors: ActorMeta[]): Promise<void> {
    if (actors.length === 0) return;
    const pipe = this.#redis.pipeline();
    for (const a of actors) {
      pipe.hset(actorsKey(this.prefix), a.name, JSON.stringify({ queue: a.queue, priority: a.priority }));
      pipe.sadd(queuesKey(this.prefix), a.queue);
    }
    await execPipeline(pipe);
  }

  async lookupActor(name: string): Promise<ActorMeta | undefined> {
    const raw = await this.#redis.hget(actorsKey(this.prefix), name);
    if (!raw) return undefined;
    const meta = JSON.parse(raw) as { queue: string; priority: number };
    return { name, queue: meta.queue, priority: meta.priority };
  }

  async deadLetters(queue: string, options: { limit?: number } = {}): Promise<DeadLetter[]> {
    const entries = (await this.#redis.xrange(this.keys(queue).dlq, "-", "+", "COUNT", options.limit ?? 100)) as Entry[];
    return entries.map(([id, fields]) => {
      const raw: Record<string, string> = {};
      for (let i = 0; fields && i + 1 < fields.length; i += 2) raw[fields[i]!] = fields[i + 1]!;
      let message: DeadLetter["message"];
      try {
        message = decodeMessage(raw.m, queue);
      } catch {
        message = { raw: raw.m ?? "" };
      }
      return { id, queue, message, retries: Number(raw.r ?? 0), error: JSON.parse(raw.e ?? "{}"), at: Number(raw.at ?? 0) };
    });
  }

  async requeue(queue: string, ids?: string[]): Promise<number> {
    const k = this.keys(queue);
    let total = 0;
    if (ids) return await this.#redis.drayRequeue(k.dlq, k.priorities, k.streamPrefix, ...ids);
    for (;;) {
      const batch = ((await this.#redis.xrange(k.dlq, "-", "+", "COUNT", 500)) as Entry[]).map((e) => e[0]);
      if (batch.length === 0) return total;
      total += await this.#redis.drayRequeue(k.dlq, k.priorities, k.streamPrefix, ...batch);
    }
  }

  async purgeDeadLetters(queue: string): Promise<number> {
    const k = this.keys(queue);
    const [n] = await execPipeline(this.#redis.multi().xlen(k.dlq).del(k.dlq));
    return Number(n);
  }

  async stats(queue: string): Promise<QueueStats> {
    const k = this.keys(queue);
    const prios = await this.#redis.smembers(k.priorities);
    let ready = 0;
    let running = 0;
    for (const p of prios) {
      const stream = k.stream(Number(p));
      const [len, pending] = await Promise.all([
        this.#redis.xlen(stream),
        this.#redis.xpending(stream, GROUP).catch(() => [0]) as Promise<unknown[]>,
      ]);
      running += Number(pending[0] ?? 0);
      ready += len - Number(pending[0] ?? 0);
    }
    const [delayed, dead] = await Promise.all([this.#redis.zcard(k.delayed), this.#redis.xlen(k.dlq)]);
    return { queue, ready, running, delayed, dead };
  }

  async queues(): Promise<string[]> {
    return (await this.#redis.smembers(queuesKey(this.prefix))).sort();
  }

  /**
   * Drops the blocking connection. Should Redis have answered the read in that instant, its entries
   * stay pending for this consumer and are reclaimed after the visibility timeout: late, never lost.
   */
  interrupt(): void {
    this.#blocker?.disconnect();
    this.#blocker = undefined;
  }

  async close(): Promise<void> {
    this.interrupt();
    await this.#redis.quit().catch(() => this.#redis.disconnect());
  }
}

function connect(options: RedisBrokerOptions, name: string): Redis {
  const redisOptions: RedisOptions = {
    connectionName: name,
    maxRetriesPerRequest: options.patient ? null : 2,
    // Reconnect with a capped backoff; a worker keeps trying for as long as it lives.
    retryStrategy: (times) => Math.min(50 * 2 ** Math.min(times, 6), 2_000),
    lazyConnect: false,
  };
  const redis = new Redis(options.url, redisOptions);
  let lastLog = 0;
  redis.on("error", (error: Error) => {
    // ioredis emits an error per failed reconnect attempt; one line every 5 s is enough.
    if (Date.now() - lastLog > 5_000) {
      lastLog = Date.now();
      options.logger?.warn({ err: error, connection: name }, "redis connection error; reconnecting");
    }
  });
  return redis;
}

/** Runs a pipeline or MULTI and throws the first command error as a BrokerError. */
async function execPipeline(pipe: { exec(): Promise<[Error | null, unknown][] | null> }): Promise<unknown[]> {
  const results = await pipe.exec();
  if (!results) throw new BrokerError("transaction aborted");
  return results.map(([error, value]) => {
    if (error) throw new BrokerError(`redis: ${error.message}`, { cause: error });
    return value;
  });
}
