/**
 * The chaos run's worker processes: `dray worker bench/chaos/app.ts` on Bun, started as the launcher
 * starts them (Bun's GC budget, dying with their parent), a replacement whenever one dies, and the
 * lines of their logs the checker needs (lease:lost, outcome:discarded, threads stopped or dead).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createWriteStream, existsSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";
import { dieWithParent } from "../../src/runtime/parent_death.mjs";
import { runtime } from "../../src/runtime/mod.ts";
import { launchEnv, ownPath, root } from "../spawn.ts";
import { nowMs } from "../scenarios.ts";
import type { WorkerEvent, WorkerProc } from "./history.ts";
import { trackChild } from "./live.ts";

export interface PoolOptions {
  size: number;
  /** The app module's path. */
  app: string;
  /** `dray worker` flags. */
  args: string[];
  env: Record<string, string>;
  /** Each worker's whole output goes to `worker-<pid>.log` here. */
  outDir: string;
  log: (line: string) => void;
}

export interface Worker {
  pid: number;
  child: ChildProcess;
  proc: WorkerProc;
  ready: boolean;
  /** SIGSTOPped right now. */
  stopped: boolean;
  /** True once it logs "worker started"; false if it exits first. */
  started: Promise<boolean>;
}

/** Bun: this binary when the harness runs on Bun, else BUN_BIN, the project's own, or PATH's. */
export function bunBinary(): string {
  if (runtime() === "bun") return process.execPath;
  const local = join(root, "node_modules/.bin/bun");
  return process.env.BUN_BIN ?? (existsSync(local) ? local : "bun");
}

export class WorkerPool {
  readonly procs: WorkerProc[] = [];
  readonly events: WorkerEvent[] = [];
  readonly #o: PoolOptions;
  readonly #live = new Set<Worker>();
  /** Pids the harness SIGKILLed or SIGTERMed on purpose: their exits are expected. */
  readonly #expected = new Set<number>();
  #replacing = true;
  /** Workers that died before they started: past a few, replacing them would only spin. */
  #failedStarts = 0;

  constructor(options: PoolOptions) {
    this.#o = options;
  }

  async start(timeoutMs = 60_000): Promise<void> {
    const first = Array.from({ length: this.#o.size }, () => this.#spawn());
    const ok = await withTimeout(Promise.all(first.map((w) => w.started)), timeoutMs, "workers did not start");
    const failed = first.filter((_, i) => !ok[i]);
    if (failed.length > 0) throw new Error(`worker ${failed[0]!.pid} exited before it started; see worker-${failed[0]!.pid}.log`);
  }

  /** Workers a fault may hit: started, alive, not stopped; oldest first. */
  candidates(): Worker[] {
    return [...this.#live].filter((w) => w.ready && !w.stopped);
  }

  kill9(w: Worker): number {
    const t = nowMs();
    this.#expected.add(w.pid);
    w.proc.killedAt = t;
    w.child.kill("SIGKILL");
    return t;
  }

  /** SIGSTOP, then SIGCONT after `ms`: the worker holds its claims but renews none meanwhile. */
  async stall(w: Worker, ms: number): Promise<{ from: number; to: number }> {
    const from = nowMs();
    w.stopped = true;
    w.child.kill("SIGSTOP");
    await new Promise((r) => setTimeout(r, ms));
    w.child.kill("SIGCONT");
    w.stopped = false;
    return { from, to: nowMs() };
  }

  /** Stops replacing; SIGTERM (a stalled worker is continued first), SIGKILL what is left after `graceMs`. */
  async stop(graceMs: number): Promise<void> {
    this.#replacing = false;
    const all = [...this.#live];
    for (const w of all) {
      this.#expected.add(w.pid);
      if (w.stopped) w.child.kill("SIGCONT");
      w.child.kill("SIGTERM");
    }
    const exited = all.map((w) => new Promise<void>((r) => (w.child.exitCode !== null || w.child.signalCode !== null
      ? r() : w.child.once("exit", () => r()))));
    const timer = setTimeout(() => {
      for (const w of this.#live) {
        this.#o.log(`worker ${w.pid} did not stop within ${graceMs} ms: SIGKILL`);
        w.proc.killedAt = nowMs();
        w.child.kill("SIGKILL");
      }
    }, graceMs);
    await Promise.all(exited);
    clearTimeout(timer);
  }

  #spawn(): Worker {
    const { app, args, env, outDir } = this.#o;
    const [cmd, ...rest] = [...dieWithParent(), bunBinary(), ownPath("../src/cli/main"), "worker", app, ...args];
    const child = spawn(cmd!, rest, {
      cwd: root,
      env: { ...process.env, ...launchEnv("bun"), DRAY_LOG_LEVEL: "info", DRAY_LOG_FORMAT: "json", ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    trackChild(child);
    const pid = child.pid ?? -1;
    const proc: WorkerProc = { pid, startedAt: nowMs() };
    this.procs.push(proc);
    let markStarted!: (ok: boolean) => void;
    const w: Worker = { pid, child, proc, ready: false, stopped: false, started: new Promise((r) => (markStarted = r)) };
    this.#live.add(w);
    const out = createWriteStream(join(outDir, `worker-${pid}.log`));
    let partial = "";
    child.stdout!.on("data", (chunk: Buffer) => {
      out.write(chunk);
      const lines = (partial + chunk.toString()).split("\n");
      partial = lines.pop() ?? "";
      for (const line of lines) {
        if (this.#read(pid, line) === "started") {
          w.ready = true;
          markStarted(true);
        }
      }
    });
    child.stderr!.on("data", (chunk: Buffer) => out.write(chunk));
    child.once("exit", (code, signal) => {
      out.end();
      this.#live.delete(w);
      proc.exitedAt = nowMs();
      markStarted(false);
      if (!w.ready) this.#failedStarts++;
      if (!this.#expected.has(pid)) {
        proc.unexpected = true;
        this.#o.log(`worker ${pid} exited by itself (code ${code}, signal ${signal}); see worker-${pid}.log`);
      }
      if (this.#replacing && this.#failedStarts < 5) this.#spawn();
      else if (this.#replacing) this.#o.log("workers keep dying before they start: not replacing them any more");
    });
    return w;
  }

  /** Keeps the lines the checker needs; says when the worker has started. */
  #read(pid: number, line: string): "started" | undefined {
    if (!line.startsWith("{")) return undefined;
    let l: Record<string, unknown>;
    try {
      l = JSON.parse(line) as Record<string, unknown>;
    } catch {
      return undefined;
    }
    const t = typeof l.time === "number" ? l.time : nowMs();
    const msg = String(l.msg ?? "");
    if (l.event === "lease:lost" || l.event === "outcome:discarded") {
      this.events.push({ pid, t, event: l.event, ids: [String(l.id ?? l.jobId)],
        ...(typeof l.attempt === "number" ? { attempt: l.attempt } : {}) });
    } else if (/^stopping (thread|process) /.test(msg) || msg.includes(" died while running ")) {
      // The jobs that ran on a stopped or dead thread: their runs end here, without an end line.
      const listed = [...asJobs(l.interrupted), ...asJobs(l.jobs)];
      const overran = /job (\S+) \(actor /.exec(String(l.reason ?? ""))?.[1];
      this.events.push({ pid, t, event: "host:stopped", ids: overran ? [overran, ...listed] : listed });
    }
    return msg === "worker started" ? "started" : undefined;
  }
}

function asJobs(value: unknown): string[] {
  return Array.isArray(value) ? value.map((j) => String((j as { id?: unknown })?.id)) : [];
}

async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what} within ${ms} ms`)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}
