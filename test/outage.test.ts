/**
 * Redis going away: a worker on a private redis-server (started by this test) survives the server
 * dying and coming back, logs it, and carries on.
 */
import { afterAll, expect, test } from "bun:test";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { Redis } from "ioredis";
import { RedisBroker } from "../src/broker/redis.ts";
import { fixture, sleep, spawnWorker, started, testPrefix, until, type WorkerProcess } from "./helpers.ts";
import { hasRedis } from "./redis_test.ts";

const hasServer = spawnSync("redis-server", ["--version"]).status === 0;
const port = 17_000 + Math.floor(Math.random() * 2_000);
const url = `redis://127.0.0.1:${port}`;
let server: ChildProcess | undefined;
let worker: WorkerProcess | undefined;

async function startServer(): Promise<void> {
  server = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], { stdio: "ignore" });
  const r = new Redis(url, { lazyConnect: true, retryStrategy: () => 50, maxRetriesPerRequest: null });
  r.on("error", () => {});
  await until(async () => (await r.ping().catch(() => "")) === "PONG", "private redis up", 5_000);
  r.disconnect();
}

afterAll(async () => {
  await worker?.stop("SIGKILL");
  server?.kill("SIGKILL");
});

// Skipped locally without redis-server or Redis; in CI it runs, and fails for want of either.
test.skipIf(!hasRedis || (!hasServer && !process.env.CI))("a worker survives Redis going away and coming back", async () => {
  if (!hasServer) throw new Error("redis-server is needed for this test in CI");
  const prefix = testPrefix("outage");
  await startServer();
  worker = spawnWorker([fixture("core_app.ts")], [], { DRAY_PREFIX: prefix, REDIS_URL: url });
  await started(worker);
  const sendOne = async (n: number) => {
    const b = new RedisBroker({ url, prefix });
    await b.enqueue([{ message: { id: `j${n}`, actor: "core_slow", queue: "core", payload: { n, ms: 0 }, priority: 0, sentAt: Date.now() } }]);
    await b.close();
  };
  const done = async (n: number) => {
    const r = new Redis(url);
    try {
      return (await r.sismember(`${prefix}:test:done`, String(n))) === 1;
    } finally {
      r.disconnect();
    }
  };
  // given a worker that has done a job
  await sendOne(1);
  await until(() => done(1), "job 1 done");
  // when Redis dies (losing everything: no persistence) and comes back 2 s later
  server!.kill("SIGKILL");
  await sleep(2_000);
  expect(worker.child.exitCode).toBeNull();
  await startServer();
  // then the worker reconnects and serves new jobs
  await sendOne(2);
  await until(() => done(2), "job 2 done after the outage", 15_000);
  expect(worker.child.exitCode).toBeNull();
  expect(worker.output()).toContain("redis connection error");
}, 40_000);
