/**
 * What a consumer does with the entries it holds, by lease: finish them (ack), renew them, find the
 * ones a lost reply left it holding unseen, and leave the group. Every step checks that this consumer
 * still holds the entry (see the ACK, RENEW and PRUNE scripts): a lease that lapsed belongs to the
 * worker that reclaimed it. The scripts are in lease_scripts.ts.
 */
import { encodeRecord } from "../results/record.ts";
import { isCluster } from "./cluster.ts";
import { bySlotGroup, execPipeline, decodeEntries, valuesOf, type Entry, type RedisClient, type Scripted } from "./connection.ts";
import { GROUP, queueOfStream, type QueueKeys } from "./keys.ts";
import type { Delivery, DeliveryRef, MalformedDelivery } from "../message.ts";
import type { Acked } from "./types.ts";

/** Stream entry ids compare as "<ms>-<seq>" pairs, not as strings. */
function compareIds(a: string, b: string): number {
  const [am = "0", as = "0"] = a.split("-");
  const [bm = "0", bs = "0"] = b.split("-");
  return Number(am) - Number(bm) || Number(as) - Number(bs);
}

/** The lowest and highest of `ids`: one XPENDING over that range finds which of them this consumer holds. */
function idRange(ids: string[]): [string, string] {
  let lo = ids[0]!;
  let hi = lo;
  for (const id of ids) {
    if (compareIds(id, lo) < 0) lo = id;
    if (compareIds(id, hi) > 0) hi = id;
  }
  return [lo, hi];
}

/** Groups items by a key, keeping first-seen order. */
function groupBy<T>(items: Iterable<T>, key: (item: T) => string): Map<string, T[]> {
  const out = new Map<string, T[]>();
  for (const item of items) {
    const k = key(item);
    const list = out.get(k);
    if (list) list.push(item);
    else out.set(k, [item]);
  }
  return out;
}

/** SETTLE's last arguments: the consumer that must hold the entry, and on a Cluster the flag to SPUBLISH. */
export const settleTail = (redis: RedisClient, consumer: string): string[] => (isCluster(redis) ? [consumer, "1"] : [consumer]);

/**
 * Acks a batch: one ACK script per queue (its keys share a slot), pipelined (per node on a Cluster).
 * The queue is the one whose stream holds the entry (`keysOf` its ref), not the one its message names.
 * Returns the refs that this consumer no longer held, which nothing was done for.
 */
export async function ackBatch(redis: Scripted, keysOf: (ref: DeliveryRef) => QueueKeys, consumer: string,
  done: Acked[]): Promise<DeliveryRef[]> {
  const queues = [...groupBy(done, (a) => keysOf(a.delivery.ref).running).values()];
  const results = await bySlotGroup(redis, queues, (jobs) => keysOf(jobs[0]!.delivery.ref).running, (pipe, jobs) => {
    const k = keysOf(jobs[0]!.delivery.ref);
    // The oldest confirmation of the batch: the ACK script checks no entry when none changed hands since.
    let confirmed = Infinity;
    for (const a of jobs) confirmed = Math.min(confirmed, a.delivery.ref.epoch ?? -1);
    const args: Array<string | number> = [GROUP, consumer, k.done, confirmed, isCluster(redis) ? "1" : "0", k.job(""), k.dedup("")];
    for (const [stream, list] of groupBy(jobs, (a) => a.delivery.ref.stream)) {
      args.push(stream, list.length);
      for (const { delivery, keepMs, record } of list) {
        const { message } = delivery;
        const kept = record !== undefined && keepMs > 0;
        const touch = message.tracked || kept;
        args.push(delivery.ref.entryId, message.id, message.dedup ? "1" : "", touch ? "1" : "",
          kept ? encodeRecord(record) : "", keepMs, record?.status === "aborted" ? "1" : "0");
      }
    }
    pipe.drayAck(k.running, k.aborted, k.reclaims, ...args);
  });
  const lost: DeliveryRef[] = [];
  results.forEach((replies, n) => {
    const [ids] = valuesOf(replies) as [string[]];
    if (ids.length === 0) return;
    const missing = new Set(ids);
    for (const a of queues[n]!) if (missing.has(a.delivery.ref.entryId)) lost.push(a.delivery.ref);
  });
  return lost;
}

/**
 * Renews the leases of `refs`, one RENEW script per stream, pipelined (per node on a Cluster). Returns
 * the lost ones; the others are confirmed at the queue's reclaims counter of that moment (`epoch`,
 * see the ACK script).
 */
export async function renewLeases(redis: Scripted, consumer: string, refs: DeliveryRef[],
  reclaimsKey: (stream: string) => string): Promise<DeliveryRef[]> {
  if (refs.length === 0) return [];
  const streams = [...groupBy(refs, (r) => r.stream)];
  const results = await bySlotGroup(redis, streams, ([stream]) => stream, (pipe, [stream, list]) => {
    const ids = list.map((r) => r.entryId);
    pipe.drayRenew(stream, reclaimsKey(stream), GROUP, consumer, ...idRange(ids), ...ids);
  });
  const lost: DeliveryRef[] = [];
  streams.forEach(([, list], n) => {
    const [[epoch, ...missingIds]] = valuesOf(results[n]!) as [[number, ...string[]]];
    const missing = new Set(missingIds);
    for (const r of list) {
      if (missing.has(r.entryId)) lost.push(r);
      else r.epoch = Number(epoch);
    }
  });
  return lost;
}

/**
 * Entries of `streams` pending for this consumer that the caller does not hold: a read's reply was
 * lost with its connection. They are claimed again by this consumer with JUSTID (which neither counts
 * a delivery nor a lost claim) and read back.
 */
export async function recoverOwn(redis: Scripted, prefix: string, consumer: string, streams: string[],
  holds: (ref: DeliveryRef) => boolean): Promise<Array<Delivery | MalformedDelivery>> {
  const out: Array<Delivery | MalformedDelivery> = [];
  for (const stream of streams) {
    let pending: Array<[string, string, number, number]>;
    try {
      pending = (await redis.xpending(stream, GROUP, "-", "+", 1000, consumer)) as Array<[string, string, number, number]>;
    } catch (error) {
      // No group on this stream (yet, or any more after a Redis that kept nothing restarted): nothing held.
      if (String(error).includes("NOGROUP")) continue;
      throw error;
    }
    const orphans = pending.map((p) => p[0]).filter((entryId) => !holds({ stream, entryId }));
    if (orphans.length === 0) continue;
    const pipe = redis.pipeline();
    pipe.xclaim(stream, GROUP, consumer, 0, ...orphans, "JUSTID");
    for (const id of orphans) pipe.xrange(stream, id, id);
    const [, ...ranges] = await execPipeline(pipe);
    for (const entries of ranges as Entry[][]) decodeEntries(out, queueOfStream(prefix, stream), stream, entries);
  }
  return out;
}

/**
 * Removes consumers that hold nothing from the groups of `streams` (the PRUNE script): with `idleMs`
 * 0 this consumer itself (a worker leaving), else the others idle longer than that (workers gone).
 */
export async function pruneConsumers(redis: Scripted, consumer: string, streams: string[], idleMs: number): Promise<void> {
  if (streams.length === 0) return;
  const results = await bySlotGroup(redis, streams, (stream) => stream, (pipe, stream) => pipe.drayPrune(stream, GROUP, consumer, idleMs));
  for (const replies of results) valuesOf(replies);
}
