import type { Logger } from "pino";
import type { JobOutcome } from "../executor/types.ts";
import type { Delivery } from "../message.ts";
import type { Middleware } from "../middleware.ts";
import type { CronJob } from "./cron.ts";
import type { CronRun } from "./history.ts";
import type { CronStore } from "./store.ts";

export interface CronRunsOptions {
  store: CronStore;
  logger: Logger;
  /** Where lockTtl and historySize come from; a cron missing here gets the defaults. */
  jobs: ReadonlyMap<string, CronJob>;
}

/** Results longer than this (as JSON) are kept as a cut preview, so the history stays small. */
const MAX_RESULT_CHARS = 8_192;
const DEFAULT_HISTORY = 1000;

/**
 * The overlap lock and run history of cron jobs (TaskIQ's `@cron(lock_ttl=…)` with run tracking),
 * as middleware: before a cron job runs it takes its cron's lock for `lockTtl` and records RUNNING;
 * if the previous run still holds the lock, the run is recorded SKIPPED and acked without running.
 * After the run the lock is released and the run recorded COMPLETED or FAILED. Jobs that did not
 * come from a tick pass through untouched.
 */
export function cronRuns(options: CronRunsOptions): Middleware {
  const { store, logger, jobs } = options;
  const startedAt = new WeakMap<Delivery, number>();

  return {
    name: "cronRuns",
    async beforeProcess({ delivery, actor }) {
      const { message } = delivery;
      if (!message.cron) return;
      const job = jobs.get(message.cron.name);
      const now = Date.now();
      const run = baseRun(delivery, now);
      const skipped: CronRun = { ...run, status: "SKIPPED", completedAt: now, duration: 0,
        error: { name: "Locked", message: "the previous run still holds the overlap lock" } };
      const go = await store.run({ queue: message.queue, cron: message.cron.name, mode: "start", jobId: message.id,
        lockTtl: job?.options.lockTtl ?? actor.options.timeLimit, runId: runId(delivery), run, skipped, score: now,
        cap: job?.options.historySize ?? DEFAULT_HISTORY });
      if (go === 1) {
        startedAt.set(delivery, now);
        return;
      }
      logger.info({ cron: message.cron.name, tick: new Date(message.cron.tick).toISOString(), id: message.id },
        "cron run skipped: the previous run still holds the overlap lock");
      return { kind: "ack" };
    },
    async afterProcess({ delivery }, outcome) {
      const { message } = delivery;
      const began = startedAt.get(delivery);
      if (!message.cron || began === undefined) return;
      startedAt.delete(delivery);
      const run = finishedRun(baseRun(delivery, began), outcome);
      try {
        await store.run({ queue: message.queue, cron: message.cron.name, mode: "finish", jobId: message.id, lockTtl: 0,
          runId: runId(delivery), run, score: began, cap: jobs.get(message.cron.name)?.options.historySize ?? DEFAULT_HISTORY });
      } catch (error) {
        // Throwing here would give a finished job back to run again; the lock expires by itself.
        logger.warn({ err: error, cron: message.cron.name, id: message.id }, "recording a cron run failed");
      }
    },
  };
}

/** Each attempt is a run; a redelivery after a crash keeps the attempt number and so overwrites it. */
function runId(delivery: Delivery): string {
  return `${delivery.message.id}#${delivery.retries + 1}`;
}

function baseRun(delivery: Delivery, startedAt: number): CronRun {
  const { message } = delivery;
  return {
    cron: message.cron!.name,
    tick: message.cron!.tick,
    jobId: message.id,
    attempt: delivery.retries + 1,
    status: "RUNNING",
    startedAt,
  };
}

function finishedRun(run: CronRun, outcome: JobOutcome): CronRun {
  const completedAt = Date.now();
  const done = { ...run, completedAt, duration: completedAt - run.startedAt };
  switch (outcome.status) {
    case "ok": {
      const json = outcome.value === undefined ? undefined : JSON.stringify(outcome.value);
      const result = json === undefined ? undefined
        : json.length <= MAX_RESULT_CHARS ? outcome.value
        : { preview: json.slice(0, MAX_RESULT_CHARS), truncated: true };
      return { ...done, status: "COMPLETED", duration: Math.round(outcome.duration), ...(result !== undefined ? { result } : {}) };
    }
    case "error":
      return { ...done, status: "FAILED", duration: Math.round(outcome.duration),
        error: { name: outcome.error.name, message: outcome.error.message } };
    case "interrupted":
      // The job goes back to its queue with the same attempt number, so its rerun overwrites this.
      return { ...done, status: "FAILED", error: { name: "Interrupted", message: outcome.reason } };
  }
}
