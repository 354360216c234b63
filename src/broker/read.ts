/**
 * The two ways RedisBroker reads a queue. Both run the READ script (scripts.ts) for the moves that
 * must be atomic; they differ in whether the entries themselves come through Lua.
 */
import { BrokerError } from "../errors.ts";
import type { Delivery, MalformedDelivery } from "../message.ts";
import type { Logger } from "pino";
import { bySlotGroup, decodeEntries, type Entry, type RedisClient, type Scripted } from "./connection.ts";
import { resendRedirected } from "./redirects.ts";
import { GROUP, queueOfStream, runningPin, type QueueKeys } from "./keys.ts";

export interface QueueRead {
  /** When the next delayed message is due (Redis clock, ms), or -1. */
  due: number;
  /** How many priority levels the queue has: 1 lets the next read take the plain path. */
  levels: number;
  /** The queue's reclaims counter as of this read (see the ACK script): what the entries read are confirmed at. */
  epoch: number;
}

/** Marks the deliveries `out` got since `from` as confirmed at `epoch`. */
function confirm(out: Array<Delivery | MalformedDelivery>, from: number, epoch: number): void {
  for (let i = from; i < out.length; i++) out[i]!.ref.epoch = epoch;
}

/** Everything in the script: move due messages, reclaim (`reclaimMs` > 0), read level by level. */
export async function readByScript(redis: Scripted, k: QueueKeys, queue: string, consumer: string, count: number,
  reclaimMs: number, out: Array<Delivery | MalformedDelivery>): Promise<QueueRead> {
  const res = await redis.drayRead(k.priorities, k.delayed, k.reclaims, k.streamPrefix, GROUP, consumer, count, reclaimMs, 1000);
  const from = out.length;
  for (let j = 3; j < res.length; j += 2) decodeEntries(out, queue, res[j] as string, res[j + 1] as Entry[]);
  const epoch = Number(res[2]);
  confirm(out, from, epoch);
  return { due: Number(res[0]), levels: Number(res[1]), epoch };
}

/**
 * A queue with one priority level (most of them): the script only moves due messages, and a plain
 * XREADGROUP in the same round trip reads, so entries never pass through Lua. A level that appears
 * meanwhile shows in `levels`: the caller then reads with the script, so a higher level waits behind
 * at most this one batch. Undefined when the consumer group does not exist yet (the script makes it).
 */
export async function readPlain(redis: Scripted, k: QueueKeys, queue: string, consumer: string, count: number,
  out: Array<Delivery | MalformedDelivery>): Promise<QueueRead | undefined> {
  const stream = k.stream(0);
  const pipe = redis.pipeline();
  (pipe as unknown as Scripted).drayRead(k.priorities, k.delayed, k.reclaims, k.streamPrefix, GROUP, consumer, 0, 0, 1000);
  pipe.xreadgroup("GROUP", GROUP, consumer, "COUNT", count, "STREAMS", stream, ">");
  // A slot moving may redirect one of the two and not the other: see resendRedirected.
  const results = await resendRedirected(redis, (await pipe.exec()) ?? []);
  const [prepError, prep] = results[0] as [Error | null, unknown[]];
  const [readError, read] = results[1] as [Error | null, [string, Entry[]][] | null];
  if (prepError) throw new BrokerError(`redis: ${prepError.message}`, { cause: prepError });
  if (readError) {
    if (readError.message.includes("NOGROUP")) return undefined;
    throw new BrokerError(`redis: ${readError.message}`, { cause: readError });
  }
  // The counter was read before the XREADGROUP: entries new to this consumer cannot have been
  // reclaimed before they were delivered, so an earlier value only errs on the safe side.
  const epoch = Number(prep[2]);
  const from = out.length;
  if (read?.[0]) decodeEntries(out, queue, stream, read[0][1]);
  confirm(out, from, epoch);
  return { due: Number(prep[0]), levels: Number(prep[1]), epoch };
}

/**
 * When a read also reclaims: every half visibility timeout, and never within one visibility timeout
 * after Redis was away. An outage counts in every entry's idle time, so reclaiming at once would
 * take jobs from workers that hold them and only could not renew; they renew as soon as Redis is
 * back, and this worker waits for them.
 */
export class ReclaimPacing {
  #last = 0;
  #notBefore = 0;

  constructor(readonly visibilityTimeout: number) {}

  /** Redis was away (a connection dropped, a read failed): holders could not renew meanwhile. */
  redisWasAway(): void {
    this.#notBefore = Date.now() + this.visibilityTimeout;
  }

  /** Whether this read reclaims (a pass is due and Redis answers); starts the pass if so. */
  take(connected: boolean): boolean {
    const now = Date.now();
    if (!connected || now < this.#notBefore || now - this.#last < this.visibilityTimeout / 2) return false;
    this.#last = now;
    return true;
  }
}

/**
 * Each queue's priority streams, from its levels set, kept 2 s: a sender may start using a new level,
 * so they are read again now and then. An empty set is not kept (nothing sent yet).
 */
export class StreamLevels {
  readonly #byQueue = new Map<string, string[]>();

  constructor(private readonly redis: Scripted, private readonly keysOf: (queue: string) => QueueKeys) {}

  cached(queue: string): string[] | undefined {
    return this.#byQueue.get(queue);
  }

  clear(): void {
    this.#byQueue.clear();
  }

  async streams(queues: string[]): Promise<string[]> {
    const all: string[] = [];
    for (const queue of queues) {
      let streams = this.#byQueue.get(queue);
      if (!streams) {
        const k = this.keysOf(queue);
        streams = (await this.redis.smembers(k.priorities)).map((p) => k.streamPrefix + p);
        if (streams.length > 0) {
          this.#byQueue.set(queue, streams);
          setTimeout(() => this.#byQueue.delete(queue), 2_000).unref?.();
        }
      }
      all.push(...streams);
    }
    return all;
  }
}

/**
 * Jobs with a record read "running" while a worker holds them: one HSET per queue per read batch,
 * sent without waiting (the ack that removes it goes later on the same connection, so in order).
 * Each HSET carries the {@link runningPin} field too (see there).
 */
export function markRunning(redis: RedisClient, prefix: string, keysOf: (queue: string) => QueueKeys,
  out: ReadonlyArray<Delivery | MalformedDelivery>, logger: Logger | undefined): void {
  let byQueue: Map<string, string[]> | undefined;
  const now = String(Date.now());
  for (const d of out) {
    if ("malformed" in d || !d.message.tracked) continue;
    byQueue ??= new Map();
    const queue = queueOfStream(prefix, d.ref.stream);
    const fields = byQueue.get(queue) ?? [];
    fields.push(d.message.id, now);
    byQueue.set(queue, fields);
  }
  if (!byQueue) return;
  bySlotGroup(redis, [...byQueue], ([queue]) => keysOf(queue).running,
    (pipe, [queue, fields]) => pipe.hset(keysOf(queue).running, ...runningPin, ...fields))
    .catch((error) => logger?.warn({ err: error }, "marking jobs running failed"));
}
