/**
 * Starting the process under test with a chosen runtime, and knowing when it is ready: the bench
 * measures a worker from the outside (its own process tree) so that its RSS and CPU are its own.
 */
import { spawn, type ChildProcess } from "node:child_process";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { bunHeapEnv } from "../src/runtime/heap.mjs";
import { childRuntimeArgs, denoPermissions, env, isTypeScript, ownFile, runtime, type RuntimeName } from "../src/runtime/mod.ts";

/** Whether the bench runs from its TypeScript sources (a checkout) or compiled (dist/, the package). */
const fromSource = isTypeScript(import.meta.url);
/** The package's root, whose package.json and node_modules the bench reads: above bench/ or dist/bench/. */
export const root = fileURLToPath(new URL(fromSource ? ".." : "../..", import.meta.url));
export const RUNTIMES: readonly RuntimeName[] = ["bun", "deno", "node"];

/** One of dray's own files by its path from bench/ without extension: `.ts` in a checkout, else `.js`. */
export function ownPath(relative: string): string {
  return ownFile(import.meta.url, relative);
}

/**
 * The entry of a thread that runs bench code: in a checkout its plain-JS twin (`.mjs`), which gives
 * a Node thread tsx's hooks before importing the `.ts`; compiled, the `.js` itself.
 */
export function threadEntry(relative: string): string {
  return fromSource ? fileURLToPath(new URL(`${relative}.mjs`, import.meta.url)) : ownPath(relative);
}

/**
 * The command that runs one of dray's files (see {@link ownPath}) on `name`: the current binary when
 * it is the runtime the bench runs on, else BUN_BIN / NODE_BIN / DENO_BIN or the name on PATH. Node
 * gets tsx only for sources.
 */
export function runtimeCommand(name: RuntimeName, denoAll = false): string[] {
  const deno = denoAll ? ["run", "-A"] : ["run", ...denoPermissions()];
  if (name === runtime()) {
    const { command, args } = childRuntimeArgs(fromSource);
    return name === "deno" ? [command, ...deno] : [command, ...args];
  }
  switch (name) {
    case "bun":
      return [env("BUN_BIN") ?? "bun"];
    case "node":
      return [env("NODE_BIN") ?? "node", ...(fromSource ? ["--import", "tsx"] : [])];
    case "deno":
      return [env("DENO_BIN") ?? "deno", ...deno];
  }
}

/**
 * What dray's launcher adds to a worker's environment on `name` (the GC budget on Bun), so that the
 * bench measures a worker as `bun run worker` starts it. The bare loop gets it too: it is the same
 * runtime with the same settings. BullMQ runs as BullMQ users run it, without.
 */
export function launchEnv(name: RuntimeName): Record<string, string> {
  return name === "bun" ? bunHeapEnv(process.env) : {};
}

/** Children started by this process and not yet exited, so an interrupted bench can stop them. */
const live = new Set<ChildProcess>();

export function killChildren(): void {
  for (const child of live) child.kill("SIGKILL");
}

export interface Child {
  readonly pid: number;
  /** Epoch ms at which the process said it starts consuming. */
  readonly ready: Promise<number>;
  readonly exited: Promise<number | null>;
  /** The last few kB of stdout and stderr, for error messages. */
  output(): string;
  /** SIGTERM, then SIGKILL after `graceMs`. */
  stop(graceMs?: number): Promise<void>;
}

/**
 * Spawns `command` and resolves `ready` with the time `readyAt(line)` finds in a stdout line; rejects
 * it if the process exits first.
 */
export function spawnChild(command: string[], extraEnv: Record<string, string>,
  readyAt: (line: string) => number | undefined): Child {
  const [cmd, ...args] = command;
  const child: ChildProcess = spawn(cmd!, args, {
    cwd: root,
    // JSON logs, whatever the shell exported: the bench reads the worker's log lines.
    env: { ...process.env, DRAY_LOG_FORMAT: "json", ...extraEnv },
    stdio: ["ignore", "pipe", "pipe"],
  });
  live.add(child);
  let tail = "";
  const keep = (s: string) => (tail = (tail + s).slice(-8_000));
  let partial = "";
  let resolveReady!: (t: number) => void;
  let rejectReady!: (e: Error) => void;
  const ready = new Promise<number>((res, rej) => ((resolveReady = res), (rejectReady = rej)));
  ready.catch(() => undefined); // callers that never await it must not see an unhandled rejection
  child.stdout!.on("data", (chunk: Buffer) => {
    const s = chunk.toString();
    keep(s);
    partial += s;
    const lines = partial.split("\n");
    partial = lines.pop() ?? "";
    for (const line of lines) {
      const t = readyAt(line);
      if (t !== undefined) resolveReady(t);
    }
  });
  child.stderr!.on("data", (chunk: Buffer) => keep(chunk.toString()));
  const exited = new Promise<number | null>((resolve) => {
    child.on("error", (error) => {
      live.delete(child);
      keep(String(error));
      resolve(null);
    });
    child.on("exit", (code) => {
      live.delete(child);
      resolve(code);
    });
  });
  void exited.then((code) => rejectReady(new Error(`${cmd} exited (${code}) before it was ready:\n${tail}`)));
  return {
    pid: child.pid ?? -1,
    ready,
    exited,
    output: () => tail,
    async stop(graceMs = 10_000) {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** Ready when a pino line says "worker started"; its `time` is when the consume loop began. */
export function drayReady(processes = 1): (line: string) => number | undefined {
  // With --processes N the run starts once every one of them has started, not the first.
  let seen = 0;
  return (line) => {
    if (!line.includes("worker started")) return undefined;
    try {
      const log = JSON.parse(line) as { msg?: string; time?: number };
      if (log.msg !== "worker started" || ++seen < processes) return undefined;
      return log.time ?? Date.now();
    } catch {
      return undefined;
    }
  };
}

/** Ready when the script prints `{"ready": <epoch ms>}` (the bench's own worker scripts). */
export function scriptReady(line: string): number | undefined {
  if (!line.startsWith('{"ready"')) return undefined;
  try {
    return (JSON.parse(line) as { ready: number }).ready;
  } catch {
    return undefined;
  }
}
