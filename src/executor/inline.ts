import { newRedis, type RedisClient } from "../broker/connection.ts";
import type { Logger } from "pino";
import type { Actor } from "../actor.ts";
import { JobAborted, serializeError, TimeLimitExceeded } from "../errors.ts";
import { runJob } from "./run_job.ts";
import type { Executor, JobOutcome, JobRequest } from "./types.ts";

export interface InlineExecutorOptions {
  registry: ReadonlyMap<string, Actor>;
  concurrency: number;
  logger: Logger;
  redisUrl?: string;
  /** After the time limit aborts the signal, how long the handler has to settle. @default 250 */
  graceMs?: number;
}

/**
 * Runs handlers on the supervisor's own thread. Time limits are cooperative only: the signal aborts
 * and the job is reported as TimeLimitExceeded, but a handler that ignores the signal keeps running
 * (and a CPU loop blocks the supervisor). Use it for tests and trusted I/O-bound jobs; the thread
 * and process executors stop jobs for real.
 */
export class InlineExecutor implements Executor {
  readonly capacity: number;
  readonly #options: InlineExecutorOptions;
  readonly #running = new Map<string, { controller: AbortController; interrupt: (o: JobOutcome) => void }>();
  #redis: RedisClient | undefined;

  constructor(options: InlineExecutorOptions) {
    this.capacity = options.concurrency;
    this.#options = options;
  }

  async start(): Promise<void> {}

  run(job: JobRequest): Promise<JobOutcome> {
    const controller = new AbortController();
    let interrupt!: (o: JobOutcome) => void;
    const interrupted = new Promise<JobOutcome>((resolve) => (interrupt = resolve));
    this.#running.set(job.id, { controller, interrupt });
    const grace = this.#options.graceMs ?? 250;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const limit = new Promise<JobOutcome>((resolve) => {
      timer = setTimeout(() => {
        controller.abort(new TimeLimitExceeded(job.timeLimit));
        timer = setTimeout(() => resolve({
          status: "error",
          error: serializeError(new TimeLimitExceeded(job.timeLimit, "the inline executor cannot stop the handler")),
          final: false,
          duration: job.timeLimit + grace,
        }), grace);
      }, job.timeLimit);
    });
    const run = runJob(this.#options.registry, job, controller.signal, {
      logger: this.#options.logger,
      redis: () => (this.#redis ??= newRedis(this.#options.redisUrl ?? "redis://127.0.0.1:6379")),
    }).then((outcome) => {
      // A handler that stopped because its signal fired was stopped by the limit.
      if (controller.signal.aborted && outcome.status === "error") {
        return { ...outcome, error: serializeError(controller.signal.reason) };
      }
      return outcome;
    });
    return Promise.race([run, limit, interrupted]).finally(() => {
      clearTimeout(timer);
      this.#running.delete(job.id);
    });
  }

  /** Signals the job; if its handler has not settled after the grace period, it is reported aborted (it cannot be stopped). */
  abort(jobId: string, reason: string): void {
    const running = this.#running.get(jobId);
    if (!running || running.controller.signal.aborted) return;
    running.controller.abort(new JobAborted(reason));
    const started = performance.now();
    setTimeout(() => running.interrupt({
      status: "error",
      error: serializeError(new JobAborted(`${reason} (the inline executor cannot stop the handler)`)),
      final: true,
      duration: performance.now() - started,
    }), this.#options.graceMs ?? 250);
  }

  /** Jobs still running are reported interrupted (and given back); their handlers cannot be stopped. */
  async close(): Promise<void> {
    for (const { controller, interrupt } of this.#running.values()) {
      controller.abort(new Error("worker shutting down"));
      interrupt({ status: "interrupted", reason: "worker shut down before the job finished" });
    }
    await this.#redis?.quit().catch(() => undefined);
  }
}
