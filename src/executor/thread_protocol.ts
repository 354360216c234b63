/**
 * What the thread pool (threads.ts) and its threads (workers/thread.ts) share: start data, tasks,
 * reports and the layout of the shared memory. Kept apart so that a thread loads nothing else.
 */
import type { TlsSettings } from "../config.ts";
import type { SerializedError } from "../errors.ts";
import type { StopReason } from "./deadlines.ts";
import type { JobOutcome, JobRequest } from "./types.ts";

/** What every thread gets at start (piscina `workerData`). */
export interface ThreadData {
  modules: string[];
  redisUrl: string;
  prefix: string;
  /** The worker's TLS settings as text (config.ts portableTls): a CA given in code reaches handlers' `ctx.redis`. */
  tls?: TlsSettings | undefined;
  /** Per-slot Int32 cells, see {@link Cell}. */
  slots: SharedArrayBuffer;
  /** How often a thread reports its memory, ms; 0: never. */
  memoryEvery: number;
  /** Jobs running at once in the whole pool (the worker's concurrency), kept with {@link Header.started}. */
  concurrency: number;
  /** Jobs one thread runs at once; what its batches hold beyond that waits in the thread. */
  perThread: number;
}

/** One job for a thread: plain data, the actor is looked up in the thread's own registry. */
export interface ThreadTask {
  seq: number;
  slot: number;
  job: JobRequest;
}

/**
 * One piscina task: the jobs of one flush for one thread. A message per batch instead of per job is
 * what keeps the pool's cost per job near the inline executor's. A batch may hold more jobs than the
 * thread has free slots (the pool's prefetch): those wait in the thread and start the moment a job
 * there ends, without a round trip through the pool.
 */
export interface ThreadBatch {
  tasks: ThreadTask[];
}

/**
 * What one piscina task carries: the batch as JSON text, and under piscina's queue-options symbol
 * (which stays on this side: a structured clone drops symbol keys) how many jobs it holds, for the
 * pool's balancer, and the thread the pool chose for it.
 */
export interface BatchTask {
  text: string;
  [queueOptions]?: { jobs: number; thread?: number | undefined };
}
export const queueOptions: unique symbol = Symbol.for("Piscina.queueOptions") as never;

/** Outcomes of jobs that finished in one turn of a thread's event loop. */
export type ThreadResults = Array<[seq: number, outcome: JobOutcome]>;

/*
 * Batches and outcomes cross as JSON text, not as objects: a string is copied in one go, while the
 * structured clone of a few hundred small objects costs 2-3x more CPU on both sides. Payloads and
 * results are JSON anyway: they come from Redis and go back to it.
 */
export const encodeBatch = (batch: ThreadBatch): string => JSON.stringify(batch);
export const decodeBatch = (text: string): ThreadBatch => JSON.parse(text) as ThreadBatch;
export const decodeResults = (text: string): ThreadResults => JSON.parse(text) as ThreadResults;

/**
 * Cannot throw: the host refuses a result that is not JSON (workers/host.ts) and serializeError keeps
 * only JSON in an error.
 */
export const encodeResults = (results: ThreadResults): string => JSON.stringify(results);

/**
 * What threads post to the pool over `parentPort`. Outcomes travel here, not as piscina results, so
 * that one "done" message carries every job that finished in one turn of the thread's event loop.
 */
export type ThreadReport =
  | { kind: "ready"; threadId: number }
  | { kind: "failed"; threadId: number; error: SerializedError }
  /** These jobs of a batch begin now, in this order: their deadlines count from here. */
  | { kind: "start"; seqs: number[]; threadId: number }
  /** `results`: {@link encodeResults} of the `count` outcomes finished in one turn. */
  | { kind: "done"; threadId: number; count: number; results: string }
  | { kind: "memory"; threadId: number; bytes: number };

/**
 * The shared memory between the pool and its threads: five Int32 cells per job slot, then the
 * {@link Header}. The pool writes stop requests; the thread answers with signs of life and with which
 * job holds its CPU, so that at a deadline the pool can tell a job that ignores its signal from one
 * stuck behind a neighbour.
 */
export const Cell = {
  /** Seq of the job to stop (written by the pool, after its code). Before its start: do not start it. */
  stopSeq: 0,
  /** 1: time limit, 2: abort (stopCodes). */
  stopCode: 1,
  /** Incremented by the thread every ~20 ms while the job runs: the thread is alive. */
  beat: 2,
  /** Seq of the job while its handler runs its synchronous start (until its first await). */
  onCpu: 3,
  /**
   * Seq of the job while it counts in {@link Header.started}. Whoever swaps it back to 0 takes the job
   * off the count: the thread when the job ends, the pool when it gives up on the job (its thread was
   * stopped or died), so a job is taken off exactly once.
   */
  counted: 4,
} as const;
export const cellsPerSlot = 5;

/** Pool-wide cells, after the slots' cells (index from the end: `cells.length - headerCells + i`). */
export const Header = {
  /** Jobs started and not ended in all threads; a thread starts a job only while this is under `concurrency`. */
  started: 0,
  /** 1 once the worker shuts down: threads start no more jobs, and give back those waiting in them. */
  closing: 1,
} as const;
export const headerCells = 2;
export const headerAt = (cells: Int32Array, cell: number): number => cells.length - headerCells + cell;

/**
 * Takes a job off {@link Header.started} if it still counts there. Both sides call it, the thread when
 * the job ends and the pool when it gives up on the job (its thread was stopped or died); the
 * compare-and-swap on {@link Cell.counted} lets only the first one through.
 */
export function uncount(cells: Int32Array, slot: number, seq: number): void {
  if (Atomics.compareExchange(cells, slot * cellsPerSlot + Cell.counted, seq, 0) === seq) {
    Atomics.sub(cells, headerAt(cells, Header.started), 1);
  }
}

export const stopCodes: Record<StopReason, number> = { timeLimit: 1, abort: 2 };
