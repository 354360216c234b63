/**
 * A thread of the piscina pool (src/executor/threads.ts). Piscina calls the default export once per
 * batch of jobs, many batches at a time (`concurrentTasksPerWorker`). Jobs wait here until one of
 * this thread's slots is free and the pool-wide count allows one more, so a job that ends is followed
 * by the next at once, not after a round trip through the pool. The thread reports to the pool over
 * `parentPort`: ready (app modules imported), start (jobs began: their deadlines count from here),
 * done (outcomes, batched per event-loop turn) and memory. Stop requests and the shutdown come the
 * other way through shared memory, polled while jobs run or wait, because piscina owns the port.
 */
import { parentPort, threadId, workerData } from "node:worker_threads";
import { loaderFor, threadMemoryBytes } from "../src/runtime/mod.ts";
import type { JobOutcome } from "../src/executor/types.ts";
import {
  type BatchTask, Cell, cellsPerSlot, decodeBatch, encodeResults, Header, headerAt, stopCodes, uncount, type ThreadData,
  type ThreadReport, type ThreadResults, type ThreadTask,
} from "../src/executor/thread_protocol.ts";
import type { JobHost } from "./host.ts";

const data = workerData as ThreadData;
const cells = new Int32Array(data.slots);
const at = (slot: number, cell: number) => slot * cellsPerSlot + cell;
const started = headerAt(cells, Header.started);
const closing = headerAt(cells, Header.closing);
const report = (r: ThreadReport) => parentPort!.postMessage(r);

// Dynamic imports keep this thread's app modules, registry and error classes in one ESM graph, even
// when piscina loaded this file through require().
const host: Promise<JobHost> = (async () => {
  // On Node, tsx only if something here is TypeScript: this file in a checkout, or the app's modules.
  await loaderFor([import.meta.url, ...data.modules]);
  const { JobHost } = await import("./host.ts");
  return await JobHost.load(data);
})();
host.then(
  () => report({ kind: "ready", threadId }),
  (error: Error) => report({ kind: "failed", threadId, error: { name: error.name, message: error.message, stack: error.stack ?? "" } }),
);

if (data.memoryEvery > 0) {
  setInterval(() => report({ kind: "memory", threadId, bytes: threadMemoryBytes() }), data.memoryEvery).unref();
}

/** Slot of each running job, by sequence number. */
const slots = new Map<number, number>();
let watching: ReturnType<typeof setInterval> | undefined;

/** A job of a batch, waiting here for a slot. */
interface Queued {
  task: ThreadTask;
  /** Resolves once its outcome is posted. */
  done: () => void;
}
const queue: Queued[] = [];
/** Jobs started on this thread and not ended. */
let active = 0;
let pumpScheduled = false;

/** Piscina's task: one batch of jobs, as {@link encodeBatch} text in a {@link BatchTask}. */
export default async function runBatch(task: BatchTask): Promise<void> {
  const batch = decodeBatch(task.text);
  let h: JobHost;
  try {
    h = await host;
  } catch (error) {
    const message = `this thread could not import the app modules: ${(error as Error).message}`;
    const outcome: JobOutcome = { status: "error", error: { name: "WorkerCrashed", message }, final: false, duration: 0 };
    await Promise.all(batch.tasks.map((task) => deliver(task.seq, outcome)));
    return;
  }
  // Resolving only once the outcomes are posted: piscina then counts this batch's load until the end.
  const done = batch.tasks.map((task) => new Promise<void>((resolve) => queue.push({ task, done: resolve })));
  pump(h);
  watch(h);
  await Promise.all(done);
}

/** Starts waiting jobs while this thread has a free slot and the pool is under its concurrency. */
function pump(h: JobHost): void {
  if (Atomics.load(cells, closing) !== 0) return giveBackQueued();
  while (queue.length > 0) {
    const run: Queued[] = [];
    let cost = 0;
    while (queue.length > 0 && active + run.length < data.perThread) {
      const { task, done } = queue[0]!;
      if (aborted(task)) {
        queue.shift();
        giveUp(task, done);
        continue;
      }
      // Only actors known to start quickly share a start report (see runBudgetMs).
      const next = startCost.get(task.job.actor) ?? Infinity;
      if (run.length > 0 && cost + next >= runBudgetMs) break;
      if (!countOneMore()) break;
      Atomics.store(cells, at(task.slot, Cell.counted), task.seq);
      cost += next;
      run.push(queue.shift()!);
    }
    if (run.length === 0) return;
    // Outcomes still waiting for the end of the turn go first: a job that starts now may never end it,
    // and a job that finished would be reported interrupted with its thread, and run again.
    flushOutbox();
    // Reported before any of them runs: a job that never yields is then already known to run here,
    // so the pool can blame it and stop this thread.
    report({ kind: "start", seqs: run.map((q) => q.task.seq), threadId });
    let slow = false;
    for (const { task, done } of run) {
      const since = performance.now();
      active++;
      void runTask(h, task).then(done);
      slow = noteStart(task.job.actor, performance.now() - since) || slow;
    }
    // After a long synchronous start, let outcomes and heartbeats out before the next job begins and
    // is reported, as a message per job used to.
    if (slow) return schedulePump(h);
  }
}

