import { z } from "zod";
import type { Logger } from "pino";
import type { Cluster, Redis } from "ioredis";
import { ConfigError, PayloadValidationError } from "./errors.ts";
import { NAME_PATTERN, type Message } from "./message.ts";
import type { Broker } from "./broker/types.ts";
import { useBroker } from "./client.ts";
import { settings } from "./config.ts";
import { JobHandle } from "./job.ts";

/** What a handler gets besides its payload. */
export interface JobContext {
  jobId: string;
  /** 1 on the first run, 2 on the first retry, ... */
  attempt: number;
  queue: string;
  actor: string;
  logger: Logger;
  /** Aborted when the job reaches its time limit or is aborted; stop cooperatively when it fires. */
  signal: AbortSignal;
  /**
   * A Redis connection of the worker, for the handler's own use: a Cluster client (ioredis' Cluster)
   * when dray's URL names a Redis Cluster (`redis+cluster://`), where each command's keys must share
   * a slot and a pipeline's keys a node.
   */
  readonly redis: Redis | Cluster;
  /** JSON that middleware attached: the sender's `beforeEnqueue` (message.meta), the worker's `beforeProcess`. */
  meta: Record<string, unknown>;
}

export type Handler<P, R> = (payload: P, ctx: JobContext) => R | Promise<R>;

/** A Standard-Schema-like validator; any zod schema fits. */
export interface PayloadSchema<P> {
  safeParse(value: unknown): { success: true; data: P } | { success: false; error: { issues: unknown[] } };
}

// deno-lint-ignore no-explicit-any
type ErrorClass = abstract new (...args: any[]) => Error;

/**
 * Rate limits of an actor, shared by every worker through Redis (src/middleware/rate_limit.ts).
 * Give `concurrency`, `perWindow` or both.
 */
export interface RateLimitOptions {
  /** At most this many of the key's jobs run at once. */
  concurrency?: number;
  /** At most this many of the key's jobs start in any `window` ms (a sliding window). */
  perWindow?: number;
  /** The window of `perWindow`, ms. @default 1_000 */
  window?: number;
  /**
   * Jobs with the same key share the limits: a string (several actors behind one API), or a function
   * of the payload (one limit per customer). @default the actor's name
   */
  key?: string | ((payload: never) => string);
  /** How long a job over a concurrency limit waits before trying again, ms (jittered). @default 500 */
  backoff?: number;
}

/** The options of `actor()`; every one may be left out. */
export interface ActorOptionsInput {
  /** The queue the actor's jobs go to (1-200 letters, digits and `_ . : -`). @default "default" */
  queue?: string;
  /** Validates payloads at send and before the handler runs. */
  schema?: PayloadSchema<unknown>;
  /** How many times a failed job is retried. @default 20 (like Dramatiq) */
  maxRetries?: number;
  /** First retry delay, ms; doubles each retry, with jitter. @default 15_000 */
  minBackoff?: number;
  /** Cap on the retry delay, ms. @default 604_800_000 (7 days, like Dramatiq) */
  maxBackoff?: number;
  /** Messages older than this (ms since first sent) are dead-lettered, not run. */
  maxAge?: number;
  /** Hard limit on one run, ms. @default 600_000 (10 min, like Dramatiq) */
  timeLimit?: number;
  /** Higher runs first within a queue; -1000 to 1000. @default 0 */
  priority?: number;
  /** Errors that are not retried: matched by class (instanceof) or by name across threads. @default [] */
  throws?: ErrorClass[];
  /**
   * How long a job's record (status, return value, last error) and its dedup id are kept after it
   * settled, ms. 0 keeps nothing: no status or result, and no cost per job. @default 3_600_000
   */
  resultTtl?: number;
  /** Distributed rate limits: at most N running at once and/or N started per window. */
  rateLimit?: RateLimitOptions;
}

/** An actor's options with the defaults filled in: what `actor.options` holds. */
export interface ActorOptions {
  /** The queue the actor's jobs go to. */
  queue: string;
  /** Validates payloads at send and before the handler runs. */
  schema?: PayloadSchema<unknown>;
  /** How many times a failed job is retried. */
  maxRetries: number;
  /** First retry delay, ms; doubles each retry, with jitter. */
  minBackoff: number;
  /** Cap on the retry delay, ms. */
  maxBackoff: number;
  /** Messages older than this (ms since first sent) are dead-lettered, not run. */
  maxAge?: number;
  /** Hard limit on one run, ms. */
  timeLimit: number;
  /** Higher runs first within a queue. */
  priority: number;
  /** Errors that are not retried: matched by class (instanceof) or by name across threads. */
  throws: ErrorClass[];
  /** How long a job's record and its dedup id are kept after it settled, ms; 0 keeps nothing. */
  resultTtl: number;
  /** Distributed rate limits: at most N running at once and/or N started per window. */
  rateLimit?: RateLimitOptions;
}

