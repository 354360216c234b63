/**
 * A thread of the piscina pool (src/executor/threads.ts). Piscina calls the default export once per
 * batch of jobs, many batches at a time (`concurrentTasksPerWorker`). The thread reports to the pool
 * over `parentPort`: ready (app modules imported), start (jobs of a batch began: their deadlines
 * count from here), done (outcomes, batched per event-loop turn) and memory. Stop requests come the
 * other way through shared memory, polled while jobs run, because piscina owns the thread's port.
 */
import { parentPort, threadId, workerData } from "node:worker_threads";
import { enableTypeScriptImports, threadMemoryBytes } from "../src/runtime/mod.ts";
import type { JobOutcome } from "../src/executor/types.ts";
import {
  Cell, cellsPerSlot, decodeBatch, encodeResults, stopCodes, type ThreadData, type ThreadReport, type ThreadResults,
  type ThreadTask,
} from "../src/executor/thread_protocol.ts";
import type { JobHost } from "./host.ts";

const data = workerData as ThreadData;
const cells = new Int32Array(data.slots);
const at = (slot: number, cell: number) => slot * cellsPerSlot + cell;
const report = (r: ThreadReport) => parentPort!.postMessage(r);

// Dynamic imports keep this thread's app modules, registry and error classes in one ESM graph, even
// when piscina loaded this file through require().
const host: Promise<JobHost> = (async () => {
  await enableTypeScriptImports();
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

/** Piscina's task: one batch of jobs, as {@link encodeBatch} text. */
export default async function runBatch(text: string): Promise<void> {
  const batch = decodeBatch(text);
  let h: JobHost;
  try {
    h = await host;
  } catch (error) {
    const message = `this thread could not import the app modules: ${(error as Error).message}`;
    const outcome: JobOutcome = { status: "error", error: { name: "WorkerCrashed", message }, final: false, duration: 0 };
    await Promise.all(batch.tasks.map((task) => deliver(task.seq, outcome)));
    return;
  }
  const done: Array<Promise<void>> = [];
  for (let i = 0; i < batch.tasks.length;) {
    const run = batch.tasks.slice(i, runEnd(batch.tasks, i));
    i += run.length;
    // Reported before any of them runs: a job that never yields is then already known to run here,
    // so the pool can blame it and stop this thread.
    report({ kind: "start", seqs: run.map((t) => t.seq), threadId });
    let slow = false;
    for (const task of run) {
      const since = performance.now();
      done.push(runTask(h, task));
      slow = noteStart(task.job.actor, performance.now() - since) || slow;
    }
    // After a long synchronous start, let outcomes and heartbeats out before the next job begins and
    // is reported, as a message per job used to.
    if (slow && i < batch.tasks.length) await new Promise<void>((resolve) => nextTurn(resolve));
  }
  // Resolving only once the outcomes are posted: piscina then counts this batch's load until the end.
  await Promise.all(done);
}

/** Each actor's recent synchronous start, ms (moving average). */
const startCost = new Map<string, number>();
/** Jobs in one start report are charged the starts before theirs: at most about this much, ms. */
const runBudgetMs = 1;

/** Where the run of jobs reported together from `from` ends: only actors known to start quickly share one. */
function runEnd(tasks: ThreadTask[], from: number): number {
  let cost = 0;
  let end = from;
  do cost += startCost.get(tasks[end++]!.job.actor) ?? Infinity;
  while (end < tasks.length && cost + (startCost.get(tasks[end]!.job.actor) ?? Infinity) < runBudgetMs);
  return end;
}

/** Records a job's synchronous start; true when it was long. */
function noteStart(actor: string, ms: number): boolean {
  const avg = startCost.get(actor);
  startCost.set(actor, avg === undefined ? ms : avg * 0.8 + ms * 0.2);
  return ms >= runBudgetMs;
}

/** Runs the job; resolves once its outcome is posted. */
function runTask(h: JobHost, task: ThreadTask): Promise<void> {
  slots.set(task.seq, task.slot);
  watch(h);
  // Marked while the handler runs up to its first await: if it never gets there (a CPU loop, a
  // regex, Atomics.wait), the pool knows which job holds this thread.
  Atomics.store(cells, at(task.slot, Cell.onCpu), task.seq);
  const outcome = h.run(task.seq, task.job);
  Atomics.store(cells, at(task.slot, Cell.onCpu), 0);
  return outcome.then((o) => {
    slots.delete(task.seq);
    return deliver(task.seq, o);
  });
}

/** Outcomes finished in this turn of the event loop, posted together at its end. */
let outbox: ThreadResults = [];
let posted: Promise<void> | undefined;
const nextTurn: (fn: () => void) => void = typeof setImmediate === "function" ? setImmediate : (fn) => setTimeout(fn, 0);

/** Queues the outcome; resolves once the message carrying it is posted. */
function deliver(seq: number, outcome: JobOutcome): Promise<void> {
  outbox.push([seq, outcome]);
  posted ??= new Promise<void>((resolve) => nextTurn(() => {
    const results = outbox;
    outbox = [];
    posted = undefined;
    report({ kind: "done", results: encodeResults(results) });
    resolve();
  }));
  return posted;
}

/**
 * Every ~20 ms while jobs run: a sign of life per job, and the stop requests of the pool. A handler
 * stuck on the CPU never lets this run: then the pool terminates the thread instead.
 */
function watch(h: JobHost): void {
  watching ??= setInterval(() => {
    for (const [seq, slot] of slots) {
      Atomics.add(cells, at(slot, Cell.beat), 1);
      if (Atomics.load(cells, at(slot, Cell.stopSeq)) !== seq) continue;
      h.stop(seq, Atomics.load(cells, at(slot, Cell.stopCode)) === stopCodes.abort ? "abort" : "timeLimit");
    }
    if (slots.size === 0) {
      clearInterval(watching);
      watching = undefined;
    }
  }, 20);
}
