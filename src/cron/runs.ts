import type { Logger } from "pino";
import type { JobOutcome } from "../executor/types.ts";
import type { Delivery } from "../message.ts";
import type { Decision, Middleware } from "../middleware.ts";
import type { CronJob } from "./cron.ts";
import type { CronRun } from "./history.ts";
import type { CronLock, CronStore } from "./store.ts";

export interface CronRunsOptions {
  store: CronStore;
  logger: Logger;
  /** Where lockTtl and historySize come from; a cron missing here gets the defaults. */
  jobs: ReadonlyMap<string, CronJob>;
}

/** Results longer than this (as JSON) are kept as a cut preview, so the history stays small. */
const MAX_RESULT_CHARS = 8_192;
const DEFAULT_HISTORY = 1000;
/** Why a tick did not run: in its SKIPPED run and in its job's record ("skipped"). */
const LOCKED = { name: "Locked", message: "the previous run still holds the overlap lock" };

/** A run that went ahead here: when it started, and the timer keeping its lock. */
interface Running {
  began: number;
  renewal: { stop(): void } | undefined;
}

/**
 * The overlap lock and run history of cron jobs (TaskIQ's `@cron(lock_ttl=…)` with run tracking),
 * as middleware: before a cron job runs it takes its cron's lock for `lockTtl` and records RUNNING;
 * if the previous run still holds the lock, the run is recorded SKIPPED and discarded unrun (its job
 * settles "skipped"). While it runs, the lock is renewed, so a run longer than lockTtl still keeps
 * the next ticks out; lockTtl only bounds how long a dead worker's lock blocks them. After the run
 * the lock is released and the run recorded COMPLETED or FAILED. Jobs that did not come from a
 * tick pass through untouched.
 */
export function cronRuns(options: CronRunsOptions): Middleware {
  const { store, logger, jobs } = options;
  const running = new WeakMap<Delivery, Running>();
  const cap = (cron: string) => jobs.get(cron)?.options.historySize ?? DEFAULT_HISTORY;
  /** Releases the lock if this job holds it, and records the run; never throws. */
  const finish = async (delivery: Delivery, run: CronRun, began: number) => {
    const { message } = delivery;
    try {
      await store.run({ queue: message.queue, cron: message.cron!.name, mode: "finish", jobId: message.id, lockTtl: 0,
        runId: runId(delivery), run, score: began, cap: cap(message.cron!.name) });
    } catch (error) {
      // Throwing here would give a finished job back to run again; the lock expires by itself.
      logger.warn({ err: error, cron: message.cron!.name, id: message.id }, "recording a cron run failed");
    }
  };
  /** The run that went ahead here, if any, no longer tracked: its renewal stops. */
  const end = (delivery: Delivery): Running | undefined => {
    const r = running.get(delivery);
    running.delete(delivery);
    r?.renewal?.stop();
    return r;
  };

  return {
    name: "cronRuns",
    async beforeProcess({ delivery, actor }) {
      const { message } = delivery;
      if (!message.cron) return;
      const lockTtl = jobs.get(message.cron.name)?.options.lockTtl ?? actor.options.timeLimit;
      const now = Date.now();
      const run = baseRun(delivery, now);
      const skipped: CronRun = { ...run, status: "SKIPPED", completedAt: now, duration: 0, error: LOCKED };
      const go = await store.run({ queue: message.queue, cron: message.cron.name, mode: "start", jobId: message.id,
        lockTtl, runId: runId(delivery), run, skipped, score: now, cap: cap(message.cron.name) });
      if (go === 1) {
        const lock = { queue: message.queue, cron: message.cron.name, jobId: message.id, lockTtl };
        running.set(delivery, { began: now, renewal: lockTtl > 0 ? renewLock(store, lock, logger) : undefined });
        return;
      }
      logger.info({ cron: message.cron.name, tick: new Date(message.cron.tick).toISOString(), id: message.id },
        "cron run skipped: the previous run still holds the overlap lock");
      // Not an ack: that would record the job completed and tell listeners it ran.
      return { kind: "discard", status: "skipped", error: LOCKED };
    },
    async afterProcess({ delivery }, outcome) {
      const r = end(delivery);
      if (r) await finish(delivery, finishedRun(baseRun(delivery, r.began), outcome), r.began);
    },
    async afterSkip({ delivery }, decision) {
      const r = end(delivery);
      // No decision: this worker lost the job's lease and another runs it now. The lock holds the job
      // id, the same for both, so it is the new holder's to renew and release, and so is its record.
      if (!r || decision === undefined) return;
      await finish(delivery, settledUnrun(baseRun(delivery, r.began), decision), r.began);
    },
  };
}

/**
 * Keeps a running job's overlap lock every lockTtl/3 while this job holds it; one timer per running
 * cron job, unref'd so that it never keeps a process alive. A renewal that finds the lock gone or
 * taken stops: the run goes on, but the next ticks may now run beside it, so it says so.
 */
function renewLock(store: CronStore, lock: CronLock, logger: Logger): { stop(): void } {
  let timer: ReturnType<typeof setTimeout> | undefined;
  let stopped = false;
  // Timers take at most 2^31-1 ms; beyond that they fire at once (a lockTtl from a days-long timeLimit).
  const every = Math.min(2 ** 31 - 1, Math.max(1, Math.floor(lock.lockTtl / 3)));
  const next = () => {
    // Chained, not an interval: a renewal waiting on a slow Redis is never overtaken by the next.
    timer = setTimeout(renew, every);
    timer.unref?.();
  };
  const renew = async () => {
    const log = { cron: lock.cron, id: lock.jobId, lockTtl: lock.lockTtl };
    try {
      const found = await store.renew(lock);
      // Stopped meanwhile: the run ended and released its lock, so a missing lock is no news.
      if (stopped) return;
      if (found === "renewed") return next();
      logger.warn({ ...log, found },
        found === "taken" ? "cron overlap lock held by another job while this run goes on: runs may overlap"
          : "cron overlap lock expired before it was renewed: the next ticks may run beside this one");
    } catch (error) {
      if (stopped) return;
      logger.warn({ ...log, err: error }, "renewing a cron overlap lock failed; trying again");
      next();
    }
  };
  next();
  return {
    stop() {
      stopped = true;
      clearTimeout(timer);
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

/**
 * A run that went ahead here but was settled another way (see afterSkip). Given back or deferred,
 * the same attempt comes again under the same run id and overwrites this.
 */
function settledUnrun(run: CronRun, decision: Decision): CronRun {
  const completedAt = Date.now();
  const error = "error" in decision ? { name: decision.error.name, message: decision.error.message }
    : { name: "NotRun", message: `settled as ${decision.kind} before this run finished here` };
  const failed = decision.kind === "retry" || decision.kind === "deadLetter"
    || (decision.kind === "discard" && decision.status !== "skipped");
  return { ...run, status: failed ? "FAILED" : "SKIPPED", completedAt, duration: completedAt - run.startedAt, error };
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
