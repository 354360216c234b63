/**
 * MemoryBroker's read-only view of a queue: `browse` and `findJob` by the same rules as the Redis
 * broker (browse.ts), over the queue's state in memory. The cursors are Redis's too (pages.ts): the
 * memory broker's entry ids look like stream ids.
 */
import {
  compareIds, compareRunning, deadCursor, delayedCursor, jobItem, pageRequest, scanLimit, streamCursor, type Cursor,
} from "./pages.ts";
import type { BrowsedJob, BrowseOptions, DeadLetter, JobState, Page } from "./types.ts";

interface StoredEntry {
  entryId: string;
  body: string;
  retries: number;
}

interface PendingEntry {
  entry: StoredEntry;
  priority: number;
  /** Claims lost so far: it was delivered once more than that. */
  lost: number;
}

/** What this module reads of a MemoryBroker queue (its QueueState). */
export interface QueueView {
  ready: Map<number, StoredEntry[]>;
  pending: Map<string, PendingEntry>;
  delayed: Array<{ due: number; priority: number; entry: StoredEntry }>;
  dlq: DeadLetter[];
}

/** When the run of a tracked job started (the job store's running mark). */
export type StartedAt = (queue: string, id: string) => number | undefined;

/** The memory broker has one consumer: itself. */
const CONSUMER = "memory";

/** See Broker.browse. `q` is undefined for a queue the broker never saw: an empty page. */
export function browseMemory(q: QueueView | undefined, queue: string, state: JobState, options: BrowseOptions | undefined,
  startedAt: StartedAt): Page<BrowsedJob> {
  const { limit, cursor } = pageRequest(state, options);
  if (!q) return { items: [] };
  const all = listed(q, queue, state, startedAt);
  const after = cursor ? all.filter((row) => isAfter(row, cursor)) : all;
  const items = after.slice(0, limit).map((row) => row.item);
  const last = after[limit - 1];
  return after.length > limit && last ? { items, next: last.cursor } : { items };
}

interface Row {
  item: BrowsedJob;
  priority: number;
  /** Entry or letter id; for delayed, the due time and position among those due then. */
  id: string;
  due: number;
  position: number;
  /** The cursor that continues after this row. */
  cursor: string;
}

/** Every job of `state`, in browse order (the whole list: memory is small, and cheap to read). */
function listed(q: QueueView, queue: string, state: JobState, startedAt: StartedAt): Row[] {
  const row = (item: BrowsedJob, priority: number, id: string, cursor: string, due = 0, position = 0): Row =>
    ({ item, priority, id, due, position, cursor });
  switch (state) {
    case "ready":
      return [...q.ready.keys()].sort((a, b) => b - a).flatMap((p) => q.ready.get(p)!.map((e) =>
        row(jobItem("ready", queue, e.entryId, e.body, e.retries), p, e.entryId, streamCursor("ready", p, e.entryId))));
    case "running":
      return [...q.pending.values()].map((p) => ({ id: p.entry.entryId, priority: p.priority, p })).sort(compareRunning).map(({ p }) => {
        const item = runningItem(queue, p, startedAt);
        return row(item, p.priority, p.entry.entryId, streamCursor("running", p.priority, p.entry.entryId));
      });
    case "delayed":
      return sortedDelayed(q).map(({ d, position }) => {
        const item = { ...jobItem("delayed", queue, `${d.due}:${position}`, d.entry.body, d.entry.retries), dueAt: d.due };
        return row(item, d.priority, d.entry.entryId, delayedCursor(String(d.due), position + 1), d.due, position);
      });
    default:
      return [...q.dlq].reverse().map((l) => row(deadItem(l), 0, l.id, deadCursor(l.id)));
  }
}

function runningItem(queue: string, p: PendingEntry, startedAt: StartedAt): BrowsedJob {
  const item: BrowsedJob = {
    ...jobItem("running", queue, p.entry.entryId, p.entry.body, p.entry.retries), consumer: CONSUMER, deliveries: p.lost + 1,
  };
  const since = "raw" in item.message ? undefined : startedAt(queue, item.id);
  if (since !== undefined) item.startedAt = since;
  return item;
}

/** Soonest due first, ties in the order they were added; each with its position among those due at that time. */
function sortedDelayed(q: QueueView): Array<{ d: QueueView["delayed"][number]; position: number }> {
  const sorted = [...q.delayed].sort((a, b) => a.due - b.due || compareIds(a.entry.entryId, b.entry.entryId));
  let position = 0;
  return sorted.map((d, n) => {
    position = n > 0 && sorted[n - 1]!.due === d.due ? position + 1 : 0;
    return { d, position };
  });
}

function deadItem(l: DeadLetter): BrowsedJob {
  const id = "raw" in l.message ? l.id : l.message.id;
  return { state: "dead", id, ref: l.id, queue: l.queue, message: l.message, retries: l.retries, error: l.error, deadAt: l.at };
}

function isAfter(row: Row, cursor: Cursor): boolean {
  switch (cursor.state) {
    case "ready":
      return row.priority < cursor.priority || (row.priority === cursor.priority && compareIds(row.id, cursor.id) > 0);
    case "running":
      return compareRunning(row, cursor) > 0;
    case "delayed": {
      const score = Number(cursor.score);
      return row.due > score || (row.due === score && row.position >= cursor.skip);
    }
    default:
      return compareIds(row.id, cursor.id) < 0;
  }
}

/**
 * See Broker.findJob: the lists in the order the Redis broker looks (each level's stream, ready and
 * running entries by id, then the delayed set, then the dead letters oldest first), `scanLimit` each.
 */
export function findInMemory(q: QueueView | undefined, queue: string, id: string, startedAt: StartedAt,
  options: { scanLimit?: number } = {}): BrowsedJob | undefined {
  const limit = scanLimit(options.scanLimit);
  if (!q) return undefined;
  const levels = [...new Set([...q.ready.keys(), ...[...q.pending.values()].map((p) => p.priority)])].sort((a, b) => b - a);
  for (const level of levels) {
    const stream = [
      ...(q.ready.get(level) ?? []).map((e) => ({ e, item: () => jobItem("ready", queue, e.entryId, e.body, e.retries) })),
      ...[...q.pending.values()].filter((p) => p.priority === level).map((p) => ({ e: p.entry, item: () => runningItem(queue, p, startedAt) })),
    ].sort((a, b) => compareIds(a.e.entryId, b.e.entryId)).slice(0, limit);
    for (const { item } of stream) {
      const found = item();
      if (found.id === id && !("raw" in found.message)) return found;
    }
  }
  for (const { d, position } of sortedDelayed(q).slice(0, limit)) {
    const found = jobItem("delayed", queue, `${d.due}:${position}`, d.entry.body, d.entry.retries);
    if (found.id === id && !("raw" in found.message)) return { ...found, dueAt: d.due };
  }
  for (const letter of q.dlq.slice(0, limit)) {
    if (!("raw" in letter.message) && letter.message.id === id) return deadItem(letter);
  }
  return undefined;
}
