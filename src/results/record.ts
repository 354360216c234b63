import type { SerializedError } from "../errors.ts";
import type { Delivery, Message } from "../message.ts";
import type { JobRecord, JobStatus } from "./types.ts";

/** The record a sender writes with the message: queued, or delayed until `dueAt`. */
export function pendingRecord(message: Message, dueAt?: number): JobRecord {
  const record: JobRecord = {
    id: message.id, actor: message.actor, queue: message.queue,
    status: dueAt !== undefined ? "delayed" : "queued",
    enqueuedAt: message.sentAt, attempts: 0,
  };
  if (dueAt !== undefined) record.dueAt = dueAt;
  return record;
}

export interface SettledFields {
  startedAt?: number | undefined;
  result?: unknown;
  error?: SerializedError | undefined;
  /** For a job going back to the delayed set. */
  dueAt?: number | undefined;
}

/** The record a worker writes when it settles a delivery; built from the message, no read needed. */
export function settledRecord(delivery: Delivery, status: JobStatus, fields: SettledFields = {}): JobRecord {
  const { message } = delivery;
  const now = Date.now();
  const record: JobRecord = {
    id: message.id, actor: message.actor, queue: message.queue, status,
    enqueuedAt: message.sentAt,
    attempts: fields.startedAt !== undefined ? delivery.retries + 1 : delivery.retries,
  };
  if (fields.startedAt !== undefined) record.startedAt = fields.startedAt;
  if (status === "delayed") record.dueAt = fields.dueAt ?? now;
  else record.finishedAt = now;
  if (fields.result !== undefined) record.result = fields.result;
  if (fields.error) record.error = fields.error;
  return record;
}

export function encodeRecord(record: JobRecord): string {
  return JSON.stringify(record);
}

export function decodeRecord(raw: string | null | undefined): JobRecord | undefined {
  if (!raw) return undefined;
  try {
    const r = JSON.parse(raw) as JobRecord;
    return typeof r === "object" && r !== null && typeof r.status === "string" ? r : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The status a reader should see: a worker's claim makes a pending job "running" (the claim lives
 * apart from the record so that starting a job costs no write per job), and a delayed job whose time
 * has come is queued again.
 */
export function liveRecord(record: JobRecord, runningSince: number | undefined, now = Date.now()): JobRecord {
  if (record.status !== "queued" && record.status !== "delayed") return record;
  if (runningSince !== undefined) return { ...record, status: "running", startedAt: runningSince };
  if (record.status === "delayed" && (record.dueAt ?? 0) <= now) return { ...record, status: "queued" };
  return record;
}

/** UTF-8 size of a value's JSON, counting exactly only when the quick bound says it might matter. */
export function jsonBytes(json: string, cap: number): number {
  if (json.length * 3 <= cap) return json.length;
  return new TextEncoder().encode(json).byteLength;
}
