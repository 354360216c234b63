import type { Logger } from "pino";
import type { Actor } from "./actor.ts";
import type { Broker } from "./broker/types.ts";
import { JobAborted, serializeError, UnknownActorError, type SerializedError } from "./errors.ts";
import { Events, type WorkerEventMap } from "./events.ts";
import type { Executor, JobOutcome } from "./executor/types.ts";
import type { Delivery, MalformedDelivery } from "./message.ts";
import { isPromise, runAfterProcess, runBeforeProcess, type Decision, type Middleware, type ProcessInfo } from "./middleware.ts";
import { ageLimit } from "./middleware/age_limit.ts";
import { pipelines } from "./middleware/pipelines.ts";
import { rateLimits } from "./middleware/rate_limit.ts";
import { resultLimit } from "./middleware/result_limit.ts";
import { retries } from "./middleware/retries.ts";
import { settledRecord } from "./results/record.ts";
import type { JobRecord } from "./results/types.ts";

export interface SupervisorOptions {
  broker: Broker;
  executor: Executor;
  registry: ReadonlyMap<string, Actor>;
  logger: Logger;
  /** Queues to read. @default every queue of a registered actor */
  queues?: string[];
  /** Runs in order before a job, in reverse after it. @default [ageLimit, rateLimits, retries, pipelines, resultLimit] */
  middleware?: Middleware[];
  /** How long running jobs get to finish on shutdown, ms. @default 30_000 */
  shutdownGrace?: number;
  /** How long one blocking read waits before looking again, ms. @default 1_000 */
  blockMs?: number;
  /** How often the claim on running jobs is renewed, ms (keep well under the visibility timeout). @default 3_000 */
  renewEvery?: number;
}

/**
 * After-hooks run in reverse: resultLimit refuses an oversized result first, so that pipelines only
 * send the next step of a job that really completed, and retries only see failures.
 */
export const defaultMiddleware: readonly Middleware[] = [ageLimit, rateLimits, retries, pipelines, resultLimit];

/** Aborted ids remembered for jobs other workers hold; past this many, the oldest are forgotten. */
const maxAbortedIds = 10_000;

/**
 * The consume loop: read as many messages as the executor has free slots, hand each to the
 * executor, and settle it (ack, retry, dead-letter, give back) atomically once its outcome is known.
 * Handlers never run here, so this thread is always free to renew claims and keep time limits.
 */
export class Supervisor {
  readonly events = new Events<WorkerEventMap>();
  readonly queues: string[];
  readonly #o: Required<Omit<SupervisorOptions, "queues">>;
  readonly #running = new Map<string, Delivery>();
  readonly #settling = new Set<Promise<void>>();
  #acks: Array<{ delivery: Delivery; keepMs: number; record?: JobRecord }> = [];
  /** Jobs aborted with `job.abort()` and not settled yet: skipped if read, stopped if running. */
  readonly #aborted = new Set<string>();
  #stopWatchingAborts: (() => Promise<void>) | undefined;
  #ackTimer: ReturnType<typeof setTimeout> | undefined;
  #slotFree: (() => void) | undefined;
  #stopping = false;
  #loop: Promise<void> | undefined;
  #renewTimer: ReturnType<typeof setInterval> | undefined;

