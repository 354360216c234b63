/**
 * The only place that touches `Bun.*`, `Deno.*` and `process.*`. The core asks this module for
 * capabilities (environment, signals, hostname, how to start a child runtime) and stays neutral.
 */
import process from "node:process";
import os from "node:os";

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

/** Calls `handler` on SIGTERM and SIGINT; returns a function that removes it. */
export function onShutdownSignal(handler: (signal: string) => void): () => void {
  const signals = ["SIGTERM", "SIGINT"] as const;
  for (const s of signals) process.on(s, handler);
  return () => {
    for (const s of signals) process.off(s, handler);
  };
}

/**
 * The command that starts another process of this same runtime able to run TypeScript sources:
 * Bun and Deno run `.ts` natively; Node 20 cannot strip types and needs tsx's loader.
 */
export function childRuntimeArgs(): { command: string; args: string[] } {
  switch (runtime()) {
    case "bun":
      return { command: process.execPath, args: [] };
    case "deno":
      return { command: process.execPath, args: ["run", ...denoPermissions()] };
    case "node":
      return { command: process.execPath, args: ["--import", "tsx"] };
  }
}

/** The permissions dray needs on Deno; deno.json tasks list the same. */
export function denoPermissions(): string[] {
  return ["--allow-env", "--allow-net", "--allow-read", "--allow-sys=hostname,osRelease,cpus", "--allow-run"];
}