/** Takes one of the pool's `concurrency` places (a compare-and-swap: threads race for the last one). */
function countOneMore(): boolean {
  for (;;) {
    const n = Atomics.load(cells, started);
    if (n >= data.concurrency) return false;
    if (Atomics.compareExchange(cells, started, n, n + 1) === n) return true;
  }
}

/** Once per turn: the jobs that ended in this turn free their slots together, one start report for all. */
function schedulePump(h: JobHost): void {
  if (pumpScheduled || queue.length === 0) return;
  pumpScheduled = true;
  nextTurn(() => {
    pumpScheduled = false;
    pump(h);
  });
}

/** The pool asked not to start it (aborted while it waited here). */
const aborted = (task: ThreadTask) => Atomics.load(cells, at(task.slot, Cell.stopSeq)) === task.seq;

function giveUp(task: ThreadTask, done: () => void): void {
  void deliver(task.seq, { status: "error", error: { name: "JobAborted", message: "aborted before it started" }, final: true, duration: 0 })
    .then(done);
}

/** Ends the waiting jobs that were aborted, wherever they are in the queue. */
function sweepAborted(): void {
  for (let i = queue.length - 1; i >= 0; i--) {
    const { task, done } = queue[i]!;
    if (!aborted(task)) continue;
    queue.splice(i, 1);
    giveUp(task, done);
  }
}

/** The worker shuts down: jobs that have not started go back to their queue, uncharged. */
function giveBackQueued(): void {
  for (const { task, done } of queue.splice(0)) {
    void deliver(task.seq, { status: "interrupted", reason: "the worker shut down before the job started" }).then(done);
  }
}

/** Each actor's recent synchronous start, ms (moving average). */
const startCost = new Map<string, number>();
/** Jobs in one start report are charged the starts before theirs: at most about this much, ms. */
const runBudgetMs = 1;

/** Records a job's synchronous start; true when it was long. */
function noteStart(actor: string, ms: number): boolean {
  const avg = startCost.get(actor);
  startCost.set(actor, avg === undefined ? ms : avg * 0.8 + ms * 0.2);
  return ms >= runBudgetMs;
}

/** Runs the job; resolves once its outcome is posted. */
function runTask(h: JobHost, task: ThreadTask): Promise<void> {
  slots.set(task.seq, task.slot);
  // Marked while the handler runs up to its first await: if it never gets there (a CPU loop, a
  // regex, Atomics.wait), the pool knows which job holds this thread.
  Atomics.store(cells, at(task.slot, Cell.onCpu), task.seq);
  const outcome = h.run(task.seq, task.job);
  Atomics.store(cells, at(task.slot, Cell.onCpu), 0);
  return outcome.then((o) => {
    slots.delete(task.seq);
    active--;
    uncount(cells, task.slot, task.seq);
    const posted = deliver(task.seq, o);
    schedulePump(h);
    return posted;
  });
}

/** Outcomes finished in this turn of the event loop, posted together at its end. */
let outbox: ThreadResults = [];
/** Resolves the promise {@link deliver} gave for the outcomes in the outbox, once they are posted. */
let posted: { promise: Promise<void>; resolve: () => void } | undefined;
const nextTurn: (fn: () => void) => void = typeof setImmediate === "function" ? setImmediate : (fn) => setTimeout(fn, 0);

/** Queues the outcome; resolves once the message carrying it is posted. */
function deliver(seq: number, outcome: JobOutcome): Promise<void> {
  outbox.push([seq, outcome]);
  if (!posted) {
    let resolve!: () => void;
    const promise = new Promise<void>((r) => (resolve = r));
    posted = { promise, resolve };
    nextTurn(flushOutbox);
  }
  return posted.promise;
}

/** Posts the outbox now (at the end of the turn, or before a job starts that may never let it end). */
function flushOutbox(): void {
  if (!posted) return;
  const { resolve } = posted;
  const results = outbox;
  outbox = [];
  posted = undefined;
  report({ kind: "done", threadId, count: results.length, results: encodeResults(results) });
  resolve();
}

/**
 * Every ~20 ms while jobs run or wait: a sign of life per job, the stop requests of the pool, and a
 * retry of the waiting jobs (a place freed on another thread, the shutdown, an abort). A handler
 * stuck on the CPU never lets this run: then the pool terminates the thread instead.
 */
function watch(h: JobHost): void {
  watching ??= setInterval(() => {
    for (const [seq, slot] of slots) {
      Atomics.add(cells, at(slot, Cell.beat), 1);
      if (Atomics.load(cells, at(slot, Cell.stopSeq)) !== seq) continue;
      h.stop(seq, Atomics.load(cells, at(slot, Cell.stopCode)) === stopCodes.abort ? "abort" : "timeLimit");
    }
    if (queue.length > 0) {
      sweepAborted();
      pump(h);
    }
    if (slots.size === 0 && queue.length === 0) {
      clearInterval(watching);
      watching = undefined;
    }
  }, 20);
}
