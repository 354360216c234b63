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
  /**
   * Threads (processes) started beyond `threads` and kept ready, so that one stopped for a hung job is
   * replaced at once instead of after the new one imports the app modules. Two, not one: the threads'
   * hung jobs often end together, and a replacement takes longer than a time limit of 500 ms on a
   * busy box (bench/README.md, "Hung jobs"). @default min(2, threads)
   */
  spares?: number | undefined;
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
/**
 * A thread whose job has held its CPU this long (no await since its start) gets no new jobs: they
 * would wait behind it, maybe until its time limit.
 */
export const blockedAfterMs = 50;
/** How soon jobs held back (no thread free to take them) are tried again, ms. */
const retryMs = 10;

/** A job waiting for the next flush, and how many times it was placed already. */
interface Placement {
  entry: RunningJob;
  tries: number;
  /** The thread it was last sent to. */
  thread?: number;
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
 * Jobs go only to `threads` threads that can start them: not to one held by a job past its limit or
 * stuck in its synchronous code (a hang waits there until its thread is stopped), and not to the
 * `spares`, started ahead and kept idle until a thread is stopped. While fewer threads can take jobs
 * than `threads`, each takes its share and the rest wait here for the next one.
 * That hop saved (job ends → outcome to the pool → next job to a thread) is about a millisecond per
 * job on a busy 2-core box, which is what a 10 ms I/O job at concurrency 200 loses its throughput to.
 */
export class ThreadExecutor implements Executor {
  readonly capacity: number;
  readonly #o: PoolOptions;
  readonly #threads: number;
  readonly #spares: number;
  readonly #cells: Int32Array<SharedArrayBuffer>;
  readonly #book: JobBook;
  /** Threads that imported the app modules and were not stopped; the first `threads` of them take jobs. */
  readonly #ready = new Set<number>();
  /** Jobs placed on each thread (by threadId) and not reported done: running or waiting there. */
  readonly #load = new Map<number, number>();
  #pending: Placement[] = [];
  #flushAt: ReturnType<typeof setTimeout> | "soon" | undefined;
  #pool: Piscina | undefined;
  #startup: { resolve: () => void; reject: (e: Error) => void } | undefined;

  constructor(options: PoolOptions) {
    this.#o = options;
    // The supervisor reads up to capacity: the jobs running plus those waiting in the threads. What
    // runs at once is held to `concurrency` by the threads themselves (Header.started).
    this.capacity = options.concurrency + (options.prefetch ?? options.concurrency);
    this.#threads = Math.max(1, Math.min(options.threads, options.concurrency));
    this.#spares = options.spares ?? Math.min(2, this.#threads);
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
        // Still in the synchronous code it began with: the thread never ran its stop polling since.
        holdsHost: (entry) => Atomics.load(cells, at(entry.slot, Cell.onCpu)) === entry.seq,
        // signal() noted the beat: the thread's stop polling ran since, and so did the job's abort.
        sawStop: (entry) => Atomics.load(cells, at(entry.slot, Cell.beat)) !== entry.beat,
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
      minThreads: this.#threads + this.#spares,
      maxThreads: this.#threads + this.#spares,
      concurrentTasksPerWorker: this.capacity,
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
    this.#o.logger.debug({ threads: this.#threads, spares: this.#spares, concurrency: this.#o.concurrency, prefetch: this.capacity - this.#o.concurrency }, "thread pool ready");
  }

  run(job: JobRequest): Promise<JobOutcome> {
    return this.#book.run(job, (entry) => this.#dispatch(entry));
  }

  abort(jobId: string, reason: string): void {
    this.#book.abort(jobId, reason);
  }

