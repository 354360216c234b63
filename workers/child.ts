/**
 * A child process of the process executor (src/executor/processes.ts), started with the worker's own
 * runtime. It talks to the worker over the IPC channel only: init (which app modules to import), run
 * (a batch of jobs) and stop in; ready, yielded, done (outcomes batched per event-loop turn) and
 * memory out. It runs many jobs at once, and dies with its worker.
 */
import { JobHost } from "./host.ts";
import { exit, onShutdownSignal, onUncaughtError, parentChannel, rssBytes } from "../src/runtime/mod.ts";
import { serializeError } from "../src/errors.ts";
import type { ChildCommand, ChildReport } from "../src/executor/processes.ts";
import type { JobOutcome, JobRequest } from "../src/executor/types.ts";

const channel = parentChannel();
if (!channel) {
  console.error("workers/child.ts is started by dray's process executor, not by hand");
  exit(2);
}
const report = (r: ChildReport) => channel.send(r);
let host: JobHost | undefined;
let beating: ReturnType<typeof setInterval> | undefined;

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
      JobHost.load(command).then((h) => {
        host = h;
        if (command.memoryEvery > 0) setInterval(() => report({ kind: "memory", bytes: rssBytes() }), command.memoryEvery);
        report({ kind: "ready" });
      }, (error: unknown) => report({ kind: "failed", error: serializeError(error) }));
      return;
    case "run":
      void runAll(host!, command.jobs);
      return;
    case "stop":
      host?.stop(command.seq, command.why);
      return;
  }
});

/** Starts the jobs of one run command in order. */
async function runAll(h: JobHost, jobs: Array<{ seq: number; job: JobRequest }>): Promise<void> {
  for (let i = 0; i < jobs.length; i++) {
    const { seq, job } = jobs[i]!;
    const since = performance.now();
    const running = h.run(seq, job);
    // Sent before anything else can run: if a later job then holds the CPU, this one is not blamed.
    report({ kind: "yielded", seq });
    beating ??= setInterval(beat, 20);
    void running.then((outcome) => deliver(seq, outcome));
    // After a long synchronous start, let outcomes and beats out before the next job begins, as a
    // message per job used to: a finished job must not wait on its neighbours' starts.
    if (performance.now() - since >= 1 && i + 1 < jobs.length) await new Promise<void>((resolve) => setImmediate(resolve));
  }
}

/** Outcomes finished in this turn of the event loop, sent together at its end. */
let outbox: Array<[number, JobOutcome]> = [];

function deliver(seq: number, outcome: JobOutcome): void {
  if (outbox.push([seq, outcome]) > 1) return;
  setImmediate(() => {
    const results = outbox;
    outbox = [];
    report({ kind: "done", results });
  });
}
