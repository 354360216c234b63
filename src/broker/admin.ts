import type { QueueKeys } from "./keys.ts";
import { actorsKey, GROUP, queuesKey } from "./keys.ts";
import { decodeMessage } from "../message.ts";
import { execPipeline, fieldsOf, type Entry, type Scripted } from "./connection.ts";
import type { ActorMeta, DeadLetter, QueueStats } from "./types.ts";

/** The operator's side of a queue: dead letters and counts, and the actor directory. Not on the hot path. */

/** Which queue each actor's jobs go to, so that `sendTask(name)` can route without the actor's module. */
export async function publishActors(redis: Scripted, prefix: string, actors: ActorMeta[]): Promise<void> {
  if (actors.length === 0) return;
  const pipe = redis.pipeline();
  for (const a of actors) {
    pipe.hset(actorsKey(prefix), a.name, JSON.stringify({ queue: a.queue, priority: a.priority }));
    pipe.sadd(queuesKey(prefix), a.queue);
  }
  await execPipeline(pipe);
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

export async function purgeDeadLetters(redis: Scripted, k: QueueKeys): Promise<number> {
  const [n] = await execPipeline(redis.multi().xlen(k.dlq).del(k.dlq));
  return Number(n);
}

export async function queueStats(redis: Scripted, k: QueueKeys, queue: string): Promise<QueueStats> {
  return (await queueStatsMany(redis, [k], [queue]))[0]!;
}

/**
 * The counts of many queues in two round trips however many there are: per queue a pipeline of its
 * levels, delayed set and dead letters, then one of each level's length and pending count. A queue's
 * pipelines touch only its own slot; all queues' are sent at once. `dray queues` and /metrics ask
 * for every queue, every second or so.
 */
export async function queueStatsMany(redis: Scripted, keys: QueueKeys[], queues: string[]): Promise<QueueStats[]> {
  return await Promise.all(keys.map(async (k, i): Promise<QueueStats> => {
    const [prios, delayed, dead] = await execPipeline(redis.pipeline().smembers(k.priorities).zcard(k.delayed).xlen(k.dlq));
    let ready = 0;
    let running = 0;
    const levels = prios as string[];
    if (levels.length > 0) {
      const pipe = redis.pipeline();
      for (const p of levels) pipe.xlen(k.stream(Number(p))).xpending(k.stream(Number(p)), GROUP);
      const replies = (await pipe.exec()) ?? [];
      for (let n = 0; n < levels.length; n++) {
        const len = Number(replies[2 * n]?.[1] ?? 0);
        // No group yet (nothing was ever read) is an error reply: nothing pending.
        const pending = Number((replies[2 * n + 1]?.[1] as unknown[] | undefined)?.[0] ?? 0);
        running += pending;
        ready += len - pending;
      }
    }
    return { queue: queues[i]!, ready, running, delayed: Number(delayed), dead: Number(dead) };
  }));
}
