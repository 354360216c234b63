import { enqueueMessages } from "../actor.ts";
import type { Message } from "../message.ts";
import type { Middleware } from "../middleware.ts";

/**
 * Sends the next step of a pipeline when a step completes, before that step is acked: if the worker
 * dies in between, the step runs again and sends the next one again, which its pre-assigned job id
 * (dedup) turns into a no-op. A step that does not complete (dead, failed, aborted) sends nothing, so
 * the pipeline stops there.
 */
export const pipelines: Middleware = {
  name: "pipelines",
  // Synchronous for a job that is no pipeline step (most): no promise unless there is a next step.
  afterProcess({ delivery, broker }, outcome, decision) {
    const [next, ...rest] = delivery.message.pipe ?? [];
    if (!next || outcome.status !== "ok" || decision.kind !== "ack") return undefined;
    const message: Message = {
      id: next.id,
      actor: next.actor,
      queue: next.queue,
      // A step built with a payload keeps it; one built without gets the previous step's result.
      payload: "payload" in next ? next.payload : outcome.value,
      priority: next.priority,
      sentAt: Date.now(),
      dedup: true,
      ...(next.tracked ? { tracked: true } : {}),
      ...(delivery.message.meta ? { meta: delivery.message.meta } : {}),
      ...(rest.length > 0 ? { pipe: rest } : {}),
    };
    return enqueueMessages([message], {}, broker).then(() => undefined);
  },
};
