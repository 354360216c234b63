import type { Logger } from "pino";
import type { Actor } from "./actor.ts";
import type { Broker } from "./broker/types.ts";
import { serializeError, type SerializedError } from "./errors.ts";
import type { Events, WorkerEventMap } from "./events.ts";
import type { JobOutcome } from "./executor/types.ts";
import type { Delivery, DeliveryRef, MalformedDelivery } from "./message.ts";
import type { Decision } from "./middleware.ts";
import { settledRecord } from "./results/record.ts";
import type { JobRecord } from "./results/types.ts";
import { sleep } from "./timers.ts";

/**
 * A delivery this worker holds: from the read until its settle lands in Redis, its lease is renewed.
 * `deciding` until its outcome is decided; `lost` once another worker holds it (then its outcome is
 * discarded).
 */
export interface Held {
  delivery: Delivery;
  deciding: boolean;
  lost: boolean;
  /**
   * Announces the outcome (the job:* event) once its settle landed, so that listeners (metrics, the
   * heartbeat's counts) count an outcome once: a settle that finds the lease lost announces nothing,
   * and the worker that holds the job now announces its own.
   */
  landed: (() => void) | undefined;
}

/** The key a delivery is held under. */
export const refKey = (ref: DeliveryRef): string => `${ref.stream}/${ref.entryId}`;

export interface SettlerOptions {
  broker: Broker;
  logger: Logger;
  events: Events<WorkerEventMap>;
  /** Another worker holds a job this one has not decided yet (see {@link Settler.renew}). */
  onLeaseLost(held: Held): void;
}

/**
 * Makes decisions land in Redis: acks in batches, retries, dead letters and give-backs one script
 * each, tried again while Redis is away. Holds every delivery from its read until that landed and
 * renews their leases, so that a job that finished but is not acked yet is not run again elsewhere.
 * A settle that finds the job held by another worker changes nothing, and the outcome is discarded.
 */
export class Settler {
  readonly #o: SettlerOptions;
  readonly #held = new Map<string, Held>();
  readonly #settling = new Set<Promise<void>>();
  #acks: Array<{ delivery: Delivery; keepMs: number; record?: JobRecord }> = [];
  #ackTimer: ReturnType<typeof setTimeout> | undefined;
  /** Set when the shutdown grace ran out: settles still retrying give up (the job stays pending). */
  #abandoned = false;
  #renewing = false;

  constructor(options: SettlerOptions) {
    this.#o = options;
  }

  hold(delivery: Delivery): Held {
    const held: Held = { delivery, deciding: true, lost: false, landed: undefined };
    this.#held.set(refKey(delivery.ref), held);
    return held;
  }

  holds(ref: DeliveryRef): boolean {
    return this.#held.has(refKey(ref));
  }

  /** Settles still in flight, or acks waiting for their batch. */
  get busy(): boolean {
    return this.#settling.size > 0 || this.#acks.length > 0;
  }

