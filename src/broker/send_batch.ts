/**
 * The parts of one enqueue call's pipeline besides the sends themselves (RedisBroker.enqueue): the
 * queue directory's SADD and the pending records of plain sends, batched per queue.
 */
import type { Message } from "../message.ts";
import { encodeRecord, pendingRecord } from "../results/record.ts";
import type { SendRequest } from "./types.ts";

/**
 * Records per MSET: large enough that the command's own cost vanishes per job, small enough that one
 * MSET never holds Redis up for long (a 50,000-job sendMany makes 100 of them).
 */
export const RECORDS_PER_MSET = 500;

/** What an enqueue pipeline holds, in order: the directory's SADD, record MSETs, then one item per send. */
export type EnqueueItem = { directory: string[] } | RecordBatch | SendRequest;

/** One MSET of pending records: key, value, key, value… of one queue, so of one slot. */
export interface RecordBatch {
  queue: string;
  pairs: string[];
}

/** The pending records of `messages`, one batch per queue and per {@link RECORDS_PER_MSET}. */
export function pendingRecords(messages: readonly Message[], keyOf: (queue: string, id: string) => string): RecordBatch[] {
  const open = new Map<string, RecordBatch>();
  const batches: RecordBatch[] = [];
  for (const message of messages) {
    let batch = open.get(message.queue);
    if (!batch || batch.pairs.length >= RECORDS_PER_MSET * 2) {
      batch = { queue: message.queue, pairs: [] };
      open.set(message.queue, batch);
      batches.push(batch);
    }
    batch.pairs.push(keyOf(message.queue, message.id), encodeRecord(pendingRecord(message)));
  }
  return batches;
}