  constructor(options: SupervisorOptions) {
    this.#o = {
      middleware: [...defaultMiddleware],
      shutdownGrace: 30_000,
      blockMs: 1_000,
      renewEvery: 3_000,
      ...options,
    };
    this.queues = options.queues ?? [...new Set([...options.registry.values()].map((a) => a.options.queue))].sort();
  }

  get running(): number {
    return this.#running.size;
  }

  async start(): Promise<void> {
    const { broker, executor, registry, logger } = this.#o;
    await executor.start();
    await broker.publishActors([...registry.values()].map((a) => ({
      name: a.name, queue: a.options.queue, priority: a.options.priority,
    })));
    this.#stopWatchingAborts = await broker.jobs.watchAborts(this.queues, (id) => this.#onAbort(id));
    this.#renewTimer = setInterval(() => this.#renew(), this.#o.renewEvery);
    logger.info({ queues: this.queues, capacity: executor.capacity, actors: registry.size }, "worker started");
    this.#loop = this.#consume();
  }

  /** Stops reading, lets running jobs finish within the grace period, then settles everything. */
  async stop(): Promise<void> {
    if (this.#stopping) return await this.#loop;
    this.#stopping = true;
    this.#o.broker.interrupt();
    // Jobs read ahead and not started go back now rather than start during the grace.
    this.#o.executor.stopStarting?.();
    this.#slotFree?.();
    await this.#loop;
    const deadline = Date.now() + this.#o.shutdownGrace;
    while (this.#running.size > 0 && Date.now() < deadline) await sleep(20);
    // Whatever still runs after the grace is interrupted by the executor and given back.
    await this.#o.executor.close(Math.max(0, deadline - Date.now()));
    while (this.#running.size > 0 || this.#settling.size > 0) {
      await Promise.race([...this.#settling, sleep(20)]);
    }
    await this.#flushAcks();
    clearInterval(this.#renewTimer);
    await this.#stopWatchingAborts?.().catch(() => undefined);
    this.events.emit("worker:stopped", {});
    this.#o.logger.info("worker stopped");
  }

  async #consume(): Promise<void> {
    const { broker, executor, logger, blockMs } = this.#o;
    let failures = 0;
    let lingered = false;
    while (!this.#stopping) {
      const free = executor.capacity - this.#running.size;
      if (free <= 0) {
        await new Promise<void>((resolve) => (this.#slotFree = resolve));
        continue;
      }
      if (free < refillBatch(executor.capacity) && this.#running.size > 0 && !lingered) {
        // Jobs finish one at a time: reading as soon as one slot frees costs a round trip per job.
        // Let one turn of the event loop deliver the outcomes already waiting so that one read
        // fetches many; a timer (>= 1 ms) would instead leave slots idle while jobs are short.
        lingered = true;
        await nextTurn();
        continue;
      }
      lingered = false;
      let batch: Array<Delivery | MalformedDelivery>;
      try {
        batch = await broker.read(this.queues, Math.min(free, maxRead(executor.capacity)), blockMs);
        if (failures > 0) logger.info({ failures }, "redis is back; reading again");
        failures = 0;
      } catch (error) {
        if (this.#stopping) break;
        failures++;
        this.events.emit("broker:error", { error });
        if (failures === 1 || failures % 20 === 0) logger.warn({ err: error, failures }, "reading from redis failed; backing off");
        await sleep(Math.min(100 * 2 ** Math.min(failures, 6), 5_000));
        continue;
      }
      for (const d of batch) {
        if ("malformed" in d) this.#track(this.#deadLetterMalformed(d));
        else this.#dispatch(d);
      }
    }
  }

  #dispatch(delivery: Delivery): void {
    const key = `${delivery.ref.stream}/${delivery.ref.entryId}`;
    this.#running.set(key, delivery);
    const { message } = delivery;
    const actor = this.#o.registry.get(message.actor);
    let startedAt: number | undefined;
    let settled = false;
    const done = (decision: Decision, outcome?: JobOutcome) => {
      if (settled) return;
      settled = true;
      this.#running.delete(key);
      this.#slotFree?.();
      this.#slotFree = undefined;
      this.#settle(delivery, actor, decision, outcome, startedAt);
    };
    if (!actor) {
      const error = new UnknownActorError(message.actor, `no worker on queue "${message.queue}" defines it`);
      done({ kind: "deadLetter", error: serializeError(error) });
      return;
    }
    if (this.#aborted.has(message.id)) {
      done({ kind: "discard", status: "aborted", error: serializeError(new JobAborted("aborted before it ran")) });
      return;
    }
    const info: ProcessInfo = { delivery, actor, broker: this.#o.broker, meta: { ...message.meta } };
    const fail = (error: unknown) => {
      // A middleware threw: the job's fate is unknown, so it goes back rather than being lost.
      this.#o.logger.error({ err: error, ...ids(delivery) }, "middleware failed; returning the job to its queue");
      done({ kind: "giveBack" });
    };
    const begin = (skip: Decision | undefined) => {
      if (skip) return done(skip);
      const attempt = delivery.retries + 1;
      if (this.events.has("job:start")) this.events.emit("job:start", { ...ids(delivery), attempt });
      if (this.#o.logger.isLevelEnabled("debug")) this.#o.logger.debug({ ...ids(delivery), attempt }, "job started");
      startedAt = Date.now();
      this.#o.executor.run({
        id: message.id, actor: message.actor, queue: message.queue, payload: message.payload,
        attempt, timeLimit: actor.options.timeLimit, meta: info.meta,
      }).then((outcome) => {
        if (this.#aborted.has(message.id)) {
          // However the handler ended once told to stop, the job is over: not retried, not dead.
          const error = serializeError(new JobAborted("aborted while running"));
          outcome = { status: "error", error, final: true, duration: "duration" in outcome ? outcome.duration : 0 };
        }
        const decision = runAfterProcess(this.#o.middleware, info, outcome);
        if (isPromise(decision)) decision.then((d) => done(d, outcome)).catch(fail);
        else done(decision, outcome);
      }).catch(fail);
    };
    // Hooks answer synchronously on the hot path; only a promise is awaited.
    try {
      const skip = runBeforeProcess(this.#o.middleware, info);
      if (isPromise(skip)) skip.then(begin).catch(fail);
      else begin(skip);
    } catch (error) {
      fail(error);
    }
  }

  #settle(delivery: Delivery, actor: Actor | undefined, decision: Decision, outcome?: JobOutcome, startedAt?: number): void {
    const { logger, broker } = this.#o;
    const attempt = delivery.retries + 1;
    const keepMs = actor?.options.resultTtl ?? 0;
    const duration = outcome && "duration" in outcome ? Math.round(outcome.duration) : undefined;
    // Records are built from the message and the outcome, no read needed; none when nothing is kept.
    const record = (status: JobRecord["status"], fields: Parameters<typeof settledRecord>[2] = {}) =>
      keepMs > 0 ? settledRecord(delivery, status, { startedAt, ...fields }) : undefined;
    if (decision.kind !== "retry" && decision.kind !== "defer" && decision.kind !== "giveBack") {
      this.#aborted.delete(delivery.message.id);
    }
    switch (decision.kind) {
      case "ack":
        this.#pushAck(delivery, keepMs, record("completed", { result: outcome?.status === "ok" ? outcome.value : undefined }));
        if (this.events.has("job:complete")) {
          this.events.emit("job:complete", { ...ids(delivery), attempt, duration: duration ?? 0,
            value: outcome?.status === "ok" ? outcome.value : undefined });
        }
        if (logger.isLevelEnabled("debug")) logger.debug({ ...ids(delivery), attempt, duration }, "job completed");
        return;
      case "discard":
        // Built even when nothing is kept: the broker clears an aborted job's mark by its status.
        this.#pushAck(delivery, keepMs, settledRecord(delivery, decision.status, { startedAt, error: decision.error }));
        logger.info({ ...ids(delivery), attempt, duration, status: decision.status, error: decision.error }, `job ${decision.status}`);
        this.events.emit("job:discarded", { ...ids(delivery), attempt, status: decision.status, error: decision.error });
        return;
      case "retry": {
        const error = outcome?.status === "error" ? outcome.error : undefined;
        logger.info({ ...ids(delivery), attempt, duration, delay: decision.delay, error }, "job failed; retrying");
        this.events.emit("job:retry", { ...ids(delivery), attempt, delay: decision.delay, error: error ?? { name: "Retry", message: "retry" } });
        const waiting = record("delayed", { error, dueAt: Date.now() + decision.delay });
        this.#track(this.#withRetries(() => broker.retry(delivery, decision.delay, { record: waiting }), delivery));
        return;
      }
      case "defer": {
        if (logger.isLevelEnabled("debug")) logger.debug({ ...ids(delivery), delay: decision.delay }, "job deferred");
        this.events.emit("job:returned", { ...ids(delivery), reason: `deferred ${decision.delay} ms` });
        // Not an attempt: the record keeps the attempts so far and no start time of a run that never was.
        const waiting = keepMs > 0 ? settledRecord(delivery, "delayed", { dueAt: Date.now() + decision.delay }) : undefined;
        this.#track(this.#withRetries(() => broker.retry(delivery, decision.delay, { charge: false, record: waiting }), delivery));
        return;
      }
      case "deadLetter": {
        logger.warn({ ...ids(delivery), attempt, duration, error: decision.error }, "job dead-lettered");
        this.events.emit("job:dead", { ...ids(delivery), attempt, error: decision.error });
        const dead = record("dead", { error: decision.error });
        this.#track(this.#withRetries(() => broker.deadLetter(delivery, decision.error, keepMs, dead), delivery));
        return;
      }
      case "giveBack": {
        const reason = outcome?.status === "interrupted" ? outcome.reason : "returned by middleware";
        logger.info({ ...ids(delivery), reason }, "job returned to its queue, not charged an attempt");
        this.events.emit("job:returned", { ...ids(delivery), reason });
        this.#track(this.#withRetries(() => broker.giveBack([delivery]), delivery));
        return;
      }
    }
  }

  #pushAck(delivery: Delivery, keepMs: number, record: JobRecord | undefined): void {
    this.#acks.push(record ? { delivery, keepMs, record } : { delivery, keepMs });
    if (this.#acks.length >= 256) void this.#flushAcks();
    else this.#ackTimer ??= setTimeout(() => void this.#flushAcks(), 0);
  }

  /** `job.abort()` reached this worker: skip the job if it comes, stop it if it runs here. */
  #onAbort(id: string): void {
    this.#aborted.add(id);
    if (this.#aborted.size > maxAbortedIds) this.#aborted.delete(this.#aborted.values().next().value!);
    for (const d of this.#running.values()) {
      if (d.message.id !== id) continue;
      this.#o.logger.info({ ...ids(d) }, "aborting a running job");
      this.#o.executor.abort?.(id, "job aborted");
    }
  }

  async #deadLetterMalformed(d: MalformedDelivery): Promise<void> {
    const error: SerializedError = serializeError(d.error);
    this.#o.logger.warn({ queue: d.queue, entryId: d.ref.entryId, reason: d.error.message }, "malformed entry dead-lettered");
    this.events.emit("job:dead", { id: d.ref.entryId, actor: "", queue: d.queue, attempt: 0, error });
    await this.#withRetries(() => this.#o.broker.deadLetter(d, error), undefined);
  }

  async #flushAcks(): Promise<void> {
    clearTimeout(this.#ackTimer);
    this.#ackTimer = undefined;
    const batch = this.#acks;
    if (batch.length === 0) return;
    this.#acks = [];
    await this.#track(this.#withRetries(() => this.#o.broker.ack(batch), batch[0]!.delivery));
  }

  /**
   * Settling must reach Redis or the job runs again; keep trying while Redis is away. If this process
   * dies first, the claim lapses and another worker runs the job again (at-least-once).
   */
  async #withRetries(op: () => Promise<void>, delivery: Delivery | undefined): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await op();
      } catch (error) {
        if (attempt === 1 || attempt % 20 === 0) {
          this.#o.logger.warn({ err: error, ...(delivery ? ids(delivery) : {}) }, "settling a job failed; trying again");
        }
        await sleep(Math.min(100 * 2 ** Math.min(attempt, 6), 5_000));
      }
    }
  }

  #track(p: Promise<void>): Promise<void> {
    this.#settling.add(p);
    void p.finally(() => this.#settling.delete(p));
    return p;
  }

  #renew(): void {
    const refs = [...this.#running.values()].map((d) => d.ref);
    this.#o.broker.extend(refs).catch((error) => this.#o.logger.warn({ err: error }, "renewing claims failed"));
  }
}

function ids(d: Delivery): { id: string; actor: string; queue: string } {
  return { id: d.message.id, actor: d.message.actor, queue: d.message.queue };
}

/**
 * At most half the capacity per read: two half batches alternate, one running in the pool while the
 * other is read, acked and decoded here, where one full batch would leave each side idle in turn.
 */
function maxRead(capacity: number): number {
  return Math.max(1, Math.ceil(capacity / 2));
}

/** Free slots worth a read while jobs are still running: a quarter of the capacity. */
function refillBatch(capacity: number): number {
  return Math.max(1, Math.floor(capacity / 4));
}

const nextTurn: () => Promise<void> = typeof setImmediate === "function"
  ? () => new Promise((r) => setImmediate(r))
  : () => new Promise((r) => setTimeout(r, 0));

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
