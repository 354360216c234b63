/**
 * Graceful shutdown when Redis is gone: SIGTERM still ends the worker within its grace, says what it
 * could not settle (that stays pending in Redis and is reclaimed), and exits non-zero. On a private
 * redis-server (with AOF), so that stopping it touches no one else.
 */
import { afterEach, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { GROUP } from "../src/broker/keys.ts";
import { RedisBroker } from "../src/broker/redis.ts";
import { freePort, RedisServer, redisServerAvailable } from "../bench/chaos/redis_server.ts";
import { fixture, spawnWorker, started, testPrefix, until, type WorkerProcess } from "./helpers.ts";

const hasServer = redisServerAvailable();
if (!hasServer && process.env.CI) throw new Error("redis-server is needed for this test in CI");

let server: RedisServer | undefined;
let dir = "";
let worker: WorkerProcess | undefined;

afterEach(async () => {
  await worker?.stop("SIGKILL");
  await server?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test.skipIf(!hasServer)("SIGTERM with Redis down exits within the grace, non-zero, and the job stays pending", async () => {
  // given a worker with a 1.5 s grace running a 4 s job on a private Redis
  dir = mkdtempSync(join(tmpdir(), "dray-shutdown-"));
  server = new RedisServer(await freePort(), dir);
  await server.start();
  const prefix = testPrefix("shutdown");
  worker = spawnWorker([fixture("core_app.ts")], ["--shutdown-grace", "1500", "--concurrency", "2"],
    { DRAY_PREFIX: prefix, REDIS_URL: server.url });
  await started(worker);
  const sender = new RedisBroker({ url: server.url, prefix });
  await sender.enqueue([{ message: { id: "long", actor: "core_slow", queue: "core", payload: { n: 1, ms: 4_000 }, priority: 0, sentAt: Date.now() } }]);
  await sender.close();
  await until(() => worker!.logs.some((l) => l.msg === "job started"), "job started");
  // when Redis dies and the worker is told to stop
  await server.kill9();
  const asked = Date.now();
  worker.child.kill("SIGTERM");
  // then it exits within the grace plus a little, non-zero, saying what it left
  const code = await Promise.race([worker.exited, new Promise((r) => setTimeout(() => r("still running"), 10_000))]);
  expect(code).toBe(1);
  expect(Date.now() - asked).toBeLessThan(6_000);
  expect(worker.logs.some((l) => String(l.msg).startsWith("shutdown grace ran out") && l.unsettled === 1)).toBe(true);
  // and once Redis is back (AOF), the job is still there, pending, for another worker to reclaim
  await server.start();
  const r = new Redis(server.url);
  try {
    const stream = `{${prefix}:core}:stream:0`;
    expect(((await r.xpending(stream, GROUP)) as [number])[0]).toBe(1);
  } finally {
    r.disconnect();
  }
}, 40_000);
