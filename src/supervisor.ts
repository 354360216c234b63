import type { Logger } from "pino";
import type { Actor } from "./actor.ts";
import type { Broker } from "./broker/types.ts";
import { JobAborted, serializeError, UnknownActorError } from "./errors.ts";
import { Events, type WorkerEventMap } from "./events.ts";
import type { Executor, JobOutcome } from "./executor/types.ts";
import type { Delivery, DeliveryRef, MalformedDelivery } from "./message.ts";
import { baseDecision, isPromise, runAfterProcess, runAfterSkip, runBeforeProcess, type Decision, type Middleware,
  type Passage, type ProcessInfo } from "./middleware.ts";
import { ageLimit } from "./middleware/age_limit.ts";
import { pipelines } from "./middleware/pipelines.ts";
import { Pauses } from "./pauses.ts";
import { rateLimits } from "./middleware/rate_limit.ts";
import { resultLimit } from "./middleware/result_limit.ts";
import { retries } from "./middleware/retries.ts";
import { ids, refKey, Settler, type Held } from "./settle.ts";
import { sleep, within } from "./timers.ts";

export interface SupervisorOptions {
  broker: Broker;
  executor: Executor;
  registry: ReadonlyMap<string, Actor>;
  logger: Logger;
  /** Queues to read (those an operator paused are skipped until resumed). @default every queue of a registered actor */
  queues?: string[];
  /** Runs in order before a job, in reverse after it. @default [ageLimit, rateLimits, retries, pipelines, resultLimit] */
  middleware?: Middleware[];
  /**
   * How long running jobs get to finish on shutdown, ms; settling what finished gets what is left of
   * it (at least a second). What is still unsettled then stays pending in Redis for another worker.
   * @default 30_000
   */
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

/** What stop() reports. */
export interface StopReport {
  /** Jobs still held and not settled when the grace ran out (they stay pending and are reclaimed). */
  unsettled: number;
}

/**
 * The consume loop: read as many messages as the executor has free slots, hand each to the
 * executor, and settle it (ack, retry, dead-letter, give back) atomically once its outcome is known.
 * Handlers never run here, so this thread is always free to renew claims and keep time limits.
 */
export class Supervisor {
  readonly events: Events<WorkerEventMap> = new Events();
  readonly queues: string[];
  readonly #o: Required<Omit<SupervisorOptions, "queues">>;
  /** Jobs handed to the executor and not decided: what counts against its capacity. */
  readonly #running = new Map<string, Delivery>();
  readonly #settler: Settler;
  /** Which of {@link queues} are paused: read at start and every second, not per read. */
  readonly #pauses: Pauses;
  /** Jobs aborted with `job.abort()` and not settled yet: skipped if read, stopped if running. */
  readonly #aborted = new Set<string>();
  #stopWatchingAborts: (() => Promise<void>) | undefined;
  #slotFree: (() => void) | undefined;
  #stopping = false;
  #stopped: Promise<StopReport> | undefined;
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
    this.#settler = new Settler({ broker: this.#o.broker, logger: this.#o.logger, events: this.events,
      onLeaseLost: (held) => this.#leaseLost(held) });
    // A blocking read may wait a second on queues just paused, or on the others while one was
    // resumed: cut it short. The loop reads again with the new set; only #stopping ends it.
    this.#pauses = new Pauses({ control: this.#o.broker.control, queues: this.queues, logger: this.#o.logger,
      onChange: () => {
        if (!this.#stopping) this.#o.broker.interrupt();
      } });
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
    await this.#pauses.start();
    this.#stopWatchingAborts = await broker.jobs.watchAborts(this.queues, (id) => this.#onAbort(id));
    this.#renewTimer = setInterval(() => this.#settler.renew(), this.#o.renewEvery);
    logger.info({ queues: this.queues, capacity: executor.capacity, actors: registry.size }, "worker started");
    this.#loop = this.#consume();
  }

  /**
   * Stops reading, lets running jobs finish within the grace period, then settles everything it can.
   * Bounded by the grace even when Redis is away: what could not be settled is logged and reported,
   * and stays pending in Redis, where another worker reclaims it after the visibility timeout.
   */
  stop(): Promise<StopReport> {
    return (this.#stopped ??= this.#shutdown());
  }

  async #shutdown(): Promise<StopReport> {
    const { broker, executor, logger, shutdownGrace } = this.#o;
    this.#stopping = true;
    const deadline = Date.now() + shutdownGrace;
    this.#pauses.close();
    broker.interrupt();
    // Jobs read ahead and not started go back now rather than start during the grace.
    executor.stopStarting?.();
    this.#slotFree?.();
    // With Redis away the loop waits in a read that only Redis can end: not past the grace.
    await within(this.#loop, deadline - Date.now());
    while (this.#running.size > 0 && Date.now() < deadline) await sleep(20);
    // Whatever still runs after the grace is interrupted by the executor and given back.
    await executor.close(Math.max(0, deadline - Date.now()));
    const unsettled = await this.#settler.drain(Math.max(deadline, Date.now() + 1_000), () => this.#running.size === 0);
    clearInterval(this.#renewTimer);
    if (unsettled.length > 0) {
      logger.error({ unsettled: unsettled.length, jobs: unsettled.slice(0, 20).map(ids) },
        "shutdown grace ran out with jobs not settled (Redis unreachable?): they stay pending in Redis and another " +
        "worker reclaims them after the visibility timeout; nothing is lost");
    }
    await within(this.#stopWatchingAborts?.().catch(() => undefined), 1_000);
    this.events.emit("worker:stopped", {});
    logger.info({ unsettled: unsettled.length }, "worker stopped");
    return { unsettled: unsettled.length };
  }

  async #consume(): Promise<void> {
    const { broker, executor, logger, blockMs } = this.#o;
    let failures = 0;
    let lingered = false;
    const holds = (ref: DeliveryRef) => this.#settler.holds(ref);
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
        // A dropped connection may have carried a read's reply: take back what it delivered first.
        // Of every queue, paused or not: a paused queue's jobs this worker holds are still its own.
        batch = (await broker.recover?.(this.queues, holds)) ?? [];
        if (batch.length > 0) logger.info({ recovered: batch.length }, "recovered jobs whose delivery was lost with a connection");
        const queues = this.#pauses.active;
        if (batch.length === 0 && queues.length === 0) {
          // Every queue paused: nothing to read, so wait for a resume rather than spin.
          await this.#pauses.changed(blockMs);
          continue;
        }
        if (batch.length === 0) batch = await broker.read(queues, Math.min(free, maxRead(executor.capacity)), blockMs);
        if (failures > 0) {
          logger.info({ failures }, "redis is back; reading again");
          // Renew at once: while Redis was away no lease could be, and others may reclaim soon.
          this.#settler.renew();
        }
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
        if ("malformed" in d) void this.#settler.deadLetterMalformed(d);
        // Held here already: this worker stalled past the visibility timeout and reclaimed its own
        // entry. It is still this run's: running it twice would overlap the job with itself.
        else if (!this.#settler.holds(d.ref)) this.#dispatch(d);
      }
    }
  }

  #dispatch(delivery: Delivery): void {
    const key = refKey(delivery.ref);
    this.#running.set(key, delivery);
    const held = this.#settler.hold(delivery);
    const { message } = delivery;
    const { middleware, logger } = this.#o;
    const actor = this.#o.registry.get(message.actor);
    let startedAt: number | undefined;
    const done = (decision: Decision | undefined, outcome?: JobOutcome) => {
      if (!held.deciding) return;
      held.deciding = false;
      this.#running.delete(key);
      this.#slotFree?.();
      this.#slotFree = undefined;
      if (held.lost || !decision) return this.#settler.discarded(held, "its run ended after this worker lost the lease");
      if (decision.kind !== "retry" && decision.kind !== "defer" && decision.kind !== "giveBack") this.#aborted.delete(message.id);
      this.#settler.settle(held, actor, decision, outcome, startedAt);
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
    const passage: Passage = { open: 0 };
    // Settled without the after-hooks of the middleware that passed: they still get their counterpart.
    const skip = (decision: Decision | undefined) => {
      if (passage.open === 0) return;
      void runAfterSkip(middleware, info, passage, decision, (error, name) =>
        logger.error({ err: error, middleware: name, ...ids(delivery) }, "middleware afterSkip failed"));
    };
    const fail = (error: unknown) => {
      // A middleware threw: the job's fate is unknown, so it goes back rather than being lost.
      logger.error({ err: error, ...ids(delivery) }, "middleware failed; returning the job to its queue");
      const decision: Decision = { kind: "giveBack" };
      skip(held.lost ? undefined : decision);
      done(decision);
    };
    const finish = (outcome: JobOutcome) => {
      if (held.lost) {
        // Another worker runs it now: nothing of this run may reach Redis, not even a next step.
        skip(undefined);
        return done(undefined, outcome);
      }
      if (this.#aborted.has(message.id)) {
        // However the handler ended once told to stop, the job is over: not retried, not dead.
        const error = serializeError(new JobAborted("aborted while running"));
        outcome = { status: "error", error, final: true, duration: "duration" in outcome ? outcome.duration : 0 };
      }
      const decision = runAfterProcess(middleware, info, outcome, baseDecision(outcome), passage);
      if (isPromise(decision)) decision.then((d) => done(d, outcome)).catch(fail);
      else done(decision, outcome);
    };
    const begin = (decided: Decision | undefined) => {
      if (decided) {
        skip(decided);
        return done(decided);
      }
      if (held.lost) {
        skip(undefined);
        return done(undefined);
      }
      const attempt = delivery.retries + 1;
      if (this.events.has("job:start")) {
        this.events.emit("job:start", { ...ids(delivery), attempt, enqueuedAt: parseInt(delivery.ref.entryId, 10) || message.sentAt });
      }
      if (logger.isLevelEnabled("debug")) logger.debug({ ...ids(delivery), attempt }, "job started");
      startedAt = Date.now();
      this.#o.executor.run({
        id: message.id, actor: message.actor, queue: message.queue, payload: message.payload,
        attempt, timeLimit: actor.options.timeLimit, meta: info.meta,
      }).then(finish).catch(fail);
    };
    // Hooks answer synchronously on the hot path; only a promise is awaited.
    try {
      const decided = runBeforeProcess(middleware, info, passage);
      if (isPromise(decided)) decided.then(begin).catch(fail);
      else begin(decided);
    } catch (error) {
      fail(error);
    }
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

  /**
   * Another worker holds a job this one has not decided (this worker stalled past the visibility
   * timeout, and the job was reclaimed): stop its run here; its outcome is discarded when it comes.
   */
  #leaseLost(held: Held): void {
    if (this.#running.has(refKey(held.delivery.ref))) {
      this.#o.executor.abort?.(held.delivery.message.id, "lease lost to another worker");
    }
  }
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