  settle(held: Held, actor: Actor | undefined, decision: Decision, outcome?: JobOutcome, startedAt?: number): void {
    const { logger, broker, events } = this.#o;
    const { delivery } = held;
    const attempt = delivery.retries + 1;
    const keepMs = actor?.options.resultTtl ?? 0;
    const duration = outcome && "duration" in outcome ? Math.round(outcome.duration) : undefined;
    // Records are built from the message and the outcome, no read needed; none when nothing is kept.
    const record = (status: JobRecord["status"], fields: Parameters<typeof settledRecord>[2] = {}) =>
      keepMs > 0 ? settledRecord(delivery, status, { startedAt, ...fields }) : undefined;
    switch (decision.kind) {
      case "ack":
        if (events.has("job:complete")) {
          held.landed = () => events.emit("job:complete", { ...ids(delivery), attempt, duration: duration ?? 0,
            value: outcome?.status === "ok" ? outcome.value : undefined });
        }
        this.#pushAck(delivery, keepMs, record("completed", { result: outcome?.status === "ok" ? outcome.value : undefined }));
        if (logger.isLevelEnabled("debug")) logger.debug({ ...ids(delivery), attempt, duration }, "job completed");
        return;
      case "discard":
        // Built even when nothing is kept: the broker clears an aborted job's mark by its status.
        this.#pushAck(delivery, keepMs, settledRecord(delivery, decision.status, { startedAt, error: decision.error }));
        logger.info({ ...ids(delivery), attempt, duration, status: decision.status, error: decision.error }, `job ${decision.status}`);
        held.landed = () => events.emit("job:discarded", { ...ids(delivery), attempt, status: decision.status, error: decision.error });
        return;
      case "retry": {
        const error = outcome?.status === "error" ? outcome.error : undefined;
        logger.info({ ...ids(delivery), attempt, duration, delay: decision.delay, error }, "job failed; retrying");
        held.landed = () => events.emit("job:retry", { ...ids(delivery), attempt, delay: decision.delay, error: error ?? { name: "Retry", message: "retry" } });
        const waiting = record("delayed", { error, dueAt: Date.now() + decision.delay });
        return this.#land(held, () => broker.retry(delivery, decision.delay, { record: waiting }));
      }
      case "defer": {
        if (logger.isLevelEnabled("debug")) logger.debug({ ...ids(delivery), delay: decision.delay }, "job deferred");
        held.landed = () => events.emit("job:returned", { ...ids(delivery), reason: `deferred ${decision.delay} ms` });
        // Not an attempt: the record keeps the attempts so far and no start time of a run that never was.
        const waiting = keepMs > 0 ? settledRecord(delivery, "delayed", { dueAt: Date.now() + decision.delay }) : undefined;
        return this.#land(held, () => broker.retry(delivery, decision.delay, { charge: false, record: waiting }));
      }
      case "deadLetter": {
        logger.warn({ ...ids(delivery), attempt, duration, error: decision.error }, "job dead-lettered");
        held.landed = () => events.emit("job:dead", { ...ids(delivery), attempt, error: decision.error });
        const dead = record("dead", { error: decision.error });
        return this.#land(held, () => broker.deadLetter(delivery, decision.error, keepMs, dead));
      }
      case "giveBack": {
        const reason = outcome?.status === "interrupted" ? outcome.reason : "returned by middleware";
        logger.info({ ...ids(delivery), reason }, "job returned to its queue, not charged an attempt");
        held.landed = () => events.emit("job:returned", { ...ids(delivery), reason });
        return this.#land(held, async () => (await broker.giveBack([delivery])).length === 0);
      }
    }
  }

