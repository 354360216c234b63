import { ConfigError, MalformedMessageError } from "./errors.ts";

/**
 * A message as it travels through Redis. It is immutable once sent: the retry count lives beside it
 * (a stream field, a prefix of the delayed-set member) so that a requeue can reset it without
 * rewriting the message.
 */
/** What an actor, queue or cron name may be: 1-200 letters, digits and _ . : - (they end up in keys). */
export const NAME_PATTERN = /^[A-Za-z0-9_.:-]{1,200}$/;

export interface Message {
  /** Job id: the `jobId` given to `send()`, or a random UUID. */
  id: string;
  actor: string;
  queue: string;
  payload: unknown;
  /** Higher runs first within the queue. */
  priority: number;
  /** When it was first sent (ms since epoch); `maxAge` is measured from here. */
  sentAt: number;
  /** Whether a dedup key was claimed for `id` (it is released when the job settles). */
  dedup?: boolean;
  /** Set on jobs a cron tick enqueued: which cron, and the tick (ms since epoch). */
  cron?: { name: string; tick: number };
  /** The sender wrote a job record (`{p:q}:job:<id>`) beside the message: its actor keeps results. */
  tracked?: boolean;
  /** JSON set by `beforeEnqueue` middleware; `beforeProcess` middleware read it into `ctx.meta`. */
  meta?: Record<string, unknown>;
  /** The pipeline steps after this one; the next is sent when this job completes (src/pipeline.ts). */
  pipe?: PipeStep[];
  /** Set on the members of a group (src/group.ts): the group's id and how many jobs it has. */
  group?: { id: string; size: number };
}

/** A pipeline step still to come. Without `payload`, it gets the previous step's return value. */
export interface PipeStep {
  id: string;
  actor: string;
  queue: string;
  priority: number;
  payload?: unknown;
  tracked?: boolean;
}

/** A message handed to this consumer, with what is needed to settle it. */
export interface Delivery {
  message: Message;
  /** Attempts already made before this delivery (0 on the first). */
  retries: number;
  /**
   * Claims on this delivery the broker took back after the visibility timeout: each time, the
   * consumer holding it died (or stalled) without settling it. Absent when none.
   */
  lost?: number;
  /** Broker-specific locator (stream key and entry id for Redis). */
  ref: DeliveryRef;
}

export interface DeliveryRef {
  stream: string;
  entryId: string;
  /** Which claim on the entry this is, for brokers that tell claims apart by more than the consumer (memory). */
  claim?: number;
  /**
   * Redis: the queue's reclaims counter when this consumer last confirmed it holds the entry (read or
   * renewed it); the broker updates it. See the ACK script.
   */
  epoch?: number;
}

/** A stream entry that could not be decoded: it still has to be dead-lettered and acked. */
export interface MalformedDelivery {
  malformed: true;
  raw: Record<string, string>;
  error: MalformedMessageError;
  ref: DeliveryRef;
  queue: string;
}

/** The one place a message becomes JSON; a payload that cannot is refused with a ConfigError. */
export function encodeMessage(message: Message): string {
  const t = typeof message.payload;
  if (t === "function" || t === "symbol") {
    throw new ConfigError(`payload for "${message.actor}" is not JSON-serializable (a ${t})`);
  }
  try {
    return JSON.stringify(message);
  } catch (error) {
    throw new ConfigError(`payload for "${message.actor}" is not JSON-serializable: ${(error as Error).message}`, { cause: error });
  }
}

/**
 * Validates and normalises in place and returns the parsed object itself: fields this version does
 * not know (a newer sender's, during a rolling upgrade) ride along, so a retry, dead letter or give
 * back re-encodes them. In place because this runs for every job; a copy would cost as much again.
 */
export function decodeMessage(raw: string | undefined, queue: string): Message {
  if (raw === undefined) throw new MalformedMessageError(`entry has no "m" field`);
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch (error) {
    throw new MalformedMessageError(`entry is not JSON: ${String(raw).slice(0, 80)}`, { cause: error });
  }
  const m = value as Partial<Message> | null;
  if (typeof m !== "object" || m === null) throw new MalformedMessageError("entry is not an object");
  if (typeof m.id !== "string" || m.id === "") throw new MalformedMessageError("message has no id");
  if (typeof m.actor !== "string" || m.actor === "") throw new MalformedMessageError("message has no actor");
  if (typeof m.sentAt !== "number") throw new MalformedMessageError("message has no sentAt");
  if (m.pipe !== undefined && !(Array.isArray(m.pipe) && m.pipe.every(isPipeStep))) {
    throw new MalformedMessageError("message has a malformed pipeline (pipe)");
  }
  // Foreign writers may leave these out; dray's senders always write them, so these rarely assign.
  if (typeof m.queue !== "string") m.queue = queue;
  if (typeof m.priority !== "number") m.priority = 0;
  // Absent rather than false, empty or malformed: middleware tests presence (`if (!message.cron)`).
  // dray's senders write these well-formed or not at all, so the deletes stay off the common path.
  if (m.dedup !== undefined && m.dedup !== true) normaliseFlag(m, "dedup");
  if (m.tracked !== undefined && m.tracked !== true) normaliseFlag(m, "tracked");
  if (m.cron !== undefined && !(typeof m.cron?.name === "string" && typeof m.cron.tick === "number")) delete m.cron;
  if (m.group !== undefined && !(typeof m.group?.id === "string" && typeof m.group.size === "number")) delete m.group;
  if (m.meta !== undefined && !(typeof m.meta === "object" && m.meta !== null && !Array.isArray(m.meta))) delete m.meta;
  if (m.pipe?.length === 0) delete m.pipe;
  return m as Message;
}

/** A truthy flag becomes `true`, a falsy one goes. */
function normaliseFlag(m: Partial<Message>, flag: "dedup" | "tracked"): void {
  if (m[flag]) m[flag] = true;
  else delete m[flag];
}

function isPipeStep(s: unknown): s is PipeStep {
  const step = s as Partial<PipeStep> | null;
  return typeof step === "object" && step !== null && typeof step.id === "string" && typeof step.actor === "string"
    && typeof step.queue === "string" && typeof step.priority === "number";
}
