/**
 * `--metrics-port`: what a worker counts and serves on /metrics and /healthz, through real worker
 * processes as users start them; the counting itself against the supervisor's events, in-process.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort, RedisServer, redisServerAvailable } from "../bench/chaos/redis_server.ts";
import { RedisBroker } from "../src/broker/redis.ts";
import { closeBroker } from "../src/client.ts";
import { configure } from "../src/config.ts";
import type { Actor } from "../src/actor.ts";
import { Events, type WorkerEventMap } from "../src/events.ts";
import { healthReport, PoolHealth, RedisHealth } from "../src/metrics/health.ts";
import { JobMetrics, newRegistry } from "../src/metrics/registry.ts";
import { doomed, flaky, ok, spin } from "./fixtures/metrics_app.ts";
import { cleanPrefix, fixture, REDIS_URL, root, runtimeCommand, spawnDray, spawnWorker, started, testPrefix, until,
  type WorkerProcess } from "./helpers.ts";
import { redisTest } from "./redis_test.ts";
import { sample } from "./scrape.ts";

const app = fixture("metrics_app.ts");
const hasServer = redisServerAvailable();
if (!hasServer && process.env.CI) throw new Error("redis-server is needed for the metrics tests in CI");

let prefix = "";
const workers: WorkerProcess[] = [];
const cleanups: Array<() => Promise<void> | void> = [];

afterEach(async () => {
  await Promise.all(workers.splice(0).map((w) => w.stop("SIGKILL")));
  for (const c of cleanups.splice(0).reverse()) await c();
  await closeBroker();
  if (prefix) await cleanPrefix(prefix);
  prefix = "";
});

async function scrape(port: number): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`);
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toStartWith("text/plain");
  return await res.text();
}

async function health(port: number): Promise<{ status: number; body: Record<string, any> }> {
  const res = await fetch(`http://127.0.0.1:${port}/healthz`);
  return { status: res.status, body: await res.json() as Record<string, any> };
}

function worker(port: number, env: Record<string, string> = {}, args: string[] = []): WorkerProcess {
  const w = spawnWorker([app], ["--threads", "2", "--concurrency", "4", "--metrics-port", String(port), ...args],
    { DRAY_PREFIX: prefix, REDIS_URL, ...env });
  workers.push(w);
  return w;
}

/** `dray queues` as a person reads it: one row per queue. */
function drayQueues(): Array<Record<string, string>> {
  const [cmd, ...pre] = runtimeCommand();
  const out = spawnSync(cmd!, [...pre, join(root, "src/cli/main.ts"), "queues"], {
    cwd: root, encoding: "utf8", env: { ...process.env, DRAY_PREFIX: prefix, REDIS_URL }, timeout: 30_000,
  });
  expect(out.status).toBe(0);
  const [head, ...rows] = out.stdout.trim().split("\n").map((l) => l.trim().split(/\s+/));
  return rows.map((r) => Object.fromEntries(head!.map((h, i) => [h, r[i]!])));
}

