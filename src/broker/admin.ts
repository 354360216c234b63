import type { QueueKeys } from "./keys.ts";
import { actorsKey, GROUP, queuesKey } from "./keys.ts";
import { decodeMessage } from "../message.ts";
import { bySlotGroup, execPipeline, fieldsOf, valuesOf, type Entry, type Scripted } from "./connection.ts";
import type { ActorMeta, DeadLetter, QueueStats } from "./types.ts";

/** The operator's side of a queue: dead letters and counts, and the actor directory. Not on the hot path. */

/**
 * Which queue each actor's jobs go to, so that `sendTask(name)` can route without the actor's module:
 * one HSET and one SADD, each key in a slot of its own (pipelined together where they share a node).
 */
export async function publishActors(redis: Scripted, prefix: string, actors: ActorMeta[]): Promise<void> {
  if (actors.length === 0) return;
  const directory = actors.flatMap((a) => [a.name, JSON.stringify({ queue: a.queue, priority: a.priority })]);
  const queues = [...new Set(actors.map((a) => a.queue))];
  const replies = await bySlotGroup(redis, [actorsKey(prefix), queuesKey(prefix)], (key) => key, (pipe, key) => {
    if (key === actorsKey(prefix)) pipe.hset(key, ...directory);
    else pipe.sadd(key, ...queues);
  });
  for (const r of replies) valuesOf(r);
}

export async function lookupActor(redis: Scripted, prefix: string, name: string): Promise<ActorMeta | undefined> {
  const raw = await redis.hget(actorsKey(prefix), name);
  if (!raw) return undefined;
  const meta = JSON.parse(raw) as { queue: string; priority: number };
  return { name, queue: meta.queue, priority: meta.priority };
}

export async function listDeadLetters(redis: Scripted, k: QueueKeys, queue: string, limit: number): Promise<DeadLetter[]> {
  const entries = (await redis.xrange(k.dlq, "-", "+", "COUNT", limit)) as Entry[];
  return entries.map(([id, fields]) => {
    const raw = fieldsOf(fields);
    let message: DeadLetter["message"];
    try {
      message = decodeMessage(raw.m, queue);
    } catch {
      message = { raw: raw.m ?? "" };
    }
    return { id, queue, message, retries: Number(raw.r ?? 0), error: JSON.parse(raw.e ?? "{}"), at: Number(raw.at ?? 0) };
  });
}

/** Moves dead letters back to their streams (all of them when `ids` is omitted), 500 per script call. */
export async function requeueDeadLetters(redis: Scripted, k: QueueKeys, ids?: string[]): Promise<number> {
  // The script makes a job's record and id keys from these prefixes (same hash tag as the dlq).
  const requeue = (entryIds: string[]) => redis.drayRequeue(k.dlq, k.priorities, k.streamPrefix, k.job(""), k.dedup(""), ...entryIds);
  if (ids) return await requeue(ids);
  let total = 0;
  // Paged past the last id seen: letters whose jobId a newer job holds stay (see REQUEUE).
  for (let from = "-"; ;) {
    const batch = ((await redis.xrange(k.dlq, from, "+", "COUNT", 500)) as Entry[]).map((e) => e[0]);
    if (batch.length === 0) return total;
    total += await requeue(batch);
    from = `(${batch[batch.length - 1]}`;
  }
}

/** Removes the letters with these ids (those that exist; returns how many), or the whole dlq. */
export async function purgeDeadLetters(redis: Scripted, k: QueueKeys, ids?: string[]): Promise<number> {
  if (ids) {
    // What is not an entry id names no letter; XDEL would refuse the whole call for it.
    const letters = ids.filter((id) => /^\d+-\d+$/.test(id));
    return letters.length > 0 ? await redis.xdel(k.dlq, ...letters) : 0;
  }
  const [n] = await execPipeline(redis.multi().xlen(k.dlq).del(k.dlq));
  return Number(n);
}

export async function queueStats(redis: Scripted, k: QueueKeys, queue: string): Promise<QueueStats> {
  return (await queueStatsMany(redis, [k], [queue]))[0]!;
}

/**
 * The counts of many queues in one round trip however many there are: a STATS script per queue
 * (browse_scripts.ts), all sent at once. Separate commands rather than one pipeline, so that in a
 * cluster each goes to the node of its queue's slot. `dray queues`, /metrics and the dashboard ask
 * for every queue, every second or so.
 */
export async function queueStatsMany(redis: Scripted, keys: QueueKeys[], queues: string[]): Promise<QueueStats[]> {
  return await Promise.all(keys.map(async (k, i): Promise<QueueStats> => {
    const [ready = 0, running = 0, delayed = 0, dead = 0] = await redis.drayStats(k.priorities, k.delayed, k.dlq, k.streamPrefix, GROUP);
    return { queue: queues[i]!, ready: Number(ready), running: Number(running), delayed: Number(delayed), dead: Number(dead) };
  }));
}
