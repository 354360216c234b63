import { serializeError, WorkerCrashed } from "../errors.ts";
import type { Middleware } from "../middleware.ts";

/**
 * Claims on one message that may be lost before it is dead-lettered instead of delivered again: a
 * worker killed (or stalled past the visibility timeout) while holding it, this many times. Apart
 * from `maxRetries`, like BullMQ's `maxStalledCount`, so that a crashed worker's jobs still run once
 * more even with `maxRetries: 0`; a message that kills every worker that runs it stops there.
 */
export const maxLostClaims = 2;

/**
 * Exponential backoff with jitter: the nth retry waits between half and all of
 * min(maxBackoff, minBackoff * 2^n), and never less than minBackoff (Dramatiq's rule, bounded below).
 */
export function backoff(retries: number, minBackoff: number, maxBackoff: number, random = Math.random): number {
  const ceiling = Math.min(maxBackoff, minBackoff * 2 ** Math.min(retries, 52));
  return Math.min(maxBackoff, Math.max(minBackoff, Math.round(ceiling / 2 + random() * (ceiling / 2))));
}

/**
 * Retries failed jobs up to the actor's `maxRetries`; `final` errors (schema, `throws`) are not retried.
 * Before a job runs, a delivery with more than {@link maxLostClaims} lost claims is dead-lettered.
 */
export const retries: Middleware = {
  name: "retries",
  beforeProcess({ delivery }) {
    const lost = delivery.lost ?? 0;
    if (lost <= maxLostClaims) return;
    const error = new WorkerCrashed(`delivered ${lost + 1} times and never settled: the worker holding it died ` +
      `${lost} times (at most ${maxLostClaims} allowed), so it is not run again`);
    return { kind: "deadLetter", error: serializeError(error) };
  },
  afterProcess({ delivery, actor }, outcome) {
    if (outcome.status !== "error" || outcome.final) return;
    if (delivery.retries >= actor.options.maxRetries) return; // the base decision: dead letter
    const asked = outcome.error.name === "Retry" ? outcome.error.fields?.delay : undefined;
    const delay = typeof asked === "number"
      ? asked
      : backoff(delivery.retries, actor.options.minBackoff, actor.options.maxBackoff);
    return { kind: "retry", delay };
  },
};