describe("a worker with --metrics-port", () => {
  redisTest("given jobs of known outcomes and a time-limit kill, when /metrics is scraped, then each count is exact", async () => {
    // given a worker serving metrics
    prefix = testPrefix("metrics");
    configure({ prefix, redisUrl: REDIS_URL });
    const port = await freePort();
    const w = worker(port);
    await started(w);
    // when 3 jobs complete, 2 fail once then complete, 1 fails twice (retried, then dead)
    await ok.sendMany([{}, {}, {}]);
    await flaky.sendMany([{}, {}]);
    await doomed.send({});
    const jobs = (q: Record<string, string>) => async () => sample(await scrape(port), "dray_jobs_total", q);
    await until(async () => (await jobs({ actor: "metrics_flaky", outcome: "completed" })()) === 2 &&
      (await jobs({ actor: "metrics_doomed", outcome: "dead" })()) === 1 &&
      (await jobs({ actor: "metrics_ok", outcome: "completed" })()) === 3, "the first jobs settled", 15_000);
    // and then a busy loop overruns its 200 ms limit (alone: no neighbour is interrupted and run twice)
    await spin.send({});
    await until(async () => (await jobs({ actor: "metrics_spin", outcome: "dead" })()) === 1, "the busy loop dead", 15_000);
    // then every counter holds its number
    const text = await scrape(port);
    const count = (name: string, labels: Record<string, string>) => sample(text, name, { queue: "metrics", ...labels });
    expect(count("dray_jobs_total", { actor: "metrics_ok", outcome: "completed" })).toBe(3);
    expect(count("dray_jobs_total", { actor: "metrics_flaky", outcome: "completed" })).toBe(2);
    expect(count("dray_jobs_total", { actor: "metrics_flaky", outcome: "retried" })).toBe(2);
    expect(count("dray_jobs_total", { actor: "metrics_doomed", outcome: "retried" })).toBe(1);
    expect(count("dray_jobs_total", { actor: "metrics_doomed", outcome: "dead" })).toBe(1);
    expect(count("dray_jobs_total", { actor: "metrics_spin", outcome: "dead" })).toBe(1);
    expect(count("dray_jobs_total", { actor: "metrics_ok", outcome: "retried" })).toBe(0);
    expect(count("dray_time_limit_kills_total", { actor: "metrics_spin" })).toBe(1);
    expect(count("dray_time_limit_kills_total", { actor: "metrics_ok" })).toBe(0);
    // and the histograms counted every completion and every start
    expect(count("dray_job_duration_seconds_count", { actor: "metrics_ok" })).toBe(3);
    expect(count("dray_job_duration_seconds_count", { actor: "metrics_flaky" })).toBe(2);
    expect(count("dray_job_wait_seconds_count", { actor: "metrics_ok" })).toBe(3);
    expect(count("dray_job_wait_seconds_count", { actor: "metrics_flaky" })).toBe(4);
    expect(count("dray_job_wait_seconds_count", { actor: "metrics_doomed" })).toBe(2);
    expect(count("dray_job_wait_seconds_count", { actor: "metrics_spin" })).toBe(1);
    // and the pool: the killed thread was replaced
    expect(sample(text, "dray_pool_restarts_total")).toBe(1);
    await until(async () => sample(await scrape(port), "dray_pool_hosts") === 2, "the replacement thread ready", 10_000);
    expect(sample(text, "dray_jobs_running")).toBe(0);
    expect(sample(text, "dray_process_cpu_seconds_total")).toBeGreaterThan(0);
    expect(sample(text, "dray_process_resident_memory_bytes")).toBeGreaterThan(10e6);
    // and /healthz is 200
    const h = await health(port);
    expect(h.status).toBe(200);
    expect(h.body).toMatchObject({ status: "ok", redis: { ok: true }, pool: { ok: true, hosts: 2 } });
  }, 60_000);

  redisTest("given ready, delayed and dead jobs, when /metrics is scraped, then the queue gauges match `dray queues`", async () => {
    // given a delayed job and two ready ones on a queue no worker reads, besides a dead letter
    prefix = testPrefix("metrics-q");
    configure({ prefix, redisUrl: REDIS_URL });
    const port = await freePort();
    const w = worker(port);
    await started(w);
    await ok.send({}, { delay: 600_000 });
    const sender = new RedisBroker({ url: REDIS_URL, prefix });
    cleanups.push(() => sender.close());
    const idle = (id: string) =>
      ({ message: { id, actor: "metrics_ok", queue: "metrics_idle", payload: {}, priority: 0, sentAt: Date.now() } });
    await sender.enqueue([idle("a"), idle("b")]);
    await doomed.send({});
    await until(async () => (await sender.stats("metrics")).dead === 1, "a dead letter", 10_000);
    // when /metrics is scraped after the one-second cache and `dray queues` is run
    await new Promise((r) => setTimeout(r, 1_100));
    const text = await scrape(port);
    const rows = drayQueues();
    // then both say the same, queue by queue
    expect(rows.map((r) => r.queue)).toEqual(["metrics", "metrics_idle"]);
    for (const row of rows) {
      for (const column of ["ready", "running", "delayed", "dead"]) {
        expect({ queue: row.queue, [column]: sample(text, `dray_queue_${column}`, { queue: row.queue! }) })
          .toEqual({ queue: row.queue, [column]: Number(row[column]) });
      }
      expect(sample(text, "dray_queue_paused", { queue: row.queue! })).toBe(row.paused === "yes" ? 1 : 0);
    }
    expect(sample(text, "dray_queue_delayed", { queue: "metrics" })).toBe(1);
    expect(sample(text, "dray_queue_ready", { queue: "metrics_idle" })).toBe(2);
    expect(sample(text, "dray_queue_dead", { queue: "metrics" })).toBe(1);
  }, 40_000);

  const withServer = test.skipIf(!hasServer);
  withServer("given Redis killed under it, then /healthz turns 503 with its reason, and /metrics answers without queue gauges", async () => {
    // given a worker on a private redis-server, healthy
    prefix = testPrefix("metrics-down");
    const dir = mkdtempSync(join(tmpdir(), "dray-metrics-"));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const server = new RedisServer(await freePort(), dir);
    cleanups.push(() => server.stop());
    await server.start();
    const port = await freePort();
    const w = worker(port, { REDIS_URL: server.url });
    await started(w);
    expect((await health(port)).status).toBe(200);
    expect(sample(await scrape(port), "dray_queue_ready", { queue: "metrics" })).toBe(0);
    // when Redis dies
    await server.kill9();
    const killed = Date.now();
    // then /healthz says so within ~5 s, with the reason
    const down = (await until(async () => {
      const h = await health(port);
      return h.status === 503 ? h : undefined;
    }, "/healthz 503", 15_000))!;
    expect(Date.now() - killed).toBeGreaterThan(4_000);
    expect(down.body.status).toBe("unavailable");
    expect(down.body.redis.ok).toBe(false);
    expect(down.body.reason).toContain("redis: no answer from Redis");
    expect(down.body.lastReadAgeMs).toBeGreaterThan(5_000);
    // and /metrics answers within its bound, with the process counters and no queue gauges
    const asked = Date.now();
    const text = await scrape(port);
    expect(Date.now() - asked).toBeLessThan(2_500);
    expect(sample(text, "dray_process_cpu_seconds_total")).toBeGreaterThan(0);
    expect(sample(text, "dray_jobs_total", { actor: "metrics_ok", outcome: "completed" })).toBe(0);
    expect(sample(text, "dray_queue_ready", { queue: "metrics" })).toBeUndefined();
    // and once Redis is back, so is the worker's health
    await server.start();
    await until(async () => (await health(port)).status === 200, "/healthz 200 again", 15_000);
  }, 60_000);

  redisTest("given a port that is taken, then the worker says so and exits non-zero before reading a job", async () => {
    // given a port held by another server
    prefix = testPrefix("metrics-port");
    const holder: Server = createServer();
    await new Promise<void>((resolve) => holder.listen(0, "0.0.0.0", resolve));
    cleanups.push(() => new Promise<void>((resolve) => holder.close(() => resolve())));
    const port = (holder.address() as { port: number }).port;
    // when a worker is started on it
    const w = spawnDray("worker", [app, "--metrics-port", String(port)], { DRAY_PREFIX: prefix, REDIS_URL });
    workers.push(w);
    const code = await w.exited;
    // then it exits non-zero with the port in its message, never having started
    expect(code).not.toBe(0);
    expect(w.output()).toContain(`metrics port ${port} is in use`);
    expect(w.logs.some((l) => l.msg === "worker started")).toBe(false);
  }, 30_000);

  test("given a port out of range, then dray worker refuses it as bad usage", () => {
    for (const bad of ["0", "65536", "http", "-1"]) {
      const w = spawnSync(runtimeCommand()[0]!, [...runtimeCommand().slice(1), join(root, "src/cli/main.ts"), "worker", app,
        `--metrics-port=${bad}`], { cwd: root, encoding: "utf8", timeout: 30_000 });
      expect(w.status).toBe(2);
      expect(w.stderr).toContain("--metrics-port must be a port, 1-65535");
    }
  }, 60_000);
});

