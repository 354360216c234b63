import { MalformedMessageError } from "./errors.ts";

/**
 * A message as it travels through Redis. It is immutable once sent: the retry count lives beside it
 * (a stream field, a prefix of the delayed-set member) so that a requeue can reset it without
 * rewriting the message.
 */
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
}

/** A message handed to this consumer, with what is needed to settle it. */
export interface Delivery {
  message: Message;
  /** Attempts already made before this delivery (0 on the first). */
  retries: number;
  /** Broker-specific locator (stream key and entry id for Redis). */
  ref: DeliveryRef;
}

export interface DeliveryRef {
  stream: string;
  entryId: string;
}

/** A stream entry that could not be decoded: it still has to be dead-lettered and acked. */
export interface MalformedDelivery {
  malformed: true;
  raw: Record<string, string>;
  error: MalformedMessageError;
  ref: DeliveryRef;
  queue: string;
}

export function encodeMessage(message: Message): string {
  return JSON.stringify(message);
}

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
  return {
    id: m.id,
    actor: m.actor,
    queue: typeof m.queue === "string" ? m.queue : queue,
    payload: m.payload,
    priority: typeof m.priority === "number" ? m.priority : 0,
    sentAt: m.sentAt,
    ...(m.dedup ? { dedup: true } : {}),
  };
}