const queueName = z.string().min(1).max(200).regex(/^[A-Za-z0-9_.:-]+$/, "letters, digits and _ . : - only");
const ms = z.number().int().nonnegative();
const DEFAULT_RESULT_TTL = 3_600_000;
const positive = z.number().int().positive();

// The schemas are typed by the interfaces above, so the compiler checks that what they accept and
// return fits what the interfaces document.
export const rateLimitSchema: z.ZodType<RateLimitOptions, RateLimitOptions> = z.strictObject({
  concurrency: positive.optional(),
  perWindow: positive.optional(),
  window: positive.optional(),
  key: z.union([
    z.string().min(1).max(200),
    z.custom<(payload: never) => string>((v) => typeof v === "function", "must be a string or a function of the payload"),
  ]).optional(),
  backoff: positive.optional(),
}).refine((o) => o.concurrency !== undefined || o.perWindow !== undefined, { message: "give concurrency or perWindow" })
  .refine((o) => o.window === undefined || o.perWindow !== undefined, { message: "window needs perWindow" });

const optionsSchema: z.ZodType<ActorOptions, ActorOptionsInput> = z.strictObject({
  queue: queueName.default("default"),
  schema: z.custom<PayloadSchema<unknown>>((v) => typeof (v as PayloadSchema<unknown>)?.safeParse === "function",
    "must be a zod schema (an object with safeParse)").optional(),
  maxRetries: z.number().int().nonnegative().default(20),
  minBackoff: ms.default(15_000),
  maxBackoff: ms.default(604_800_000),
  maxAge: z.number().int().positive().optional(),
  timeLimit: z.number().int().positive().default(600_000),
  priority: z.number().int().min(-1000).max(1000).default(0),
  throws: z.array(z.custom<ErrorClass>((v) => typeof v === "function", "must be error classes")).default([]),
  resultTtl: ms.default(DEFAULT_RESULT_TTL),
  rateLimit: rateLimitSchema.optional(),
}).refine((o) => o.minBackoff <= o.maxBackoff, { message: "minBackoff must not exceed maxBackoff" });

export interface SendOptions {
  /** Run no earlier than this many ms from now. */
  delay?: number;
  /** Run no earlier than this time. */
  at?: Date | number;
  /** Dedup: a second send with the same id is a no-op while the first is known. */
  jobId?: string;
}

export interface Actor<P = unknown, R = unknown> {
  readonly name: string;
  readonly options: ActorOptions;
  // deno-lint-ignore no-explicit-any
  readonly handler: Handler<any, R>;
  send(payload: P, options?: SendOptions): Promise<JobHandle>;
  /** Sends many in one round trip. */
  sendMany(payloads: P[], options?: Omit<SendOptions, "jobId">): Promise<JobHandle[]>;
  /** Checks a payload against the schema and returns what the handler gets; throws PayloadValidationError. */
  validate(payload: unknown): unknown;
  /**
   * A message to send later as part of `group()` or `pipeline()`. In a pipeline, a step built without
   * a payload gets the previous step's return value as its payload.
   */
  message(payload?: P, options?: Omit<SendOptions, "jobId">): MessageSpec;
}

/** A message built but not sent yet: what `group()` and `pipeline()` take. */
export interface MessageSpec {
  readonly actor: string;
  readonly queue: string;
  readonly priority: number;
  /** Undefined for a pipeline step that takes the previous step's result. */
  readonly payload: unknown;
  readonly options: Omit<SendOptions, "jobId">;
}

/** Actors defined in this process (or thread), by name. */
export const registry: Map<string, Actor> = new Map();