describe("a scheduler with --metrics-port", () => {
  redisTest("given a running scheduler, then it serves its process metrics and a healthy /healthz", async () => {
    prefix = testPrefix("metrics-sched");
    const port = await freePort();
    const s = spawnDray("scheduler", [fixture("cron_app.ts"), "--metrics-port", String(port)], { DRAY_PREFIX: prefix, REDIS_URL });
    workers.push(s);
    await until(() => s.logs.some((l) => l.msg === "scheduler started") || s.child.exitCode !== null, "scheduler started", 20_000);
    const text = await scrape(port);
    expect(sample(text, "dray_process_resident_memory_bytes")).toBeGreaterThan(0);
    expect(sample(text, "dray_jobs_total")).toBeUndefined();
    const h = await health(port);
    expect(h.status).toBe(200);
    expect(h.body).toMatchObject({ status: "ok", redis: { ok: true } });
    expect(h.body.pool).toBeUndefined();
  }, 30_000);
});

describe("counting from the supervisor's events", () => {
  test("given each kind of outcome event, then each lands in its outcome, and deferrals only among the returns", async () => {
    // given metrics watching an emitter, as they watch a supervisor
    const registry = newRegistry();
    const metrics = new JobMetrics(registry);
    const events = new Events<WorkerEventMap>();
    metrics.seed([{ name: "a", options: { queue: "q" } } as unknown as Actor]);
    const off = metrics.watch(events);
    const job = { id: "1", actor: "a", queue: "q", attempt: 1 };
    const error = { name: "Error", message: "x" };
    // when each event fires
    events.emit("job:start", { ...job, enqueuedAt: Date.now() - 2_000 });
    events.emit("job:complete", { ...job, duration: 1_500, value: 1 });
    events.emit("job:retry", { ...job, delay: 10, error });
    events.emit("job:dead", { ...job, error });
    for (const status of ["failed", "aborted", "skipped"] as const) events.emit("job:discarded", { ...job, status, error });
    events.emit("job:returned", { id: "1", actor: "a", queue: "q", reason: "deferred 250 ms" });
    events.emit("job:returned", { id: "1", actor: "a", queue: "q", reason: "its thread 3 was stopped" });
    metrics.poolHooks.timeLimitKill!({ id: "1", actor: "a", queue: "q", payload: {}, attempt: 1, timeLimit: 1 });
    off();
    events.emit("job:complete", { ...job, duration: 1, value: 1 });
    // then each outcome counted once, and nothing after the watch ended
    const text = await registry.metrics();
    for (const outcome of ["completed", "retried", "dead", "failed", "aborted", "deferred", "skipped"]) {
      expect({ outcome, n: sample(text, "dray_jobs_total", { queue: "q", actor: "a", outcome }) }).toEqual({ outcome, n: 1 });
    }
    expect(sample(text, "dray_time_limit_kills_total", { queue: "q", actor: "a" })).toBe(1);
    expect(sample(text, "dray_job_duration_seconds_sum", { actor: "a" })).toBe(1.5);
    expect(sample(text, "dray_job_wait_seconds_bucket", { actor: "a", le: "1" })).toBe(0);
    expect(sample(text, "dray_job_wait_seconds_bucket", { actor: "a", le: "5" })).toBe(1);
  });
});

