import type { SendRequest } from "../broker/types.ts";
import type { CronJob } from "./cron.ts";
import { describeCron, type CronRun, type PublishedCron } from "./history.ts";
import type { CronLock, CronRenewal, CronRunStep, CronStore, CronWrite } from "./store.ts";

/**
 * Cron state in memory, for the MemoryBroker (`cronStoreFor(broker)`): the same rules as the Redis store's
 * scripts, for the tickers of one process. Each write and run step is atomic because its checks and
 * updates happen in one synchronous stretch, before anything is awaited.
 */
export class MemoryCronStore implements CronStore {
  readonly #enqueue: (requests: SendRequest[]) => Promise<boolean[]>;
  readonly #last = new Map<string, number>();
  readonly #locks = new Map<string, { jobId: string; until: number }>();
  readonly #runs = new Map<string, Map<string, { score: number; run: CronRun }>>();

  /** `enqueue`: the broker's, whose dedup keeps a tick from being sent twice. */
  constructor(enqueue: (requests: SendRequest[]) => Promise<boolean[]>) {
    this.#enqueue = enqueue;
  }

  async read(jobs: CronJob[]): Promise<{ now: number; last: Array<number | undefined> }> {
    return { now: Date.now(), last: jobs.map((job) => this.#last.get(key(job.actor.options.queue, job.name))) };
  }

  async write(writes: CronWrite[]): Promise<number[]> {
    const now = Date.now();
    const replies = writes.map((w): number | Promise<number> => {
      const k = key(w.job.actor.options.queue, w.job.name);
      const cur = this.#last.get(k);
      if (w.kind === "begin") {
        if (cur !== undefined) return 0;
        this.#last.set(k, w.now);
        return 1;
      }
      if (cur === undefined) {
        this.#last.set(k, Math.min(w.newLast, now));
        return 0;
      }
      const due = w.messages.filter((m) => m.cron!.tick > cur && m.cron!.tick <= now);
      const moved = w.newLast > cur && w.newLast <= now;
      if (moved) this.#last.set(k, w.newLast);
      // Called now, not after an await: the broker takes the dedup holds in this same stretch.
      const sent = due.length > 0 ? this.#enqueue(due.map((message) => ({ message }))) : Promise.resolve([]);
      return sent.then((accepted) => (moved ? accepted.filter(Boolean).length : -1));
    });
    return await Promise.all(replies);
  }

  async run(s: CronRunStep): Promise<number> {
    const k = key(s.queue, s.cron);
    const now = Date.now();
    const lock = this.#locks.get(k);
    const holder = lock !== undefined && lock.until > now ? lock.jobId : undefined;
    if (s.mode === "finish") {
      if (holder === s.jobId) this.#locks.delete(k);
      this.#record(k, s, s.run);
      return 1;
    }
    if (s.lockTtl > 0 && holder !== undefined && holder !== s.jobId) {
      this.#record(k, s, s.skipped ?? s.run);
      return 0;
    }
    if (s.lockTtl > 0) this.#locks.set(k, { jobId: s.jobId, until: now + s.lockTtl });
    this.#record(k, s, s.run);
    return 1;
  }

  async renew(l: CronLock): Promise<CronRenewal> {
    const lock = this.#locks.get(key(l.queue, l.cron));
    const now = Date.now();
    if (lock === undefined || lock.until <= now) return "expired";
    if (lock.jobId !== l.jobId) return "taken";
    lock.until = now + l.lockTtl;
    return "renewed";
  }

  #record(k: string, s: CronRunStep, run: CronRun): void {
    let runs = this.#runs.get(k);
    if (!runs) this.#runs.set(k, (runs = new Map()));
    runs.set(s.runId, { score: s.score, run });
    if (runs.size <= s.cap) return;
    for (const [runId] of oldestFirst(runs).slice(0, runs.size - s.cap)) runs.delete(runId);
  }

  /** Nothing reads it back: the CLI that lists crons works on Redis. */
  readonly #published = new Map<string, PublishedCron>();

  async publish(jobs: Iterable<CronJob>): Promise<void> {
    for (const job of jobs) this.#published.set(job.name, describeCron(job));
  }

  async published(): Promise<PublishedCron[]> {
    return [...this.#published.values()].sort((a, b) => a.name.localeCompare(b.name));
  }

  async history(cron: { name: string; queue: string }, limit = 100): Promise<CronRun[]> {
    const runs = oldestFirst(this.#runs.get(key(cron.queue, cron.name)) ?? new Map()).reverse();
    return runs.slice(0, Math.max(0, limit)).map(([, r]) => r.run);
  }
}

const key = (queue: string, cron: string) => JSON.stringify([queue, cron]);

/** By start time, then by run id: the order of the Redis store's sorted set, ties included. */
function oldestFirst(runs: Map<string, { score: number; run: CronRun }>): Array<[string, { score: number; run: CronRun }]> {
  return [...runs].sort(([idA, a], [idB, b]) => a.score - b.score || (idA < idB ? -1 : idA > idB ? 1 : 0));
}