export function actor<P = unknown, R = unknown>(name: string, handler: Handler<P, R>): Actor<P, R>;
/** With a zod schema: `send()` takes the schema's input type, the handler gets its output. */
export function actor<S extends z.ZodType, R = unknown>(
  name: string,
  options: Omit<ActorOptionsInput, "schema"> & { schema: S },
  handler: Handler<z.output<S>, R>,
): Actor<z.input<S>, R>;
export function actor<P = unknown, R = unknown>(
  name: string,
  options: ActorOptionsInput,
  handler: Handler<P, R>,
): Actor<P, R>;
export function actor<P, R>(name: string, a: unknown, b?: unknown): Actor<P, R> {
  if (typeof a === "function" && b !== undefined) {
    // Dramatiq and BullMQ users put options after the function; ignoring them would run the actor
    // on the wrong queue with the wrong limits, silently.
    throw new ConfigError(`actor "${name}": options go before the handler: actor(name, options, handler)`);
  }
  const [rawOptions, handler] = typeof a === "function" ? [{}, a as Handler<P, R>] : [a, b as Handler<P, R>];
  if (typeof name !== "string" || !NAME_PATTERN.test(name)) {
    throw new ConfigError(`actor name ${JSON.stringify(name)} is invalid: use 1-200 letters, digits and _ . : -`);
  }
  if (typeof handler !== "function") throw new ConfigError(`actor "${name}" needs a handler function`);
  const parsed = optionsSchema.safeParse(rawOptions ?? {});
  if (!parsed.success) {
    const detail = parsed.error.issues.map((i) => `${i.path.join(".") || "options"}: ${i.message}`).join("; ");
    throw new ConfigError(`actor "${name}" has invalid options: ${detail}`);
  }
  if (registry.has(name)) throw new ConfigError(`actor "${name}" is defined twice`);
  const options = parsed.data;

  const self: Actor<P, R> = {
    name,
    options,
    handler,
    validate(payload: unknown): unknown {
      if (!options.schema) return payload;
      const result = options.schema.safeParse(payload);
      if (!result.success) throw new PayloadValidationError(name, result.error.issues);
      return result.data;
    },
    async send(payload, sendOptions = {}) {
      const [handle] = await sendMessages(self, [payload], sendOptions);
      return handle!;
    },
    sendMany(payloads, sendOptions = {}) {
      return sendMessages(self, payloads, sendOptions);
    },
    message(payload, messageOptions = {}) {
      if (payload !== undefined) self.validate(payload);
      return { actor: name, queue: options.queue, priority: options.priority, payload, options: messageOptions };
    },
  };
  registry.set(name, self as Actor);
  return self;
}

async function sendMessages<P>(a: Actor<P>, payloads: P[], options: SendOptions): Promise<JobHandle[]> {
  checkSendOptions(options);
  for (const p of payloads) a.validate(p);
  return await enqueueMessages(
    payloads.map((payload) => buildMessage(a.name, a.options.queue, a.options.priority, payload, options)),
    options,
  );
}

const sendOptionsSchema = z.strictObject({
  delay: ms.optional(),
  at: z.union([z.date(), z.number()]).optional(),
  jobId: z.string().min(1).max(200).optional(),
  queue: queueName.optional(),
});

/** Checks what a caller passed to send(); once per call, not per message of a sendMany. */
export function checkSendOptions(options: SendOptions): void {
  const checked = sendOptionsSchema.safeParse(options);
  if (!checked.success) {
    throw new ConfigError(`invalid send options: ${checked.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}`);
  }
  if (options.delay !== undefined && options.at !== undefined) throw new ConfigError("give delay or at, not both");
}

/** A message ready to send. Payloads are checked for JSON when encoded (encodeMessage), once. */
export function buildMessage(actorName: string, queue: string, priority: number, payload: unknown,
  options: SendOptions): Message {
  // A sender that does not know the actor assumes it keeps results; its worker drops the record if not.
  const tracked = (registry.get(actorName)?.options.resultTtl ?? DEFAULT_RESULT_TTL) > 0;
  return {
    id: options.jobId ?? crypto.randomUUID(),
    actor: actorName,
    queue,
    payload,
    priority,
    sentAt: Date.now(),
    ...(options.jobId ? { dedup: true } : {}),
    ...(tracked ? { tracked: true } : {}),
  };
}

/**
 * Sends built messages in one round trip, through the senders' middleware (`configure({ middleware })`):
 * `beforeEnqueue` in order (a throw sends nothing), `afterEnqueue` in reverse.
 */
export async function enqueueMessages(messages: Message[], options: SendOptions, broker: Broker = useBroker()): Promise<JobHandle[]> {
  const stack = settings().middleware;
  for (const m of stack) {
    if (m.beforeEnqueue) for (const message of messages) await m.beforeEnqueue(message);
  }
  const at = options.at instanceof Date ? options.at.getTime() : options.at;
  const sent = await broker.enqueue(messages.map((message) => ({
    message,
    ...(options.delay !== undefined ? { delay: options.delay } : {}),
    ...(at !== undefined ? { at } : {}),
  })));
  for (let i = stack.length - 1; i >= 0; i--) {
    const m = stack[i]!;
    if (m.afterEnqueue) for (let n = 0; n < messages.length; n++) await m.afterEnqueue(messages[n]!, !sent[n]);
  }
  return messages.map((m, i) => new JobHandle(m.id, m.queue, m.actor, !sent[i]));
}