describe("/healthz's judgement", () => {
  test("given Redis that stops answering, then it is up within the grace and unavailable after it, with the reason", async () => {
    let answer = true;
    const redis = new RedisHealth(() => (answer ? Promise.resolve() : new Promise(() => {})), { downAfterMs: 300, timeoutMs: 50, everyMs: 10 });
    expect(await healthReport(redis)).toMatchObject({ status: "ok", redis: { ok: true } });
    // when it stops answering: still up for the grace, a blip is not an outage
    answer = false;
    redis.failed(new Error("connect ECONNREFUSED"));
    expect(await healthReport(redis)).toMatchObject({ status: "ok", redis: { ok: true, error: "connect ECONNREFUSED" } });
    await new Promise((r) => setTimeout(r, 350));
    // then unavailable: the check that asks waits its 50 ms, the next does not wait again for the probe still out
    await healthReport(redis);
    const t = Date.now();
    const report = await healthReport(redis);
    expect(Date.now() - t).toBeLessThan(40);
    expect(report.status).toBe("unavailable");
    expect(report.reason).toMatch(/^redis: no answer from Redis for \d+ ms \(last error: connect ECONNREFUSED\)$/);
  });

  test("given a pool with no host, then it is unavailable only once that lasted past the grace", async () => {
    let hosts = 0;
    const pool = new PoolHealth(() => hosts, 100);
    const redis = new RedisHealth(() => Promise.resolve());
    expect(await healthReport(redis, pool)).toMatchObject({ status: "ok", pool: { ok: true, hosts: 0 } });
    await new Promise((r) => setTimeout(r, 150));
    const down = await healthReport(redis, pool);
    expect(down).toMatchObject({ status: "unavailable", pool: { ok: false, hosts: 0 } });
    expect(down.reason).toStartWith("pool: no thread or process can run jobs");
    hosts = 2;
    expect(await healthReport(redis, pool)).toMatchObject({ status: "ok", pool: { ok: true, hosts: 2 } });
    expect((await healthReport(redis, new PoolHealth(undefined))).pool).toEqual({ ok: true, hosts: null });
  });
});
