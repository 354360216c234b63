/**
 * Shared test plumbing: a random key prefix per test, Redis availability (skip locally, fail in CI),
 * cleanup of a prefix's keys, and worker processes started the way users start them.
 */
import { denoPermissions } from "../src/runtime/mod.ts";
import { Redis } from "ioredis";
import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";

export const REDIS_URL = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
export const root = join(dirname(fileURLToPath(import.meta.url)), "..");
export const fixture = (name: string): string => join(root, "test", "fixtures", name);

/** A fresh key prefix; every key a test makes contains it, so cleanup is one SCAN. */
export function testPrefix(label = "t"): string {
  return `dt-${label}-${crypto.randomUUID().slice(0, 8)}`;
}

let available: boolean | undefined;
/**
 * True when Redis answers. In CI a missing Redis is a failure, not a skip. Bun test files take it
 * from redis_test.ts (`hasRedis`, `redisTest`), awaited before their tests are registered, so the
 * runner counts them as skipped; returning early inside a test would count it as passed.
 */
export async function redisAvailable(): Promise<boolean> {
  if (available !== undefined) return available;
  const r = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  r.on("error", () => {});
  try {
    await r.connect();
    available = (await r.ping()) === "PONG";
  } catch {
    available = false;
  } finally {
    r.disconnect();
  }
  if (!available && process.env.CI) throw new Error(`Redis does not answer at ${REDIS_URL}; CI needs it`);
  return available;
}

/** What `p` rejects with; fails when it resolves. */
// deno-lint-ignore no-explicit-any
export async function rejection(p: Promise<unknown>): Promise<any> {
  try {
    await p;
  } catch (error) {
    return error;
  }
  throw new Error("expected a rejection");
}

export async function cleanPrefix(prefix: string): Promise<void> {
  const r = new Redis(REDIS_URL);
  try {
    let cursor = "0";
    do {
      const [next, keys] = await r.scan(cursor, "MATCH", `*${prefix}*`, "COUNT", 1000);
      cursor = next;
      if (keys.length > 0) await r.unlink(...keys);
    } while (cursor !== "0");
  } finally {
    r.disconnect();
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Waits until `check` is truthy, polling; fails with `what` after `timeout` ms. */
export async function until<T>(check: () => T | Promise<T>, what: string, timeout = 10_000): Promise<T> {
  const deadline = Date.now() + timeout;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for: ${what}`);
    await sleep(25);
  }
}

export interface WorkerProcess {
  child: ChildProcess;
  /** Parsed pino lines so far. */
  logs: Array<Record<string, unknown>>;
  output: () => string;
  exited: Promise<number | null>;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** The runtime binary the tests spawn workers with: DRAY_TEST_RUNTIME=bun|deno|node, default bun. */
export function runtimeCommand(runtime = process.env.DRAY_TEST_RUNTIME ?? "bun"): string[] {
  if (runtime === "node") return [process.env.NODE_BIN ?? "node", "--import", "tsx"];
  if (runtime === "deno") return [process.env.DENO_BIN ?? "deno", "run", ...denoPermissions()];
  return [process.env.BUN_BIN ?? (typeof Bun !== "undefined" ? process.execPath : "bun")];
}

/** Starts `dray worker <modules> <args>` as users do, with its own prefix. */
export function spawnWorker(modules: string[], args: string[], env: Record<string, string>, runtime?: string): WorkerProcess {
  return spawnDray("worker", [...modules, ...args], env, runtime);
}

/** Waits for the "worker started" log line. */
export async function started(w: WorkerProcess, timeout = 20_000): Promise<void> {
  await until(() => w.logs.some((l) => l.msg === "worker started") || w.child.exitCode !== null, "worker started", timeout);
  if (w.child.exitCode !== null) throw new Error(`worker exited with ${w.child.exitCode}:\n${w.output()}`);
}

/**
 * Starts `dray <command> <args>` (e.g. `scheduler <module>`, `cron list <module>`) with the same
 * plumbing as {@link spawnWorker}: parsed pino lines in `logs`, the whole output in `output()`.
 */
export function spawnDray(command: string, args: string[], env: Record<string, string>, runtime?: string): WorkerProcess {
  const [cmd, ...pre] = runtimeCommand(runtime);
  const child = spawn(cmd!, [...pre, join(root, "src/cli/main.ts"), command, ...args], {
    cwd: root,
    env: { ...process.env, DRAY_LOG_LEVEL: "debug", DRAY_LOG_FORMAT: "json", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const logs: Array<Record<string, unknown>> = [];
  let text = "";
  let partial = "";
  child.stdout!.on("data", (chunk: Buffer) => {
    const s = chunk.toString();
    text += s;
    partial += s;
    const lines = partial.split("\n");
    partial = lines.pop() ?? "";
    for (const line of lines) {
      try {
        logs.push(JSON.parse(line));
      } catch {
        // not a log line
      }
    }
  });
  child.stderr!.on("data", (chunk: Buffer) => (text += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  return {
    child,
    logs,
    output: () => text,
    exited,
    async stop(signal = "SIGTERM") {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return await exited;
    },
  };
}

/** Starts `dray scheduler <modules>` (the cron ticker alone) with its own prefix. */
export function spawnScheduler(modules: string[], env: Record<string, string>, runtime?: string): WorkerProcess {
  return spawnDray("scheduler", modules, env, runtime);
}

/** Waits for the "cron ticker started" log line of a scheduler (or of a worker that ticks). */
export async function tickerStarted(p: WorkerProcess, timeout = 20_000): Promise<void> {
  await until(() => p.logs.some((l) => l.msg === "cron ticker started") || p.child.exitCode !== null, "cron ticker started", timeout);
  if (p.child.exitCode !== null) throw new Error(`process exited with ${p.child.exitCode}:\n${p.output()}`);
}

/** When a job ran, as the `iso_span` fixture returns it (epoch ms, one clock for every thread and process). */
export interface Span {
  start: number;
  end: number;
}

/** Most spans open at one instant: how many jobs ran at once. */
export function maxOverlap(spans: Span[]): number {
  const edges = spans.flatMap((s) => [[s.start, 1], [s.end, -1]] as const).sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let open = 0;
  let most = 0;
  for (const [, d] of edges) most = Math.max(most, (open += d));
  return most;
}
