import type { QueueKeys } from "./keys.ts";
import { GROUP } from "./keys.ts";
import { decodeMessage } from "../message.ts";
import { execPipeline, fieldsOf, type Entry, type Scripted } from "./connection.ts";
import type { DeadLetter, QueueStats } from "./types.ts";

/** The operator's side of a queue: dead letters and counts. Not on the hot path. */

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
  const prios = await redis.smembers(k.priorities);
  let ready = 0;
  let running = 0;
  for (const p of prios) {
    const stream = k.stream(Number(p));
    const [len, pending] = await Promise.all([
      redis.xlen(stream),
      redis.xpending(stream, GROUP).catch(() => [0]) as Promise<unknown[]>,
    ]);
    running += Number(pending[0] ?? 0);
    ready += len - Number(pending[0] ?? 0);
  }
  const [delayed, dead] = await Promise.all([redis.zcard(k.delayed), redis.xlen(k.dlq)]);
  return { queue, ready, running, delayed, dead };
}
