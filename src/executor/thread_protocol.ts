/**
 * What the thread pool (threads.ts) and its threads (workers/thread.ts) share: start data, tasks,
 * reports and the layout of the shared memory. Kept apart so that a thread loads nothing else.
 */
import type { SerializedError } from "../errors.ts";
import type { StopReason } from "./deadlines.ts";
import type { JobRequest } from "./types.ts";

/** What every thread gets at start (piscina `workerData`). */
export interface ThreadData {
  modules: string[];
  redisUrl: string;
  prefix: string;
  /** Per-slot Int32 cells, see {@link Cell}. */
  slots: SharedArrayBuffer;
  /** How often a thread reports its memory, ms; 0: never. */
  memoryEvery: number;
}

/** One job for a thread: plain data, the actor is looked up in the thread's own registry. */
export interface ThreadTask {
  seq: number;
  slot: number;
  job: JobRequest;
}

/** What threads post to the pool besides results. */
export type ThreadReport =
  | { kind: "ready"; threadId: number }
  | { kind: "failed"; threadId: number; error: SerializedError }
  | { kind: "start"; seq: number; threadId: number }
  | { kind: "memory"; threadId: number; bytes: number };

/**
 * The shared memory between the pool and its threads: four Int32 cells per job slot. The pool writes
 * stop requests; the thread answers with signs of life and with which job holds its CPU, so that at a
 * deadline the pool can tell a job that ignores its signal from one stuck behind a neighbour.
 */
export const Cell = {
  /** Seq of the job to stop (written by the pool, after its code). */
  stopSeq: 0,
  /** 1: time limit, 2: abort (stopCodes). */
  stopCode: 1,
  /** Incremented by the thread every ~20 ms while the job runs: the thread is alive. */
  beat: 2,
  /** Seq of the job while its handler runs its synchronous start (until its first await). */
  onCpu: 3,
} as const;
export const cellsPerSlot = 4;

export const stopCodes: Record<StopReason, number> = { timeLimit: 1, abort: 2 };
