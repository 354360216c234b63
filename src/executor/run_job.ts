import type { RedisClient } from "../broker/connection.ts";
import type { Logger } from "pino";
import type { Actor, JobContext } from "../actor.ts";
import { PayloadValidationError, serializeError, UnknownActorError } from "../errors.ts";
import type { JobOutcome, JobRequest } from "./types.ts";

export interface RunTools {
  logger: Logger;
  redis: () => RedisClient;
}

/**
 * Runs one job's handler where it stands (thread, child process or the supervisor itself) and
 * turns whatever happens into an outcome. The caller keeps the time limit. `signal` may be a
 * function that makes it on first use: most handlers never look, and an AbortController per job
 * costs a thread more than a no-op job.
 */
export async function runJob(
  registry: ReadonlyMap<string, Actor>,
  job: JobRequest,
  signal: AbortSignal | (() => AbortSignal),
  tools: RunTools,
): Promise<JobOutcome> {
  const started = performance.now();
  const a = registry.get(job.actor);
  if (!a) {
    const error = new UnknownActorError(job.actor, "not defined in the modules this worker loaded");
    return { status: "error", error: serializeError(error), final: true, duration: 0 };
  }
  try {
    const payload = a.validate(job.payload);
    // The child logger is made on first use: most handlers never log, and it costs per job.
    let logger: JobContext["logger"] | undefined;
    const ctx: JobContext = {
      jobId: job.id,
      attempt: job.attempt,
      queue: job.queue,
      actor: job.actor,
      get signal() {
        return typeof signal === "function" ? signal() : signal;
      },
      meta: job.meta ?? {},
      get logger() {
        return (logger ??= tools.logger.child({ jobId: job.id, actor: job.actor }));
      },
      get redis() {
        return tools.redis();
      },
    };
    const value = await a.handler(payload, ctx);
    if (typeof value === "function" || typeof value === "symbol") {
      return { status: "ok", value: null, duration: performance.now() - started };
    }
    return { status: "ok", value, duration: performance.now() - started };
  } catch (error) {
    const final = error instanceof PayloadValidationError || a.options.throws.some((cls) => error instanceof cls);
    return { status: "error", error: serializeError(error), final, duration: performance.now() - started };
  }
}
