import { buildMessage, checkSendOptions, enqueueMessages, registry, type SendOptions } from "./actor.ts";
import { useBroker } from "./client.ts";
import type { ActorMeta } from "./broker/types.ts";
import { UnknownActorError } from "./errors.ts";
import type { JobHandle } from "./job.ts";

const published = new Map<string, ActorMeta>();

/**
 * Sends to an actor by name, from code that does not import it (Dramatiq's `send_task`, ARQ's
 * `enqueue_task`). The queue comes from the actor if this process defines it, else from what workers
 * published to Redis, else from `options.queue`; otherwise it fails and nothing is sent.
 */
export async function sendTask(
  name: string,
  payload: unknown,
  options: SendOptions & { queue?: string; priority?: number } = {},
): Promise<JobHandle> {
  const { queue, priority, ...send } = options;
  checkSendOptions(send);
  const local = registry.get(name);
  if (local) {
    local.validate(payload);
    const message = buildMessage(name, queue ?? local.options.queue, priority ?? local.options.priority, payload, send);
    return (await enqueueMessages([message], send))[0]!;
  }
  let meta = published.get(name);
  if (!meta && queue === undefined) {
    meta = await useBroker().lookupActor(name);
    if (meta) published.set(name, meta);
  }
  if (!meta && queue === undefined) {
    throw new UnknownActorError(name, "no worker has published it and no queue option was given; nothing was sent");
  }
  const message = buildMessage(name, queue ?? meta!.queue, priority ?? meta?.priority ?? 0, payload, send);
  return (await enqueueMessages([message], send))[0]!;
}
