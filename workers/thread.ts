/**
 * A thread of the piscina pool (src/executor/threads.ts). Piscina calls the default export once per
 * job, many at a time (`concurrentTasksPerWorker`). Besides results, the thread reports to the pool
 * over `parentPort`: ready (app modules imported), start (a job began: its deadline counts from
 * here) and memory. Stop requests come the other way through shared memory, polled while jobs run,
 * because piscina owns the thread's message port.
 */
import { parentPort, threadId, workerData } from "node:worker_threads";
import { enableTypeScriptImports, threadMemoryBytes } from "../src/runtime/mod.ts";
import type { JobOutcome } from "../src/executor/types.ts";
import { Cell, cellsPerSlot, stopCodes, type ThreadData, type ThreadReport, type ThreadTask } from "../src/executor/thread_protocol.ts";
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

export default async function runTask(task: ThreadTask): Promise<JobOutcome> {
  let h: JobHost;
  try {
    h = await host;
  } catch (error) {
    const message = `this thread could not import the app modules: ${(error as Error).message}`;
    return { status: "error", error: { name: "WorkerCrashed", message }, final: false, duration: 0 };
  }
  report({ kind: "start", seq: task.seq, threadId });
  slots.set(task.seq, task.slot);
  watch(h);
  try {
    // Marked while the handler runs up to its first await: if it never gets there (a CPU loop, a
    // regex, Atomics.wait), the pool knows which job holds this thread.
    Atomics.store(cells, at(task.slot, Cell.onCpu), task.seq);
    const outcome = h.run(task.seq, task.job);
    Atomics.store(cells, at(task.slot, Cell.onCpu), 0);
    return await outcome;
  } finally {
    slots.delete(task.seq);
  }
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