  hosts(): number {
    return Math.min(this.#ready.size, this.#threads);
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
    if (this.#flushAt !== "soon") clearTimeout(this.#flushAt);
    // A runtime that cannot stop a stuck thread must not hold the worker's exit forever.
    await Promise.race([pool?.destroy().catch(() => undefined), new Promise((r) => setTimeout(r, 2_000))]);
  }

  #dispatch(entry: RunningJob, tries = 1): void {
    if (!this.#pool) throw new Error("the thread pool is not running");
    this.#pending.push({ entry, tries });
    this.#scheduleFlush();
  }

  /** The supervisor runs a whole read batch in one go: one flush a microtask later sees all of it. */
  #scheduleFlush(delay = 0): void {
    if (this.#flushAt === "soon" || (delay > 0 && this.#flushAt !== undefined)) return;
    clearTimeout(this.#flushAt);
    const flush = () => {
      this.#flushAt = undefined;
      this.#flush();
    };
    if (delay === 0) {
      this.#flushAt = "soon";
      queueMicrotask(flush);
    } else this.#flushAt = setTimeout(flush, delay);
  }

  /**
   * Sends the pending jobs as at most one batch per thread that can take jobs now. While fewer can
   * than `threads`, each gets its share and the rest wait for the next (a spare, a replacement).
   */
  #flush(): void {
    const pending = this.#pending.filter((p) => !p.entry.settled);
    this.#pending = [];
    const pool = this.#pool;
    if (!pool) {
      for (const p of pending) this.#book.finish(p.entry.seq, interrupted("the thread pool is not running"));
      return;
    }
    if (pending.length === 0) return;
    const targets = this.#takers();
    const placed = Math.min(pending.length, Math.ceil(pending.length / this.#threads) * targets.length);
    this.#pending = pending.slice(placed);
    if (this.#pending.length > 0) this.#scheduleFlush(retryMs);
    split(pending.slice(0, placed), targets.length).forEach((chunk, i) => {
      const thread = targets[i]!;
      for (const p of chunk) p.thread = thread;
      const batch: ThreadBatch = { tasks: chunk.map(({ entry: e }) => ({ seq: e.seq, slot: e.slot, job: e.job })) };
      const task: BatchTask = { text: encodeBatch(batch), [queueOptions]: { jobs: chunk.length, thread } };
      // Outcomes arrive as "done" reports; the batch's own result carries none.
      pool.run(task).catch((error: unknown) => {
        for (const p of chunk) this.#lost(p, error);
      });
    });
  }

  /**
   * The threads that take jobs now: ready ones not held by an overdue job or a long synchronous
   * start, at most `threads`, those already in use before the spares.
   */
  #takers(): number[] {
    const now = performance.now();
    const cells = this.#cells;
    const held = this.#book.heldHosts((e) =>
      now - e.startedAt >= blockedAfterMs && Atomics.load(cells, e.slot * cellsPerSlot + Cell.onCpu) === e.seq, now);
    const free = [...this.#ready].filter((t) => !held.has(t) && !this.#book.wasStopped(t));
    const used = (t: number) => ((this.#load.get(t) ?? 0) > 0 ? 0 : 1);
    return free.sort((a, b) => used(a) - used(b)).slice(0, this.#threads);
  }

  /** Piscina failed the task: its thread exited (stopped by us, or died by itself). */
  #lost({ entry, tries, thread }: Placement, error: unknown): void {
    if (entry.settled) return;
    const host = entry.host;
    if (host === undefined) {
      // It waited in a thread that was stopped (a neighbour hung) or died: it never began, so place
      // it again. Only the deaths count against it, so that a thread failing at start cannot loop.
      uncount(this.#cells, entry.slot, entry.seq);
      const stopped = thread !== undefined && this.#book.wasStopped(thread);
      if ((stopped || tries < 3) && this.#pool) this.#dispatch(entry, stopped ? tries : tries + 1);
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
        if (this.#pending.length > 0) this.#scheduleFlush();
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
 * The pool's balancer: a batch goes to the thread the flush chose for it (see #takers), or when that
 * one is gone, to the thread with the fewest jobs placed on it and not reported
 * done (`load`, by threadId, which it adds the batch to). Piscina's own balancer counts batches: a
 * thread holding one batch of 100 jobs looked less busy than one holding three of 2, got the next
 * batch too, and the other ran out of waiting jobs and left slots idle. In an io run at --threads 2
 * --concurrency 200 this halved the gap between the threads' loads (65-81 jobs to 35-48).
 */
export function placeByJobs(load: Map<number, number>): Balancer {
  return (task, workers) => {
    // Piscina hands the balancer the task's queue options, not the task: see BatchTask.
    const options = (task as unknown as { [queueOptions]?: BatchTask[typeof queueOptions] })[queueOptions];
    let best: (typeof workers)[number] | null = null;
    let least = Infinity;
    for (const w of workers) {
      if (w.terminating || w.destroyed) continue;
      const jobs = load.get(w.id) ?? 0;
      if (w.id === options?.thread) [best, least] = [w, -1];
      if (jobs < least) [best, least] = [w, jobs];
    }
    if (best) load.set(best.id, (load.get(best.id) ?? 0) + (options?.jobs ?? 1));
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
