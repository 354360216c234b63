/**
 * A child process of the process executor (src/executor/processes.ts), started with the worker's own
 * runtime. It talks to the worker over the IPC channel only: init (which app modules to import, how
 * many jobs at once), run (a batch of jobs), stop, cancel and drain in; ready, start, yielded, done
 * (outcomes batched per event-loop turn) and memory out. It runs many jobs at once, keeps those beyond
 * its slots waiting in order, starts one as soon as a job ends, and dies with its worker.
 */
import { JobHost } from "./host.ts";
import { exit, onShutdownSignal, onUncaughtError, parentChannel, rssBytes } from "../src/runtime/mod.ts";
import { serializeError } from "../src/errors.ts";
import type { ChildCommand, ChildReport } from "../src/executor/process_protocol.ts";
import type { JobOutcome, JobRequest } from "../src/executor/types.ts";

const channel = parentChannel();
if (!channel) {
  console.error("workers/child.ts is started by dray's process executor, not by hand");
  exit(2);
}
const report = (r: ChildReport) => channel.send(r);
let host: JobHost | undefined;
let beating: ReturnType<typeof setInterval> | undefined;
/** Jobs at once (the worker's share for this child). */
let slots = 1;
let active = 0;
let draining = false;
const waiting: Array<{ seq: number; job: JobRequest }> = [];
let pumpScheduled = false;

/** A sign of life while jobs run; a child stuck in a handler's synchronous code sends none. */
function beat(): void {
  report({ kind: "beat" });
  if (host?.running === 0) {
    clearInterval(beating);
    beating = undefined;
  }
}

// Ctrl-C reaches the whole process group; the worker decides when its children stop (it kills them
// after the shutdown grace), so a terminal signal must not crash jobs that still have time.
onShutdownSignal(() => {});
channel.onDisconnect(() => exit(0));
setInterval(() => channel.parentAlive() || exit(0), 1_000).unref();
// Dies as it would anyway, but tells the worker why first, so the crash log names the error.
onUncaughtError((error) => {
  channel.send({ kind: "crashed", error: serializeError(error) } satisfies ChildReport, () => exit(1));
  setTimeout(() => exit(1), 500);
});

channel.onMessage((raw) => {
  const command = raw as ChildCommand;
  switch (command.kind) {
    case "init":
      slots = command.slots;
      JobHost.load(command).then((h) => {
        host = h;
        if (command.memoryEvery > 0) setInterval(() => report({ kind: "memory", bytes: rssBytes() }), command.memoryEvery);
        report({ kind: "ready" });
      }, (error: unknown) => report({ kind: "failed", error: serializeError(error) }));
      return;
    case "run":
      waiting.push(...command.jobs);
      if (draining) giveBackWaiting();
      else void pump(host!);
      return;
    case "stop":
      host?.stop(command.seq, command.why);
      return;
    case "cancel": {
      const i = waiting.findIndex((w) => w.seq === command.seq);
      if (i >= 0) {
        waiting.splice(i, 1);
        deliver(command.seq, { status: "error", error: { name: "JobAborted", message: "aborted before it started" }, final: true, duration: 0 });
      }
      return;
    }
    case "drain":
      draining = true;
      giveBackWaiting();
      return;
  }
});

/** A pump is running (maybe waiting a turn between two jobs of a run); see {@link pump}. */
let pumping = false;

/**
 * Starts waiting jobs, in order, while this child has free slots. One at a time: jobs sent while a
 * pump waits a turn inside a run wait their turn too. Otherwise a later job could begin first and
 * hold the CPU while jobs of the run, reported started, never began: the worker, which blames the
 * first started job that never yielded, would then charge one of those with the hang.
 */
async function pump(h: JobHost): Promise<void> {
  if (pumping) return;
  pumping = true;
  try {
    await pumpRuns(h);
  } finally {
    pumping = false;
  }
}

async function pumpRuns(h: JobHost): Promise<void> {
  while (!draining && waiting.length > 0 && active < slots) {
    const run = waiting.splice(0, slots - active);
    active += run.length;
    // Outcomes still waiting for the end of the turn go first: a job that starts now may never end it.
    flushOutbox();
    // Before any of them runs: deadlines count from here, and a job that never yields is known here.
    report({ kind: "start", seqs: run.map((r) => r.seq) });
    for (let i = 0; i < run.length; i++) {
      const { seq, job } = run[i]!;
      const since = performance.now();
      const running = h.run(seq, job);
      // Sent before anything else can run: if a later job then holds the CPU, this one is not blamed.
      report({ kind: "yielded", seq });
      beating ??= setInterval(beat, 20);
      void running.then((outcome) => {
        active--;
        deliver(seq, outcome);
        schedulePump(h);
      });
      // After a long synchronous start, let outcomes and beats out before the next job begins, as a
      // message per job used to: a finished job must not wait on its neighbours' starts.
      if (performance.now() - since >= 1 && i + 1 < run.length) await new Promise<void>((resolve) => setImmediate(resolve));
    }
  }
}

/** The worker shuts down: jobs that have not started go back to their queue, uncharged. */
function giveBackWaiting(): void {
  for (const { seq } of waiting.splice(0)) deliver(seq, { status: "interrupted", reason: "the worker shut down before the job started" });
}

/** Once per turn: the jobs that ended in this turn free their slots together. */
function schedulePump(h: JobHost): void {
  if (pumpScheduled || waiting.length === 0) return;
  pumpScheduled = true;
  setImmediate(() => {
    pumpScheduled = false;
    void pump(h);
  });
}

/** Outcomes finished in this turn of the event loop, sent together at its end. */
let outbox: Array<[number, JobOutcome]> = [];

function deliver(seq: number, outcome: JobOutcome): void {
  if (outbox.push([seq, outcome]) > 1) return;
  setImmediate(flushOutbox);
}

function flushOutbox(): void {
  if (outbox.length === 0) return;
  const results = outbox;
  outbox = [];
  report({ kind: "done", results });
}
