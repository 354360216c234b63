/**
 * What the dashboard's browser test (dashboard.ts) and its screenshots (screenshots.ts) share: a key
 * prefix of their own, real workers on test/fixtures/dashboard_app.ts and two `dray dashboard`
 * servers (one with a token, one read-only), all started through the CLI as users start them; a
 * headless Chromium (watch.ts watches its pages); and a teardown that kills what was started and
 * deletes the prefix's keys, also when the run fails or is interrupted.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";
import { Redis } from "ioredis";
import { chromium, type Browser } from "playwright-core";
import { closeBroker } from "../../src/client.ts";
import { configure } from "../../src/config.ts";
import {
  cleanPrefix, fixture, REDIS_URL, root, spawnDray, spawnWorker, started, testPrefix, until, type WorkerProcess,
} from "../helpers.ts";

export const chromiumPath = process.env.CHROMIUM_BIN ?? "/usr/bin/chromium";
const chromiumArgs = [
  "--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking", "--disable-component-update",
  "--disable-sync", "--no-first-run",
];

// Workers and dashboards run on Bun (a devDependency, and quick to start) unless told otherwise.
const localBun = join(root, "node_modules/.bin/bun");
if (existsSync(localBun)) process.env.BUN_BIN ??= localBun;
export const runtime = process.env.DRAY_TEST_RUNTIME ?? (process.env.BUN_BIN ? "bun" : "node");

export function chromiumAvailable(): boolean {
  return existsSync(chromiumPath);
}

export interface DashboardServer {
  /** Where it serves, without the trailing slash: `${url}/dead/q`. */
  url: string;
  process: WorkerProcess;
}

export interface Stack {
  prefix: string;
  token: string;
  /** A connection of the test's own, for checking what the dashboard's clicks did. */
  redis: Redis;
  /** The first runs every queue; the others, what startStack's `moreWorkers` said. */
  workers: WorkerProcess[];
  /** Started with DRAY_DASHBOARD_TOKEN: actions need the token. */
  admin: DashboardServer;
  /** Started without a token: every action is refused. */
  readOnly: DashboardServer;
  keys: { paused: string; dlq: (queue: string) => string; failRuns: string };
  stop(): Promise<void>;
}

const children = new Set<WorkerProcess>();
/** What a SIGINT or SIGTERM must undo before this process exits: stacks to stop, browsers to close. */
const undo = new Set<() => Promise<unknown>>();

// The last resort: whatever happens to this process, its children do not outlive it.
process.on("exit", () => {
  for (const c of children) if (c.child.exitCode === null && c.child.signalCode === null) c.child.kill("SIGKILL");
});
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    void Promise.allSettled([...undo].map((f) => f())).finally(() => process.exit(130));
  });
}

function track(p: WorkerProcess): WorkerProcess {
  children.add(p);
  void p.exited.then(() => children.delete(p));
  return p;
}

async function stopProcess(p: WorkerProcess): Promise<void> {
  if (p.child.exitCode !== null || p.child.signalCode !== null) return;
  p.child.kill("SIGTERM");
  const timer = new Promise((r) => setTimeout(r, 5_000).unref());
  await Promise.race([p.exited, timer]);
  if (p.child.exitCode === null && p.child.signalCode === null) await p.stop("SIGKILL");
}

/** `dray dashboard --port 0`: the kernel picks the port, which the server's "dashboard serving" log line names. */
async function startDashboard(env: Record<string, string>, prefix: string): Promise<DashboardServer> {
  const p = track(spawnDray("dashboard", ["--port", "0", "--host", "127.0.0.1", "--prefix", prefix], env, runtime));
  const serving = () => p.logs.find((l) => String(l.msg).startsWith("dashboard serving"));
  await until(() => serving() ?? p.child.exitCode !== null, "dashboard serving", 30_000);
  const line = serving();
  if (!line) throw new Error(`the dashboard exited with ${p.child.exitCode}:\n${p.output()}`);
  const url = String(line.url).replace(/\/$/, "");
  return { url, process: p };
}

/**
 * A worker (concurrency 16 over 2 threads, the cron ticker on) and both dashboards, under a fresh
 * prefix; this process is configured to send to it. `moreWorkers`: the arguments of more workers
 * to start alongside (e.g. `["--queues", "email"]`).
 */
export async function startStack(label: string, moreWorkers: string[][] = []): Promise<Stack> {
  const prefix = testPrefix(label);
  const token = `t0k-${crypto.randomUUID()}`;
  configure({ prefix, redisUrl: REDIS_URL });
  const redis = new Redis(REDIS_URL);
  // Rollups and heartbeats every 500 ms, so that the actors and workers pages catch up quickly.
  const env = { DRAY_PREFIX: prefix, REDIS_URL, DRAY_HISTORY_MS: "500", DRAY_HEARTBEAT_MS: "500", DRAY_DASHBOARD_TOKEN: "" };
  let stopped: Promise<void> | undefined;
  const stack: Partial<Stack> & Pick<Stack, "prefix" | "token" | "redis" | "keys" | "stop"> = {
    prefix, token, redis,
    keys: { paused: `${prefix}:paused`, dlq: (queue) => `{${prefix}:${queue}}:dlq`, failRuns: `${prefix}:test:fail-runs` },
    // Once, whoever asks first: the run's finally or a signal.
    stop: () => (stopped ??= (async () => {
      await Promise.all([...children].map(stopProcess));
      await closeBroker();
      redis.disconnect();
      await cleanPrefix(prefix);
      undo.delete(stack.stop);
    })()),
  };
  undo.add(stack.stop);
  try {
    const workers = [["--concurrency", "16", "--threads", "2"], ...moreWorkers]
      .map((args) => track(spawnWorker([fixture("dashboard_app.ts")], [...args, "--shutdown-grace", "1000"], env, runtime)));
    const [[admin, readOnly]] = await Promise.all([
      Promise.all([startDashboard({ ...env, DRAY_DASHBOARD_TOKEN: token }, prefix), startDashboard(env, prefix)]),
      Promise.all(workers.map((w) => started(w, 30_000))),
    ]);
    return { ...stack, workers, admin, readOnly };
  } catch (error) {
    await stack.stop();
    throw error;
  }
}

/** The dead letters of a queue as Redis has them: entry id → the job id in its message. */
export async function deadLetters(s: Stack, queue = "dash"): Promise<Map<string, string>> {
  const entries = await s.redis.xrange(s.keys.dlq(queue), "-", "+");
  return new Map(entries.map(([ref, fields]) => {
    const m = fields[fields.indexOf("m") + 1] ?? "{}";
    return [ref, String((JSON.parse(m) as { id?: string }).id)];
  }));
}

/** What a refused click must leave as it was: the paused queues and the dead letters of `dash`. */
export async function redisState(s: Stack): Promise<string> {
  const [paused, dlq] = await Promise.all([s.redis.smembers(s.keys.paused), s.redis.xrange(s.keys.dlq("dash"), "-", "+")]);
  return JSON.stringify({ paused: paused.sort(), dlq });
}

export async function launchBrowser(): Promise<Browser> {
  // launch() gives each run a fresh temporary profile of its own and deletes it on close. Signals
  // are ours to handle: Playwright's own handler would close the browser and exit before the stack
  // is stopped and the prefix's keys deleted.
  const browser = await chromium.launch({
    executablePath: chromiumPath, headless: true, args: chromiumArgs, handleSIGINT: false, handleSIGTERM: false, handleSIGHUP: false,
  });
  const close = () => browser.close();
  undo.add(close);
  browser.on("disconnected", () => undo.delete(close));
  return browser;
}
