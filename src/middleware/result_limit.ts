import { settings } from "../config.ts";
import { ResultTooLarge, serializeError } from "../errors.ts";
import type { Middleware } from "../middleware.ts";
import { jsonBytes } from "../results/record.ts";

/**
 * Refuses a return value bigger than `maxResultBytes` (settings; env DRAY_MAX_RESULT_BYTES) before it
 * is stored or handed to the next pipeline step: the job is recorded as failed with ResultTooLarge,
 * not retried (it would return the same) and not dead-lettered (its work is done).
 */
export const resultLimit: Middleware = {
  name: "resultLimit",
  afterProcess({ actor, delivery }, outcome, decision) {
    if (outcome.status !== "ok" || decision.kind !== "ack" || outcome.value === undefined) return;
    if (actor.options.resultTtl === 0 && !delivery.message.pipe) return; // kept nowhere
    const cap = settings().maxResultBytes;
    const bytes = jsonBytes(JSON.stringify(outcome.value) ?? "null", cap);
    if (bytes <= cap) return;
    const error = new ResultTooLarge(
      `the result of actor "${actor.name}" is ${bytes} bytes of JSON; the cap is ${cap} (maxResultBytes): ` +
      "store big results elsewhere (a blob store, a database) and return a reference",
    );
    return { kind: "discard", status: "failed", error: serializeError(error) };
  },
};
