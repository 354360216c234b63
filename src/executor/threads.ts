import type { Piscina } from "piscina";
import type { Logger } from "pino";
import { lazy, ownFile } from "../runtime/mod.ts";
import { portableTls, settings } from "../config.ts";
import { ConfigError, reviveError } from "../errors.ts";
import { JobBook, interrupted, type RunningJob } from "./deadlines.ts";
import {
  Cell, cellsPerSlot, decodeResults, encodeBatch, Header, headerAt, headerCells, queueOptions, stopCodes, uncount,
  type BatchTask, type ThreadBatch, type ThreadData, type ThreadReport,
} from "./thread_protocol.ts";
import type { Executor, JobOutcome, JobRequest, PoolHooks } from "./types.ts";

export interface PoolOptions {
  /** App module URLs every thread (or process) imports to build its own registry. */
  modules: string[];
  /** Jobs running at once, spread over the threads. */
  concurrency: number;
  /** Threads (or processes) in the pool; never more than `concurrency`. */
  threads: number;
  /**
   * Jobs sent to the threads (processes) ahead of a free slot, beyond `concurrency`: they wait there
   * and start the moment a job there ends. @default concurrency
   */
  prefetch?: number | undefined;
  /** A thread (process) whose memory passes this is recycled; its jobs go back to their queue. */
  maxMemoryMb?: number | undefined;
  logger: Logger;
  redisUrl: string;
  prefix: string;
  /** After the signal aborts, how long a handler has to settle before its host is stopped, ms. @default 100 */
  graceMs?: number | undefined;
  /** How long start() waits for every host to import the app modules, ms. @default 60_000 */
  startTimeoutMs?: number | undefined;
  /** Told of time-limit kills and replaced hosts (metrics). */
  hooks?: PoolHooks | undefined;
}

/** Loaded by the first pool started: see `lazy`. The app modules a thread imports never start one. */
const piscina = lazy<typeof import("piscina")>("piscina");
export const memoryReportMs = 250;

/** A job waiting for the next flush, and how many times it was placed already. */
interface Placement {
  entry: RunningJob;
  tries: number;
}

/**
 * Runs handlers in a piscina pool of worker threads, many per thread. Jobs go out in batches, one
 * piscina task per thread per flush, because a message costs the worker tens of µs of CPU, more than
 * a no-op job itself. Piscina places the batches (by the jobs each thread holds: placeByJobs); the
 * thread reports which jobs start where, so the JobBook can abort a job's signal at its time limit and
 * terminate its thread if it does not stop. Piscina then replaces the thread.
 *
 * The pool takes `prefetch` jobs more than `concurrency`. They wait in the threads, which start one
 * the moment a job ends; a pool-wide count in shared memory keeps what runs at once to `concurrency`.
 * That hop saved (job ends → outcome to the pool → next job to a thread) is about a millisecond per
 * job on a busy 2-core box, which is what a 10 ms I/O job at concurrency 200 loses its throughput to.
 */
export class ThreadExecutor implements Executor {
  readonly capacity: number;
  readonly #o: PoolOptions;
  readonly #threads: number;
  readonly #cells: Int32Array<SharedArrayBuffer>;
  readonly #book: JobBook;
  readonly #ready = new Set<number>();
  /** Jobs placed on each thread (by threadId) and not reported done: running or waiting there. */
  readonly #load = new Map<number, number>();
  #pending: Placement[] = [];
  #pool: Piscina | undefined;
  #startup: { resolve: () => void; reject: (e: Error) => void } | undefined;

