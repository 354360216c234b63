/**
 * The only place that touches `Bun.*`, `Deno.*` and `process.*`. The core asks this module for
 * capabilities (environment, signals, hostname, how to start a child runtime) and stays neutral.
 */
import process from "node:process";
import os from "node:os";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { join } from "node:path";
import { ConfigError } from "../errors.ts";
import { enableTypeScriptImports } from "./typescript.mjs";
export { dieWithParent } from "./parent_death.mjs";

export type RuntimeName = "bun" | "deno" | "node";

declare const Bun: unknown;
declare const Deno: unknown;

export function runtime(): RuntimeName {
  if (typeof Bun !== "undefined") return "bun";
  if (typeof Deno !== "undefined") return "deno";
  return "node";
}

export function env(name: string): string | undefined {
  // Deno without --allow-env for this name throws; an unreadable variable is an unset one.
  try {
    return process.env[name];
  } catch {
    return undefined;
  }
}

/** This process's environment with `extra` on top, for a child process. */
export function envWith(extra: Record<string, string>): Record<string, string | undefined> {
  return { ...process.env, ...extra };
}

/** Sets a variable for this process and the threads and children it starts from now on. */
export function setEnv(name: string, value: string): void {
  process.env[name] = value;
}

export function hostname(): string {
  try {
    return os.hostname();
  } catch {
    return "localhost";
  }
}

export const pid = (): number => process.pid;

export function cpuCount(): number {
  return Math.max(1, os.availableParallelism?.() ?? os.cpus().length);
}

export function argv(): string[] {
  return process.argv.slice(2);
}

export function exit(code: number): never {
  process.exit(code);
}

export function setExitCode(code: number): void {
  process.exitCode = code;
}

export function cwd(): string {
  return process.cwd();
}

export function rssBytes(): number {
  return process.memoryUsage().rss;
}

/**
 * Sends `signal` to a child by its pid; false when it is gone already. Not ChildProcess.kill(): on
 * Deno, after that its exit event names the signal sent as the cause, whatever the code the child
 * then exited with, so a clean stop could not be told from a failed one.
 */
export function signalProcess(pid: number, signal: string): boolean {
  try {
    process.kill(pid, signal);
    return true;
  } catch {
    return false;
  }
}

/** Calls `handler` on SIGTERM and SIGINT; returns a function that removes it. */
export function onShutdownSignal(handler: (signal: string) => void): () => void {
  const signals = ["SIGTERM", "SIGINT"] as const;
  for (const s of signals) process.on(s, handler);
  return () => {
    for (const s of signals) process.off(s, handler);
  };
}

/**
 * The command that starts another process of this same runtime. Bun and Deno run `.ts` natively;
 * Node 20 cannot strip types, so a child that imports TypeScript (`typescript`) gets tsx's loader.
 */
export function childRuntimeArgs(typescript: boolean): { command: string; args: string[] } {
  switch (runtime()) {
    case "bun":
      return { command: process.execPath, args: [] };
    case "deno":
      return { command: process.execPath, args: ["run", ...denoPermissions()] };
    case "node":
      return { command: process.execPath, args: typescript ? ["--import", "tsx"] : [] };
  }
}

