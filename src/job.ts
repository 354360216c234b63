import type { Broker } from "./broker/types.ts";
import { useBroker } from "./client.ts";
import { JobAborted, reviveError, TimeoutError, UnknownJobError } from "./errors.ts";
import type { AbortResult, JobRecord, JobStatus } from "./results/types.ts";

export interface ResultOptions {
  /** Give up waiting after this many ms with a TimeoutError (the job goes on). @default no limit */
  timeout?: number;
}

const unknownDetail = "no record of it: never sent here, finished longer ago than its actor's resultTtl, " +
  "or its actor keeps no results (resultTtl: 0)";

/**
 * What `send()` returns, or `getJob(id)` makes from an id in any process: status, result, abort.
 * The record it reads lives in Redis (or the MemoryBroker) for the actor's `resultTtl` after the job
 * finished; actors with `resultTtl: 0` keep none, and their handles answer UnknownJobError.
 */
export class JobHandle {
  #queue: string | undefined;
  #actor: string | undefined;
  readonly #broker: Broker | undefined;

  constructor(
    readonly id: string,
    queue: string | undefined,
    actor: string | undefined,
    /** True when a job with this id was already known and nothing was sent: this is the first job's handle. */
    readonly duplicate = false,
    /** @default the senders' broker (useBroker()) at each call */
    broker?: Broker,
  ) {
    this.#queue = queue;
    this.#actor = actor;
    this.#broker = broker;
  }

  /** Undefined only for a handle made from a bare id, until its first call has found the job. */
  get queue(): string | undefined {
    return this.#queue;
  }

  get actor(): string | undefined {
    return this.#actor;
  }

  /** Where the job is now. Throws UnknownJobError when there is no record of it. */
  async status(): Promise<JobStatus> {
    return (await this.info()).status;
  }

  /** The whole record: status, timestamps, attempts, result, last error. */
  async info(): Promise<JobRecord> {
    const queue = await this.#locate();
    const record = await this.#store().get(queue, this.id);
    if (!record) throw new UnknownJobError(this.id, unknownDetail);
    this.#actor ??= record.actor;
    return record;
  }

  /**
   * Waits (no polling: the worker's ack wakes us) for the job to finish and resolves with its return
   * value. Rejects with the job's error if it failed or died, JobAborted if aborted, TimeoutError if
   * it is still pending after `timeout` ms, UnknownJobError if there is no record of it.
   */
  async result<R = unknown>(options: ResultOptions = {}): Promise<R> {
    const queue = await this.#locate();
    const waited = await this.#store().wait(queue, this.id, options.timeout);
    switch (waited.kind) {
      case "unknown":
        throw new UnknownJobError(this.id, unknownDetail);
      case "timeout":
        throw new TimeoutError(this.id, waited.record?.status ?? "pending", options.timeout ?? 0);
      case "finished":
        return valueOf(waited.record) as R;
    }
  }

  /**
   * A queued or delayed job never runs; a running one gets its `ctx.signal` aborted, then is stopped
   * like at its time limit. Either way its status becomes "aborted". A finished job is left as it is:
   * the answer says so (`aborted: false`). Throws UnknownJobError when there is no record of it.
   */
  async abort(): Promise<AbortResult> {
    const queue = await this.#locate();
    const result = await this.#store().abort(queue, this.id);
    if (!result) throw new UnknownJobError(this.id, unknownDetail);
    return result;
  }

  toJSON(): { id: string; queue: string | undefined; actor: string | undefined } {
    return { id: this.id, queue: this.#queue, actor: this.#actor };
  }

  #store() {
    return (this.#broker ?? useBroker()).jobs;
  }

  async #locate(): Promise<string> {
    if (this.#queue !== undefined) return this.#queue;
    const queue = await this.#store().locate(this.id);
    if (queue === undefined) throw new UnknownJobError(this.id, unknownDetail);
    return (this.#queue = queue);
  }
}

/**
 * A handle on a job from its id alone, e.g. in another process than the one that sent it. Give the
 * queue if you know it; otherwise the first call looks for the job in every known queue.
 */
export function getJob(id: string, options: { queue?: string; broker?: Broker } = {}): JobHandle {
  return new JobHandle(id, options.queue, undefined, false, options.broker);
}

/** A finished record's value, or its error as the job's own (revived) error. */
export function valueOf(record: JobRecord): unknown {
  if (record.status === "completed") return record.result;
  if (record.status === "aborted") throw new JobAborted(record.error?.message ?? "job aborted");
  const error = record.error ? reviveError(record.error) : new Error(`job ${record.status}`);
  throw error;
}
