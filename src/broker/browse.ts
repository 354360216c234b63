/**
 * RedisBroker's read-only view of a queue for the dashboard and the CLI: a page of the jobs in one
 * state, and one job found by id. Plain commands, pipelined per step: nothing here needs to be atomic
 * (a page is a snapshot that workers change under it anyway). The running page, which a dashboard
 * refreshes every 2 s, is one script (RUNNING, browse_scripts.ts), so that it is one round trip.
 * Each page reads only what it lists (COUNT, LIMIT = the page size, one more to tell whether a next
 * page exists), never a whole list. Finding a job by id scans, in Redis (the FIND script,
 * browse_scripts.ts).
 */
import { execAt, fieldsOf, type Entry, type Scripted } from "./connection.ts";
import { GROUP, type QueueKeys } from "./keys.ts";
import {
  compareIds, deadCursor, delayedCursor, jobItem, pageRequest, scanLimit, streamCursor, type Cursor,
} from "./pages.ts";
import type { SerializedError } from "../errors.ts";
import type { BrowsedJob, BrowseOptions, JobState, Page } from "./types.ts";

type Reply = [Error | null, unknown][];

/** See Broker.browse. */
export async function browseQueue(redis: Scripted, k: QueueKeys, queue: string, state: JobState,
  options?: BrowseOptions): Promise<Page<BrowsedJob>> {
  const { limit, cursor } = pageRequest(state, options);
  switch (state) {
    case "ready": return await readyPage(redis, k, queue, limit, cursor as Extract<Cursor, { state: "ready" }> | undefined);
    case "running": return await runningPage(redis, k, queue, limit, cursor as Extract<Cursor, { state: "running" }> | undefined);
    case "delayed": return await delayedPage(redis, k, queue, limit, cursor as Extract<Cursor, { state: "delayed" }> | undefined);
    default: return await deadPage(redis, k, queue, limit, cursor as Extract<Cursor, { state: "dead" }> | undefined);
  }
}

/** The queue's priority levels, highest first; with `atMost`, only those not above it. */
async function levels(redis: Scripted, k: QueueKeys, atMost = Infinity): Promise<number[]> {
  return (await redis.smembers(k.priorities)).map(Number).filter((p) => p <= atMost).sort((a, b) => b - a);
}

/**
 * Entries after the group's last-delivered id are ready: the group hands out entries in id order, and
 * what it handed out is pending until settled, then deleted. A stream no one read has no group yet:
 * all of it is ready. Page by page: the levels from the cursor's down, each after the cursor's entry
 * (so a job sent meanwhile to a level above the cursor's shows on the first page, not a later one).
 */
async function readyPage(redis: Scripted, k: QueueKeys, queue: string, limit: number,
  cursor: { priority: number; id: string } | undefined): Promise<Page<BrowsedJob>> {
  const prios = await levels(redis, k, cursor?.priority);
  if (prios.length === 0) return { items: [] };
  const info = await execAt(redis, k.priorities, (pipe) => prios.forEach((p) => pipe.xinfo("GROUPS", k.stream(p))));
  const starts: Array<[number, string]> = [];
  prios.forEach((p, n) => {
    const [error, groups] = info[n] ?? [null, undefined];
    if (error) return; // no stream at this level (ERR no such key)
    let from = lastDelivered(groups);
    if (cursor && p === cursor.priority && (!from || compareIds(cursor.id, from) > 0)) from = cursor.id;
    starts.push([p, from ? `(${from}` : "-"]);
  });
  const pipe = redis.pipeline();
  for (const [p, start] of starts) pipe.xrange(k.stream(p), start, "+", "COUNT", limit + 1);
  const replies = (await sent(pipe)) ?? [];
  const found: Array<{ priority: number; entry: Entry }> = [];
  starts.forEach(([priority], n) => {
    for (const entry of (replies[n]?.[1] ?? []) as Entry[]) found.push({ priority, entry });
  });
  const items = found.slice(0, limit).map(({ entry: [id, fields] }) => {
    const raw = fieldsOf(fields);
    return jobItem("ready", queue, id, raw.m, Number(raw.r ?? 0) || 0);
  });
  const last = found[limit - 1];
  return found.length > limit && last ? { items, next: streamCursor("ready", last.priority, last.entry[0]) } : { items };
}

/** The last-delivered-id of dray's group in an XINFO GROUPS reply; undefined without that group. */
function lastDelivered(groups: unknown): string | undefined {
  for (const group of (groups ?? []) as unknown[][]) {
    const f: Record<string, unknown> = {};
    for (let i = 0; i + 1 < group.length; i += 2) f[String(group[i])] = group[i + 1];
    if (f.name === GROUP) return String(f["last-delivered-id"]);
  }
  return undefined;
}

/**
 * Pending entries of every level, oldest entry first (the order they were handed out, but for
 * reclaims, which keep their entry), merged across levels, with consumer, deliveries and when each
 * tracked job's run started: one RUNNING script (browse_scripts.ts), so one round trip.
 */
async function runningPage(redis: Scripted, k: QueueKeys, queue: string, limit: number,
  cursor: { priority: number; id: string } | undefined): Promise<Page<BrowsedJob>> {
  const [more, rows] = await redis.drayRunning(k.priorities, k.running, k.streamPrefix, GROUP, limit,
    cursor ? String(cursor.priority) : "", cursor?.id ?? "");
  const items = rows.map((row): BrowsedJob => {
    const [, id, consumer, deliveries, fields, startedAt] = row as [string, string, string, number, string[], string];
    const raw = fieldsOf(fields);
    const item: BrowsedJob = {
      ...jobItem("running", queue, id, raw.m, Number(raw.r ?? 0) || 0), consumer, deliveries: Number(deliveries),
    };
    // Only a body that decodes names a job whose run can be tracked.
    if (startedAt && !("raw" in item.message)) item.startedAt = Number(startedAt);
    return item;
  });
  const last = rows[limit - 1];
  return more === 1 && last ? { items, next: streamCursor("running", Number(last[0]), String(last[1])) } : { items };
}

