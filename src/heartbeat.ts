/**
 * A worker's place on the roll (`dray workers`, `getWorkers()`): it writes what it is and what it has
 * done through `broker.control.heartbeat` at start and every `everyMs`. Each entry carries its own
 * expiry, three beats ahead, so a worker that dies without a word (SIGKILL, host gone) drops off by
 * itself; one that stops cleanly takes its entry off at once.
 */
import { clearInterval, setInterval } from "node:timers";
import type { Logger } from "pino";
import type { Control, WorkerInfo } from "./broker/types.ts";
import { ConfigError } from "./errors.ts";
import type { Events, WorkerEventMap } from "./events.ts";
import { defaultIsolation, type Isolation } from "./executor/mod.ts";
import { cpuCount, env, hostname, pid, runtime } from "./runtime/mod.ts";
import { within } from "./timers.ts";

export const defaultHeartbeatMs = 5_000;

/** Longer than this, setInterval fires at once instead (Node and Bun clamp it to 1 ms): a busy loop. */
const maxHeartbeatMs = 2_147_483_647;

/**
 * The beat interval: `option` when given, else env DRAY_HEARTBEAT_MS (how `dray worker` takes it),
 * else 5000. Anything but a positive whole number of ms is a ConfigError, before the worker starts.
 */
export function heartbeatEvery(option: number | undefined): number {
  if (option !== undefined) {
    if (Number.isInteger(option) && option > 0 && option <= maxHeartbeatMs) return option;
    throw new ConfigError(`heartbeatMs must be a positive whole number of ms (at most ${maxHeartbeatMs}), not ${String(option)}`);
  }
  const raw = env("DRAY_HEARTBEAT_MS");
  // Unset and empty alike mean the default, as for DRAY_PREFIX.
  if (!raw) return defaultHeartbeatMs;
  const n = Number(raw);
  if (/^\s*\d+\s*$/.test(raw) && n > 0 && n <= maxHeartbeatMs) return n;
  throw new ConfigError(`DRAY_HEARTBEAT_MS must be a positive whole number of ms (at most ${maxHeartbeatMs}), not "${raw}"`);
}

/** What the heartbeat reads from the supervisor: its queues, its running count and its events. */
export interface Beating {
  readonly queues: string[];
  readonly running: number;
  readonly events: Events<WorkerEventMap>;
}

export interface HeartbeatOptions {
  control: Control;
  supervisor: Beating;
  logger: Logger;
  /** The worker's consumer name, so an entry names the consumer that holds its jobs. */
  id: string;
  everyMs: number;
  /** The worker's options as given; defaults are resolved here as createExecutor resolves them. */
  isolation: Isolation | undefined;
  concurrency: number;
  threads: number | undefined;
}

export interface Heartbeat {
  /** Stops beating and removes the entry; gives up after `ms` (Redis away), leaving it to lapse. */
  stop(ms?: number): Promise<void>;
}

/** Beats now and every `everyMs` until stopped. The timer never keeps a process alive on its own. */
export function startHeartbeat(o: HeartbeatOptions): Heartbeat {
  const isolation = o.isolation ?? defaultIsolation();
  const startedAt = Date.now();
  const fixed = {
    id: o.id, host: hostname(), pid: pid(), runtime: runtime(), queues: [...o.supervisor.queues], isolation,
    concurrency: o.concurrency,
    // The pool's size as the executors make it: no more hosts than jobs at once; none when inline.
    threads: isolation === "inline" ? 0 : Math.max(1, Math.min(o.threads ?? cpuCount(), o.concurrency)),
    startedAt,
  };
  const counts = countOutcomes(o.supervisor.events);
  let inflight: Promise<void> | undefined;
  const beat = () => {
    // A beat still waiting: on a patient connection it waits for Redis to come back, and another
    // would only queue behind it.
    if (inflight) return;
    const now = Date.now();
    const info: WorkerInfo = { ...fixed, beatAt: now, expiresAt: now + 3 * o.everyMs, running: o.supervisor.running,
      processed: counts.processed, failed: counts.failed };
    inflight = attempt(() => o.control.heartbeat(info))
      .catch((error: unknown) => o.logger.debug({ err: error }, "heartbeat failed; trying again at the next beat"))
      .finally(() => (inflight = undefined));
  };
  beat();
  const timer = setInterval(beat, o.everyMs);
  timer.unref();
  let stopping: Promise<void> | undefined;
  return {
    stop: (ms = 1_000) => (stopping ??= (async () => {
      clearInterval(timer);
      counts.off();
      const deadline = Date.now() + ms;
      // A beat landing after the removal would put the entry back until it lapses.
      await within(inflight, deadline - Date.now());
      const removed = attempt(() => o.control.removeWorker(o.id)).then(() => true, (error: unknown) => {
        o.logger.debug({ err: error }, "could not remove this worker's heartbeat; it lapses by itself");
        return true;
      });
      if (!(await within(removed, deadline - Date.now()))) {
        o.logger.debug({ ms }, "removing this worker's heartbeat took too long; it lapses by itself");
      }
    })()),
  };
}

/**
 * Counts what the supervisor settled. processed: every settled outcome (job:complete, job:retry,
 * job:dead, job:discarded), so a job retried twice then completed counts three times, one per run.
 * failed: the runs that did not succeed (job:retry, job:dead, and job:discarded as failed or aborted).
 * A cron tick skipped under its overlap lock is processed, not failed: nothing went wrong. A job given
 * back uncharged (job:returned: shutdown, rate limit) is neither: it was not settled here.
 */
function countOutcomes(events: Events<WorkerEventMap>): { processed: number; failed: number; off(): void } {
  let processed = 0;
  let failed = 0;
  const settled = (ok: boolean) => {
    processed++;
    if (!ok) failed++;
  };
  const offs = [
    events.on("job:complete", () => settled(true)),
    events.on("job:retry", () => settled(false)),
    events.on("job:dead", () => settled(false)),
    events.on("job:discarded", (e) => settled(e.status === "skipped")),
  ];
  return {
    get processed() { return processed; },
    get failed() { return failed; },
    off: () => offs.forEach((off) => off()),
  };
}

/** Runs `call`, turning a synchronous throw (a custom Control) into a rejection: one path for both. */
function attempt(call: () => Promise<void>): Promise<void> {
  try {
    return call();
  } catch (error) {
    return Promise.reject(error);
  }
}