  constructor(options: PoolOptions) {
    this.#o = options;
    // The supervisor reads up to capacity: the jobs running plus those waiting in the threads. What
    // runs at once is held to `concurrency` by the threads themselves (Header.started).
    this.capacity = options.concurrency + (options.prefetch ?? options.concurrency);
    this.#threads = Math.max(1, Math.min(options.threads, options.concurrency));
    const cells = (this.#cells = new Int32Array(new SharedArrayBuffer(4 * (cellsPerSlot * this.capacity + headerCells))));
    const at = (slot: number, cell: number) => slot * cellsPerSlot + cell;
    this.#book = new JobBook({
      capacity: this.capacity,
      logger: options.logger,
      graceMs: options.graceMs,
      hooks: options.hooks,
      control: {
        kind: "thread",
        signal(entry, why) {
          entry.beat = Atomics.load(cells, at(entry.slot, Cell.beat));
          // The code first: the thread acts once it sees its own seq.
          Atomics.store(cells, at(entry.slot, Cell.stopCode), stopCodes[why]);
          Atomics.store(cells, at(entry.slot, Cell.stopSeq), entry.seq);
        },
        // Not started yet: the same stop request, which its thread checks before starting it.
        cancel(entry) {
          this.signal(entry, "abort");
        },
        release(entry) {
          // Still counted means its thread never ended it (stopped, died): take it off for the thread.
          uncount(cells, entry.slot, entry.seq);
          Atomics.store(cells, at(entry.slot, Cell.stopSeq), 0);
          Atomics.store(cells, at(entry.slot, Cell.onCpu), 0);
        },
        blocker: (entry) => {
          const beat = Atomics.load(cells, at(entry.slot, Cell.beat));
          const alive = beat !== entry.beat;
          entry.beat = beat;
          if (alive) return undefined;
          return this.#book.jobsOn(entry.host!).find((e) => Atomics.load(cells, at(e.slot, Cell.onCpu)) === e.seq);
        },
        kill: (threadId) => this.#terminate(threadId),
      },
    });
  }

  /** Starts every thread and waits until each has imported the app modules. */
  async start(): Promise<void> {
    const data: ThreadData = {
      modules: this.#o.modules, redisUrl: this.#o.redisUrl, prefix: this.#o.prefix, slots: this.#cells.buffer,
      tls: portableTls(settings().tls),
      memoryEvery: this.#o.maxMemoryMb ? memoryReportMs : 0,
      concurrency: this.#o.concurrency, perThread: Math.ceil(this.#o.concurrency / this.#threads),
    };
    const ready = new Promise<void>((resolve, reject) => (this.#startup = { resolve, reject }));
    const pool = new (piscina().Piscina)({
      filename: ownFile(import.meta.url, "../../workers/thread"),
      minThreads: this.#threads,
      maxThreads: this.#threads,
      concurrentTasksPerWorker: Math.ceil(this.capacity / this.#threads),
      // Piscina's default parks an idle thread in Atomics.wait, which would freeze what handlers left
      // running (timers, sockets) and the thread's own stop polling and memory reports.
      atomics: "disabled",
      loadBalancer: placeByJobs(this.#load),
      workerData: data,
    });
    pool.on("message", (report: ThreadReport) => this.#report(report));
    pool.on("error", (error: Error) => {
      if (this.#startup) this.#startup.reject(error);
      else {
        // Piscina replaces it; one that died running jobs is counted by the book (hostCrashed).
        this.#o.hooks?.hostReplaced?.();
        this.#o.logger.error({ err: error }, "a pool thread failed outside any job");
      }
    });
    this.#pool = pool;
    const timeout = this.#o.startTimeoutMs ?? 60_000;
    const timer = setTimeout(() => this.#startup?.reject(new ConfigError(`pool threads did not start within ${timeout} ms`)), timeout);
    try {
      await ready;
    } catch (error) {
      await pool.destroy().catch(() => undefined);
      throw error;
    } finally {
      clearTimeout(timer);
      this.#startup = undefined;
    }
    this.#o.logger.debug({ threads: this.#threads, concurrency: this.#o.concurrency, prefetch: this.capacity - this.#o.concurrency }, "thread pool ready");
  }

  run(job: JobRequest): Promise<JobOutcome> {
    return this.#book.run(job, (entry) => this.#dispatch(entry));
  }

  abort(jobId: string, reason: string): void {
    this.#book.abort(jobId, reason);
  }

  hosts(): number {
    return this.#ready.size;
  }

  /** Jobs waiting in the threads are given back (interrupted) instead of starting; running ones go on. */
  stopStarting(): void {
    Atomics.store(this.#cells, headerAt(this.#cells, Header.closing), 1);
  }

  async close(graceMs: number): Promise<void> {
    this.stopStarting();
    await this.#book.idle(graceMs);
    this.#book.interruptAll("the worker shut down before the job finished");
    const pool = this.#pool;
    this.#pool = undefined;
    // A runtime that cannot stop a stuck thread must not hold the worker's exit forever.
    await Promise.race([pool?.destroy().catch(() => undefined), new Promise((r) => setTimeout(r, 2_000))]);
  }

  #dispatch(entry: RunningJob, tries = 1): void {
    if (!this.#pool) throw new Error("the thread pool is not running");
    // The supervisor runs a whole read batch in one go: one flush a microtask later sees all of it.
    if (this.#pending.push({ entry, tries }) === 1) queueMicrotask(() => this.#flush());
  }

  /** Sends the pending jobs as at most one batch per thread. */
  #flush(): void {
    const pending = this.#pending.filter((p) => !p.entry.settled);
    this.#pending = [];
    const pool = this.#pool;
    if (!pool) {
      for (const p of pending) this.#book.finish(p.entry.seq, interrupted("the thread pool is not running"));
      return;
    }
    for (const chunk of split(pending, this.#threads)) {
      const batch: ThreadBatch = { tasks: chunk.map(({ entry: e }) => ({ seq: e.seq, slot: e.slot, job: e.job })) };
      const task: BatchTask = { text: encodeBatch(batch), [queueOptions]: { jobs: chunk.length } };
      // Outcomes arrive as "done" reports; the batch's own result carries none.
      pool.run(task).catch((error: unknown) => {
        for (const p of chunk) this.#lost(p.entry, error, p.tries);
      });
    }
  }

  /** Piscina failed the task: its thread exited (stopped by us, or died by itself). */
  #lost(entry: RunningJob, error: unknown, tries: number): void {
    if (entry.settled) return;
    const host = entry.host;
    if (host === undefined) {
      // Piscina placed it on a thread that was being stopped; the job never began, so place it again.
      uncount(this.#cells, entry.slot, entry.seq);
      if (tries < 3 && this.#pool) this.#dispatch(entry, tries + 1);
      else this.#book.finish(entry.seq, interrupted("its thread exited before the job started"));
    } else if (this.#book.wasStopped(host)) {
      this.#book.finish(entry.seq, interrupted(`its thread ${host} was stopped`));
    } else {
      this.#ready.delete(host);
      this.#load.delete(host);
      this.#book.hostCrashed(host, (error as Error)?.message ?? String(error));
    }
  }

  #report(r: ThreadReport): void {
    switch (r.kind) {
      case "start":
        for (const seq of r.seqs) this.#book.started(seq, r.threadId);
        return;
      case "done":
        this.#load.set(r.threadId, (this.#load.get(r.threadId) ?? 0) - r.count);
        // Piscina may settle the batch before or after this report: finish() ignores settled jobs.
        for (const [seq, outcome] of decodeResults(r.results)) this.#book.finish(seq, outcome);
        return;
      case "ready":
        this.#ready.add(r.threadId);
        if (this.#ready.size >= this.#threads) this.#startup?.resolve();
        return;
      case "failed":
        if (this.#startup) this.#startup.reject(reviveError(r.error));
        else this.#o.logger.error({ thread: r.threadId, error: r.error }, "a replacement thread could not import the app modules");
        return;
      case "memory": {
        const limit = this.#o.maxMemoryMb;
        if (!limit || r.bytes <= limit * 1024 * 1024 || this.#book.wasStopped(r.threadId)) return;
        this.#book.stopHost(r.threadId, `it holds ${Math.round(r.bytes / 1024 / 1024)} MB, over --max-memory ${limit} MB`);
        return;
      }
    }
  }

  #terminate(threadId: number): void {
    this.#ready.delete(threadId);
    this.#load.delete(threadId);
    const thread = this.#pool?.threads.find((t) => t.threadId === threadId);
    void thread?.terminate();
  }
}

type Balancer = NonNullable<NonNullable<ConstructorParameters<typeof Piscina>[0]>["loadBalancer"]>;

/**
 * The pool's balancer: a batch goes to the thread with the fewest jobs placed on it and not reported
 * done (`load`, by threadId, which it adds the batch to). Piscina's own balancer counts batches: a
 * thread holding one batch of 100 jobs looked less busy than one holding three of 2, got the next
 * batch too, and the other ran out of waiting jobs and left slots idle. In an io run at --threads 2
 * --concurrency 200 this halved the gap between the threads' loads (65-81 jobs to 35-48).
 */
export function placeByJobs(load: Map<number, number>): Balancer {
  return (task, workers) => {
    let best: (typeof workers)[number] | null = null;
    let least = Infinity;
    for (const w of workers) {
      if (w.terminating || w.destroyed) continue;
      const jobs = load.get(w.id) ?? 0;
      if (jobs < least) [best, least] = [w, jobs];
    }
    // Piscina hands the balancer the task's queue options, not the task: see BatchTask.
    const batch = (task as unknown as { [queueOptions]?: BatchTask[typeof queueOptions] })[queueOptions]?.jobs ?? 1;
    if (best) load.set(best.id, least + batch);
    return best;
  };
}

/** `items` in at most `parts` contiguous chunks whose sizes differ by one at most. */
function split<T>(items: T[], parts: number): T[][] {
  const n = Math.min(parts, items.length);
  const chunks: T[][] = [];
  for (let i = 0, from = 0; i < n; i++) {
    const size = Math.floor(items.length / n) + (i < items.length % n ? 1 : 0);
    chunks.push(items.slice(from, from + size));
    from += size;
  }
  return chunks;
}