/** Whether a module is TypeScript, by its extension: Node needs a loader to import it. */
export function isTypeScript(specifier: string): boolean {
  return /\.[cm]?tsx?$/.test(specifier.replace(/[?#].*$/, ""));
}

/**
 * Registers tsx's loader on the calling thread when Node is about to import TypeScript modules:
 * the app's own `.ts` files, or dray's sources in a checkout. Nothing happens for JavaScript modules,
 * nor on Bun and Deno. Without tsx installed, a ConfigError says how to fix it.
 */
export async function loaderFor(modules: readonly string[]): Promise<void> {
  const ts = modules.find(isTypeScript);
  if (ts === undefined || runtime() !== "node") return;
  try {
    await enableTypeScriptImports(ts);
  } catch (error) {
    throw new ConfigError((error as Error).message, { cause: (error as Error).cause });
  }
}

/**
 * One of dray's own files, by its path from `base` (the caller's `import.meta.url`) without an
 * extension: the compiled `.js` when dray runs from dist/ (installed from npm), the `.ts` source
 * otherwise (a checkout, JSR). A path for a `file:` URL; any other URL (a JSR import) as it is.
 * Resolved when a pool starts, not at import, so that importing dray touches no file.
 */
export function ownFile(base: string, relative: string): string {
  const url = new URL(relative + (isTypeScript(new URL(base).pathname) ? ".ts" : ".js"), base).href;
  return url.startsWith("file:") ? fileURLToPath(url) : url;
}

/** The permissions dray needs on Deno; deno.json tasks list the same. */
export function denoPermissions(): string[] {
  return ["--allow-env", "--allow-net", "--allow-read", "--allow-sys=hostname,osRelease,cpus", "--allow-run"];
}

/**
 * Memory the calling thread holds: JS heap plus memory outside it (Buffers, ArrayBuffers), bytes.
 * Measured per thread on all three runtimes (per isolate on Node and Deno, per VM on Bun), unlike RSS.
 */
export function threadMemoryBytes(): number {
  const m = process.memoryUsage();
  return m.heapUsed + m.external;
}

/** The IPC channel to the parent, in a process started with one (see the process executor). */
export interface ParentChannel {
  /** `sent` is called once the message is handed to the OS (or could not be). */
  send(message: unknown, sent?: () => void): void;
  onMessage(handler: (message: unknown) => void): void;
  /** The parent went away: a child must not outlive its worker. */
  onDisconnect(handler: () => void): void;
  /**
   * Whether the parent is still there, for a watchdog: a disconnect can go unseen (the parent died
   * before the listener was set, or Bun keeps `connected` true), but the child is then re-parented.
   */
  parentAlive(): boolean;
}

export function parentChannel(): ParentChannel | undefined {
  if (typeof process.send !== "function") return undefined;
  const parent = process.ppid;
  return {
    parentAlive: () => process.connected && process.ppid === parent,
    send: (message, sent) => void process.send!(message, undefined, undefined, sent ? () => sent() : undefined),
    onMessage: (handler) => void process.on("message", handler),
    onDisconnect: (handler) => void process.on("disconnect", handler),
  };
}

/** Calls `handler` with errors nothing caught: thrown in a callback, or a rejection nobody handled. */
export function onUncaughtError(handler: (error: unknown) => void): void {
  process.on("uncaughtException", handler);
  process.on("unhandledRejection", handler);
}

/** Calls `handler` synchronously when this process exits, however it exits short of SIGKILL. */
export function onProcessExit(handler: () => void): () => void {
  process.on("exit", handler);
  return () => void process.off("exit", handler);
}

let requireHere: ((specifier: string) => unknown) | undefined;

/**
 * `require` from dray's own folder, so that dray's dependencies resolve as they were installed with
 * it. Made on first use: a JSR import's URL is not a file, and then the project's folder resolves.
 */
function requireFromHere(specifier: string): unknown {
  requireHere ??= createRequire(import.meta.url.startsWith("file:") ? import.meta.url : join(cwd(), "package.json"));
  return requireHere(specifier);
}

/**
 * A dependency loaded on its first use instead of at import. Every app module imports dray's one
 * entry, and every pool thread and child imports the app modules, so whatever the entry loads, each
 * of them loads too. For piscina (only a worker's supervisor starts a pool), croner (only where a
 * cron is defined) and ioredis (only where a handler sends or uses `ctx.redis`) that is memory for
 * nothing. The first use pays the load once and stalls that thread's jobs meanwhile: about 50 ms
 * for ioredis on Bun, worth the 2-7 MB of peak RSS it costs a thread otherwise (bench/README.md,
 * "Lazy ioredis"). pino stays eager: `ctx.logger` is most handlers' first need. Only packages with
 * a CommonJS entry can be loaded this way.
 */
export function lazy<T>(specifier: string): () => T {
  let loaded: T | undefined;
  return () => (loaded ??= requireFromHere(specifier) as T);
}

/** Whether stdout is a terminal, so a person reads the logs, rather than a pipe or a file. */
export function stdoutIsTty(): boolean {
  return process.stdout.isTTY === true;
}

// Imports are hoisted: this one sits with the only function that uses it.
import { readFileSync } from "node:fs";

/** A file's UTF-8 text, read synchronously (settings are made synchronously); throws if it cannot. */
export function readTextFile(path: string): string {
  return readFileSync(path, "utf8");
}

/** CPU time this process has used, user plus system, seconds; undefined where the runtime cannot tell. */
export function cpuSeconds(): number | undefined {
  try {
    const { user, system } = process.cpuUsage();
    return (user + system) / 1e6;
  } catch {
    return undefined;
  }
}
