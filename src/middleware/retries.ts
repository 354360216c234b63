import type { Middleware } from "../middleware.ts";

/**
 * Exponential backoff with jitter: the nth retry waits between half and all of
 * min(maxBackoff, minBackoff * 2^n), and never less than minBackoff (Dramatiq's rule, bounded below).
 */
export function backoff(retries: number, minBackoff: number, maxBackoff: number, random = Math.random): number {
  const ceiling = Math.min(maxBackoff, minBackoff * 2 ** Math.min(retries, 52));
  return Math.min(maxBackoff, Math.max(minBackoff, Math.round(ceiling / 2 + random() * (ceiling / 2))));
}

/** Retries failed jobs up to the actor's `maxRetries`; `final` errors (schema, `throws`) are not retried. */
export const retries: Middleware = {
  name: "retries",
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
