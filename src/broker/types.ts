import type { SerializedError } from "../errors.ts";
import type { Delivery, DeliveryRef, MalformedDelivery, Message } from "../message.ts";

/** What a worker publishes about each actor so that senders can route by name. */
export interface ActorMeta {
  name: string;
  queue: string;
  priority: number;
}

export interface SendRequest {
  message: Message;
  /** ms from now (by the broker's clock). */
  delay?: number;
  /** absolute ms since epoch. */
  at?: number;
}

export interface DeadLetter {
  /** The letter's id in the dead-letter queue (what `requeue` takes). */
  id: string;
  queue: string;
  message: Message | { raw: string };
  retries: number;
  error: SerializedError;
  at: number;
}

export interface QueueStats {
  queue: string;
  ready: number;
  running: number;
  delayed: number;
  dead: number;
}

export interface Acked {
  delivery: Delivery;
  /** How long a dedup key stays after the job settled (0 = released at once). */
  keepMs: number;
}

/**
 * The narrow interface the rest of dray uses. Every implementation (Redis, in-memory) must pass
 * `test/broker_conformance.ts`. Deliveries are at-least-once: a read entry stays owned by this
 * consumer until it is settled (ack, retry, deadLetter, giveBack) or its claim lapses.
 */
export interface Broker {
  readonly prefix: string;
  /** Sends messages in one round trip; `false` where a job with that id is already known. */
  enqueue(requests: SendRequest[]): Promise<boolean[]>;
  /** Up to `count` deliveries from `queues`, waiting up to `blockMs` when none is ready. */
  read(queues: string[], count: number, blockMs: number): Promise<Array<Delivery | MalformedDelivery>>;
  /** Jobs that finished: removed for good. */
  ack(done: Acked[]): Promise<void>;
  /** Back to the delayed set after `delayMs`, with one more retry counted. */
  retry(delivery: Delivery, delayMs: number): Promise<void>;
  deadLetter(delivery: Delivery | MalformedDelivery, error: SerializedError, keepMs?: number): Promise<void>;
  /** Unstarted or interrupted work goes back to its queue, not charged an attempt. */
  giveBack(deliveries: Delivery[]): Promise<void>;
  /** Renews this consumer's claim on running deliveries so no one reclaims them. */
  extend(refs: DeliveryRef[]): Promise<void>;
  publishActors(actors: ActorMeta[]): Promise<void>;
  lookupActor(name: string): Promise<ActorMeta | undefined>;
  deadLetters(queue: string, options?: { limit?: number }): Promise<DeadLetter[]>;
  /** Dead letters back to their queue with retries reset; all of them when `ids` is omitted. */
  requeue(queue: string, ids?: string[]): Promise<number>;
  purgeDeadLetters(queue: string): Promise<number>;
  stats(queue: string): Promise<QueueStats>;
  queues(): Promise<string[]>;
  /** Stops a pending blocking read so that shutdown is prompt. */
  interrupt(): void;
  close(): Promise<void>;
}