  /** Lets go of a delivery whose lease was lost, without writing anything: the new holder's outcome counts. */
  discarded(held: Held, why: string): void {
    this.#held.delete(refKey(held.delivery.ref));
    this.#o.logger.warn({ event: "outcome:discarded", ...ids(held.delivery), attempt: held.delivery.retries + 1,
      entryId: held.delivery.ref.entryId },
      `outcome discarded: ${why}`);
  }

  async deadLetterMalformed(d: MalformedDelivery): Promise<void> {
    const error: SerializedError = serializeError(d.error);
    this.#o.logger.warn({ queue: d.queue, entryId: d.ref.entryId, reason: d.error.message }, "malformed entry dead-lettered");
    await this.#track(this.#withRetries(() => this.#o.broker.deadLetter(d, error), undefined).then((landed) => {
      // Announced once it landed, like every outcome (false: another worker holds the entry now).
      if (landed) this.#o.events.emit("job:dead", { id: d.ref.entryId, actor: "", queue: d.queue, attempt: 0, error });
    }));
  }

  /**
   * Renews the lease of every held delivery, running or settling, so that no one reclaims a job this
   * worker still holds. One renewal at a time: with Redis away the next waits for this one. A job
   * found held by another worker while still undecided is reported (`onLeaseLost`); one being
   * settled is left to its settle, which finds out by itself.
   */
  renew(): void {
    if (this.#renewing || this.#held.size === 0) return;
    this.#renewing = true;
    const refs = [...this.#held.values()].map((h) => h.delivery.ref);
    this.#o.broker.extend(refs)
      .then((lost) => {
        for (const ref of lost) {
          const held = this.#held.get(refKey(ref));
          if (!held || held.lost || !held.deciding) continue;
          held.lost = true;
          this.#o.logger.warn({ event: "lease:lost", ...ids(held.delivery), attempt: held.delivery.retries + 1, entryId: ref.entryId },
            "lease lost: another worker holds this job now; its run here is stopped and its outcome discarded");
          this.#o.onLeaseLost(held);
        }
      })
      .catch((error) => this.#o.logger.warn({ err: error }, "renewing claims failed"))
      .finally(() => (this.#renewing = false));
  }

  /**
   * Shutdown: waits for what is being settled until `until` (ms), then gives up on the rest, which
   * stays pending in Redis. Returns the deliveries left unsettled.
   */
  async drain(until: number, settled: () => boolean): Promise<Delivery[]> {
    while ((!settled() || this.busy) && Date.now() < until) {
      if (this.#acks.length > 0) void this.#flushAcks();
      await Promise.race([...this.#settling, sleep(20)]);
    }
    this.#abandoned = true;
    return [...this.#held.values()].filter((h) => !h.lost).map((h) => h.delivery);
  }

  /**
   * Settles one held delivery (retrying while Redis is away) and lets go of it once that landed. A
   * broker that no longer found the entry held by this consumer changed nothing: the lease was lost
   * and the outcome is discarded.
   */
  #land(held: Held, op: () => Promise<boolean>): void {
    void this.#track(this.#withRetries(op, held.delivery).then((settled) => {
      if (settled === undefined) return; // abandoned at shutdown: it stays held, and pending in Redis
      this.#held.delete(refKey(held.delivery.ref));
      if (settled) held.landed?.();
      else this.discarded(held, "another worker holds the job now");
    }));
  }

  #pushAck(delivery: Delivery, keepMs: number, record: JobRecord | undefined): void {
    this.#acks.push(record ? { delivery, keepMs, record } : { delivery, keepMs });
    if (this.#acks.length >= 256) void this.#flushAcks();
    else this.#ackTimer ??= setTimeout(() => void this.#flushAcks(), 0);
  }

  async #flushAcks(): Promise<void> {
    clearTimeout(this.#ackTimer);
    this.#ackTimer = undefined;
    const batch = this.#acks;
    if (batch.length === 0) return;
    this.#acks = [];
    await this.#track(this.#withRetries(() => this.#o.broker.ack(batch), batch[0]!.delivery).then((lost) => {
      if (!lost) return; // abandoned at shutdown
      const missing = lost.length > 0 ? new Set(lost.map(refKey)) : undefined;
      for (const { delivery } of batch) {
        const key = refKey(delivery.ref);
        const held = this.#held.get(key);
        if (held && missing?.has(key)) this.discarded(held, "another worker holds the job now");
        else {
          this.#held.delete(key);
          held?.landed?.();
        }
      }
    }));
  }

  /**
   * Settling must reach Redis or the job runs again; keep trying while Redis is away. If this process
   * dies first, the claim lapses and another worker runs the job again (at-least-once). Once the
   * shutdown grace ran out it gives up (undefined): the job stays pending and is reclaimed.
   */
  async #withRetries<T>(op: () => Promise<T>, delivery: Delivery | undefined): Promise<T | undefined> {
    for (let attempt = 1; !this.#abandoned; attempt++) {
      try {
        return await op();
      } catch (error) {
        if (attempt === 1 || attempt % 20 === 0) {
          this.#o.logger.warn({ err: error, ...(delivery ? ids(delivery) : {}) }, "settling a job failed; trying again");
        }
        await sleep(Math.min(100 * 2 ** Math.min(attempt, 6), 5_000));
      }
    }
    return undefined;
  }

  #track(p: Promise<void>): Promise<void> {
    this.#settling.add(p);
    void p.finally(() => this.#settling.delete(p));
    return p;
  }
}

export function ids(d: Delivery): { id: string; actor: string; queue: string } {
  return { id: d.message.id, actor: d.message.actor, queue: d.message.queue };
}