/**
 * Soonest due first; members due at the same ms in member order (Redis's). The cursor names the last
 * item's score and how many at that score were listed, so what became due (moved to a stream) or was
 * added at another time since shifts nothing: the rest at that score, then everything later.
 */
async function delayedPage(redis: Scripted, k: QueueKeys, queue: string, limit: number,
  cursor: { score: string; skip: number } | undefined): Promise<Page<BrowsedJob>> {
  let flat: string[];
  if (!cursor) {
    flat = await redis.zrangebyscore(k.delayed, "-inf", "+inf", "WITHSCORES", "LIMIT", 0, limit + 1);
  } else {
    const [same, later] = (await sent(redis.pipeline()
      .zrangebyscore(k.delayed, cursor.score, cursor.score, "WITHSCORES", "LIMIT", cursor.skip, limit + 1)
      .zrangebyscore(k.delayed, `(${cursor.score}`, "+inf", "WITHSCORES", "LIMIT", 0, limit + 1))) ?? [];
    flat = [...((same?.[1] ?? []) as string[]), ...((later?.[1] ?? []) as string[])];
  }
  const found: Array<{ member: string; score: string; position: number }> = [];
  for (let i = 0; i + 1 < flat.length && found.length <= limit; i += 2) {
    const score = flat[i + 1]!;
    const prev = found[found.length - 1];
    const position = prev?.score === score ? prev.position + 1 : score === cursor?.score ? cursor.skip : 0;
    found.push({ member: flat[i]!, score, position });
  }
  const items = found.slice(0, limit).map(({ member, score, position }) => delayedItem(queue, member, score, position));
  const last = found[limit - 1];
  return found.length > limit && last ? { items, next: delayedCursor(last.score, last.position + 1) } : { items };
}

/** A delayed-set member "<priority>|<retries>|<message JSON>" (scripts.ts); another is a bare body. */
function delayedItem(queue: string, member: string, score: string, position: number): BrowsedJob {
  const parts = /^-?\d+\|(\d+)\|([\s\S]*)$/.exec(member);
  const item = jobItem("delayed", queue, `${score}:${position}`, parts ? parts[2] : member, parts ? Number(parts[1]) : 0);
  return { ...item, dueAt: Number(score) };
}

/** Newest first, as an operator looks for what just died. */
async function deadPage(redis: Scripted, k: QueueKeys, queue: string, limit: number,
  cursor: { id: string } | undefined): Promise<Page<BrowsedJob>> {
  const entries = (await redis.xrevrange(k.dlq, cursor ? `(${cursor.id}` : "+", "-", "COUNT", limit + 1)) as Entry[];
  const items = entries.slice(0, limit).map(([id, fields]) => deadItem(queue, id, fields));
  const last = entries[limit - 1];
  return entries.length > limit && last ? { items, next: deadCursor(last[0]) } : { items };
}

function deadItem(queue: string, id: string, fields: string[] | null): BrowsedJob {
  const raw = fieldsOf(fields);
  return { ...jobItem("dead", queue, id, raw.m, Number(raw.r ?? 0) || 0), error: errorOf(raw.e), deadAt: Number(raw.at ?? 0) };
}

/** A letter's error field; one a foreign writer left unreadable still shows, as its text. */
function errorOf(text: string | undefined): SerializedError {
  try {
    const e = JSON.parse(text ?? "") as SerializedError | null;
    if (e && typeof e === "object" && typeof e.name === "string") return e;
  } catch {
    // not JSON: shown as it is
  }
  return { name: "Error", message: text ?? "" };
}

/**
 * See Broker.findJob. One FIND script per list, sent together (each touches one list of the queue's
 * slot): every stream, highest level first, then the delayed set, then the dead letters. The first
 * list in that order that holds the id wins: a job sent again after it died is found alive.
 */
export async function findJob(redis: Scripted, k: QueueKeys, queue: string, id: string,
  options: { scanLimit?: number } = {}): Promise<BrowsedJob | undefined> {
  const limit = scanLimit(options.scanLimit);
  const prios = await levels(redis, k);
  const quoted = JSON.stringify(id);
  const find = (kind: string, key: string, running: string) => redis.drayFind(key, running, kind, GROUP, id, quoted, limit);
  const [delayed, dead, ...streams] = await Promise.all([
    find("delayed", k.delayed, k.none), find("dlq", k.dlq, k.none), ...prios.map((p) => find("stream", k.stream(p), k.running)),
  ]);
  for (const hit of streams) {
    if (!hit) continue;
    const [entryId, fields, consumer, deliveries, startedAt] = hit as [string, string[], string, number, string];
    const raw = fieldsOf(fields);
    const item = jobItem(consumer ? "running" : "ready", queue, entryId, raw.m, Number(raw.r ?? 0) || 0);
    if (!consumer) return item;
    return { ...item, consumer, deliveries: Number(deliveries), ...(startedAt ? { startedAt: Number(startedAt) } : {}) };
  }
  if (delayed) {
    const [member, score, position] = delayed as [string, string, number];
    return delayedItem(queue, member, score, Number(position));
  }
  if (dead) {
    const [entryId, fields] = dead as [string, string[]];
    return deadItem(queue, entryId, fields);
  }
  return undefined;
}

/** A pipeline's replies, errors included (a missing stream or group is an answer here, not a failure). */
async function sent(pipe: { exec(): Promise<Reply | null> }): Promise<Reply | null> {
  return await pipe.exec();
}
