import { buildMessage, enqueueMessages, registry, type MessageSpec, type SendOptions } from "./actor.ts";
import { ConfigError, PipelineStepFailed, TimeoutError, UnknownJobError } from "./errors.ts";
import { JobHandle, type ResultOptions } from "./job.ts";
import type { PipeStep } from "./message.ts";
import type { AbortResult } from "./results/types.ts";
import { FINISHED } from "./results/types.ts";

export interface Pipeline {
  readonly steps: readonly MessageSpec[];
  /** Sends the first step; it carries the rest, and each completed step sends the next. */
  send(options?: Omit<SendOptions, "jobId">): Promise<PipelineHandle>;
}

/**
 * Steps run one after the other, each on whatever worker is free (Dramatiq's `pipeline`).
 *
 * How a step gets the previous result: a step built without a payload (`parse.message()`) receives
 * the previous step's return value as its payload, so its actor's schema must accept that value. A
 * step built with a payload (`notify.message({ to })`) keeps it and ignores the previous result.
 * A step that does not complete (dead after its retries, failed, aborted) stops the pipeline.
 *
 * Every step's job id is chosen at send, so the handle can follow the steps before they exist.
 */
export function pipeline(steps: readonly MessageSpec[]): Pipeline {
  if (steps.length === 0) throw new ConfigError("a pipeline needs at least one step");
  const [first] = steps;
  if (first!.payload === undefined) registry.get(first!.actor)?.validate(undefined);
  return {
    steps,
    async send(options = {}) {
      const ids = steps.map(() => crypto.randomUUID());
      const rest: PipeStep[] = steps.slice(1).map((spec, n) => ({
        id: ids[n + 1]!, actor: spec.actor, queue: spec.queue, priority: spec.priority,
        ...(spec.payload !== undefined ? { payload: spec.payload } : {}),
        ...((registry.get(spec.actor)?.options.resultTtl ?? 1) > 0 ? { tracked: true } : {}),
      }));
      const message = buildMessage(first!.actor, first!.queue, first!.priority, first!.payload, { jobId: ids[0]! });
      if (rest.length > 0) message.pipe = rest;
      const [handle] = await enqueueMessages([message], { ...first!.options, ...options });
      const later = rest.map((s) => new JobHandle(s.id, s.queue, s.actor));
      return new PipelineHandle([handle!, ...later]);
    },
  };
}

export class PipelineHandle {
  /** One handle per step; a later step has no record (UnknownJobError) until the one before completes. */
  constructor(readonly jobs: readonly JobHandle[]) {}

  /**
   * The last step's return value once every step completed. Rejects with PipelineStepFailed naming
   * the step that stopped it (`cause`: its error), or TimeoutError after `timeout` ms in total.
   */
  async result<R = unknown>(options: ResultOptions = {}): Promise<R> {
    const all = await this.results(options);
    return all[all.length - 1] as R;
  }

  /** Every step's return value, in order. */
  async results(options: ResultOptions = {}): Promise<unknown[]> {
    const deadline = options.timeout !== undefined ? Date.now() + options.timeout : undefined;
    const values: unknown[] = [];
    for (const [step, job] of this.jobs.entries()) {
      // A step's record is written when the step before it completes, before that one is acked,
      // so once step n is seen completed, step n+1 is known.
      const left = deadline !== undefined ? { timeout: Math.max(0, deadline - Date.now()) } : {};
      try {
        values.push(await job.result(left));
      } catch (error) {
        if (error instanceof TimeoutError || error instanceof UnknownJobError) throw error;
        throw new PipelineStepFailed(step, job.id, job.actor ?? "?", error as Error);
      }
    }
    return values;
  }

  /** Aborts the step that is pending now; the steps after it then never run. */
  async abort(): Promise<AbortResult | undefined> {
    for (const job of this.jobs) {
      const info = await job.info().catch(() => undefined);
      if (!info) return undefined; // not sent yet: the step before it was finished or aborted
      if (!FINISHED.has(info.status)) return await job.abort();
      if (info.status !== "completed") return { aborted: false, status: info.status, message: `pipeline already stopped at job "${job.id}"` };
    }
    return undefined;
  }
}
