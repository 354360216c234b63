/**
 * What a pool thread (thread.ts) or child process (child.ts) does with jobs: import the app modules
 * once, then run handlers by actor name from this thread's own registry. Nothing in a job message
 * names code or a module, so a message can only ask for actors the app defined.
 */
import { newRedis, type RedisClient } from "../src/broker/connection.ts";
import { registry } from "../src/actor.ts";
import { configure, settings, type TlsSettings } from "../src/config.ts";
import { DrayError, JobAborted, serializeError, TimeLimitExceeded } from "../src/errors.ts";
import type { StopReason } from "../src/executor/deadlines.ts";
import { runJob, type RunTools } from "../src/executor/run_job.ts";
import type { JobOutcome, JobRequest } from "../src/executor/types.ts";

export interface HostConfig {
  /** App module URLs, as the worker resolved them. */
  modules: string[];
  redisUrl: string;
  prefix: string;
  /** The worker's settings().tls as text (portableTls); without it, this host reads DRAY_REDIS_CA itself. */
  tls?: TlsSettings | undefined;
}

/** A running job's signal, made only if its handler asks for it (see runJob). */
interface Running {
  job: JobRequest;
  controller: AbortController | undefined;
  /** Why it was stopped before its handler looked at the signal. */
  stopped: Error | undefined;
}

export class JobHost {
  readonly #running = new Map<number, Running>();
  readonly #tools: RunTools;

  private constructor(tools: RunTools) {
    this.#tools = tools;
  }

  /** Imports the app modules; the worker's settings apply here too, so handlers send where it reads. */
  static async load(config: HostConfig): Promise<JobHost> {
    configure({ redisUrl: config.redisUrl, prefix: config.prefix, ...(config.tls ? { tls: config.tls } : {}) });
    for (const url of config.modules) await import(url);
    let redis: RedisClient | undefined;
    return new JobHost({ logger: settings().logger, redis: () => (redis ??= newRedis(config.redisUrl)) });
  }

  get running(): number {
    return this.#running.size;
  }

  /** Runs one job to its outcome, which is plain data that survives a thread or process boundary. */
  async run(seq: number, job: JobRequest): Promise<JobOutcome> {
    const r: Running = { job, controller: undefined, stopped: undefined };
    this.#running.set(seq, r);
    const signal = () => {
      if (!r.controller) {
        r.controller = new AbortController();
        if (r.stopped) r.controller.abort(r.stopped);
      }
      return r.controller.signal;
    };
    try {
      const outcome = await runJob(registry, job, signal, this.#tools);
      if (outcome.status !== "ok" || outcome.value === undefined) return outcome;
      try {
        // Only the check: both ways out (JSON text to the pool, JSON IPC to the parent) serialize it.
        JSON.stringify(outcome.value);
        return outcome;
      } catch (error) {
        const e = new DrayError(`the result of actor "${job.actor}" is not JSON-serializable`, { cause: error });
        return { status: "error", error: serializeError(e), final: true, duration: outcome.duration };
      }
    } catch (error) {
      // runJob never throws; this guards the boundary anyway, since a thrown task would look like a crash.
      return { status: "error", error: serializeError(error), final: false, duration: 0 };
    } finally {
      this.#running.delete(seq);
    }
  }

  /** Aborts the job's signal (the supervisor decided: time limit or abort). */
  stop(seq: number, why: StopReason): void {
    const r = this.#running.get(seq);
    if (!r || r.stopped) return;
    r.stopped = why === "timeLimit" ? new TimeLimitExceeded(r.job.timeLimit) : new JobAborted("job aborted");
    r.controller?.abort(r.stopped);
  }

  /** Sequence numbers of the jobs running here. */
  seqs(): IterableIterator<number> {
    return this.#running.keys();
  }
}
