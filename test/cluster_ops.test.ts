/**
 * What operators read and steer, on the local Redis Cluster: a worker's /metrics and /healthz,
 * `dray dlq list|requeue|purge`, `dray cron list|history` and `dray workers`, over queues served by
 * three masters, through real processes on the cluster's `redis+cluster://` URL. Skipped locally
 * without redis-server or redis-cli; in CI their absence fails the file.
 */
import { afterEach, beforeEach, describe, expect } from "bun:test";
import { freePort } from "../bench/chaos/redis_server.ts";
import type { RedisClient } from "../src/broker/connection.ts";
import { RedisBroker } from "../src/broker/redis.ts";
import { closeBroker } from "../src/client.ts";
import { configure } from "../src/config.ts";
import { fine, fineB, pickyA, pickyC } from "./fixtures/ops_app.ts";
import { fixture, spawnDray, spawnWorker, started, until, type WorkerProcess } from "./helpers.ts";
import { sample } from "./scrape.ts";
import { localCluster, targetTest } from "./target.ts";

const cluster = localCluster();
const it = targetTest(cluster);
const QUEUES = ["a", "b", "c"];

describe("operations on a Redis Cluster", () => {
  let prefix = "";
  let redis: RedisClient;
  let broker: RedisBroker;
  const procs: WorkerProcess[] = [];
  const env = () => ({ DRAY_PREFIX: prefix, REDIS_URL: cluster.url() });

  /** `dray <command> <args>` to its end: exit code and output. */
  async function dray(command: string, ...args: string[]): Promise<{ code: number | null; out: string }> {
    const p = spawnDray(command, args, env());
    procs.push(p);
    const code = await p.exited;
    return { code, out: p.output() };
  }

  const lines = (out: string) => out.trim().split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l));

  beforeEach(() => {
    if (!cluster.enabled) return;
    prefix = cluster.prefix("ops", QUEUES);
    configure({ prefix, redisUrl: cluster.url() });
    redis = cluster.client();
    broker = new RedisBroker({ url: cluster.url(), prefix });
  });

  afterEach(async () => {
    if (!cluster.enabled) return;
    await Promise.all(procs.splice(0).map((p) => p.stop("SIGKILL")));
    await closeBroker();
    await broker.close();
    redis.disconnect();
    await cluster.clean(prefix);
  });

  it("given jobs and dead letters on three masters, then /metrics, dray dlq, dray cron and dray workers read and steer them all", async () => {
    // given a worker that serves metrics and ticks an every-second cron on b
    const port = await freePort();
    const w = spawnWorker([fixture("ops_app.ts")], ["--concurrency", "8", "--metrics-port", String(port)], env());
    procs.push(w);
    await started(w);
    const scrape = async () => await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    const jobs = (actor: string, outcome: string) => async () => sample(await scrape(), "dray_jobs_total", { actor, outcome });
    // when jobs complete on a and b, and three fail for good: one on a, two on c
    await fine.sendMany([{}, {}, {}]);
    await fineB.sendMany([{}, {}]);
    await pickyA.send({});
    await pickyC.sendMany([{}, {}]);
    await until(async () => (await jobs("ops_picky_c", "dead")()) === 2 && (await jobs("ops_picky_a", "dead")()) === 1 &&
      (await jobs("ops_fine_a", "completed")()) === 3 && (await jobs("ops_fine_b", "completed")()) === 2, "the jobs settled", 20_000);

    // then /metrics counts them by queue, and its queue gauges (read at most once a second) read
    // each queue's master
    const dead = (text: string) => QUEUES.map((queue) => sample(text, "dray_queue_dead", { queue }));
    const text = (await until(async () => {
      const t = await scrape();
      return dead(t).join() === "1,0,2" ? t : undefined;
    }, "the dead-letter gauges", 5_000))!;
    expect(sample(text, "dray_jobs_total", { queue: "a", actor: "ops_fine_a", outcome: "completed" })).toBe(3);
    expect(sample(text, "dray_jobs_total", { queue: "b", actor: "ops_fine_b", outcome: "completed" })).toBe(2);
    expect(sample(text, "dray_queue_dead", { queue: "a" })).toBe(1);
    expect(sample(text, "dray_queue_dead", { queue: "c" })).toBe(2);
    expect(sample(text, "dray_queue_dead", { queue: "b" })).toBe(0);
    expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200);

    // and dray workers lists the worker; dray dlq list shows the letters of both masters
    const workers = await dray("workers", "--json");
    expect(workers.code).toBe(0);
    expect(JSON.parse(workers.out.slice(workers.out.indexOf("["))).map((x: { pid: number }) => x.pid)).toEqual([w.child.pid]);
    const listed = await dray("dlq", "list", "--json");
    expect(listed.code).toBe(0);
    expect(lines(listed.out).map((l) => l.message.actor).sort()).toEqual(["ops_picky_a", "ops_picky_c", "ops_picky_c"]);

    // when the cause is fixed and c's letters are requeued
    await redis.set(`${prefix}:test:fixed`, "1");
    const requeued = await dray("dlq", "requeue", "--queue", "c");
    // then they run and complete; a's letter stays
    expect({ code: requeued.code, out: requeued.out.trim() }).toEqual({ code: 0, out: "c: requeued 2" });
    await until(async () => (await jobs("ops_picky_c", "completed")()) === 2, "the requeued letters completed", 15_000);
    expect([(await broker.stats("a")).dead, (await broker.stats("c")).dead]).toEqual([1, 0]);

    // when every queue's letters are purged
    const purged = await dray("dlq", "purge", "--all");
    expect(purged.code).toBe(0);
    expect(purged.out).toContain("purged 1 dead letter in");
    // then none is left on any master
    expect(await Promise.all(QUEUES.map(async (q) => (await broker.stats(q)).dead))).toEqual([0, 0, 0]);

    // and the cron, ticked by the worker, shows its runs to dray cron list and history
    await until(async () => lines((await dray("cron", "history", "ops_every_second", "--json")).out)
      .filter((r) => r.status === "COMPLETED").length >= 2, "two cron runs completed", 15_000);
    const [cron] = lines((await dray("cron", "list", "--json")).out);
    expect(cron).toMatchObject({ name: "ops_every_second", actor: "ops_tick", queue: "b", lastRun: { status: expect.any(String) } });
    expect(w.logs.filter((l) => Number(l.level) >= 50)).toEqual([]);
  }, 90_000);

  it("given no node answering, a worker started on the cluster URL waits and says so, then runs jobs on every master once they answer", async () => {
    // given every node of the cluster frozen (SIGSTOP: connections open, nothing answers)
    const pids = cluster.cluster().nodes.map((n) => n.pid);
    const freeze = (signal: NodeJS.Signals) => pids.forEach((pid) => process.kill(pid, signal));
    freeze("SIGSTOP");
    let w: WorkerProcess;
    try {
      // when a worker starts
      w = spawnWorker([fixture("ops_app.ts")], ["--concurrency", "8", "--no-cron"], env());
      procs.push(w);
      // then it keeps running and logs why it waits
      await until(() => w.logs.some((l) => l.msg === "redis connection error; reconnecting"), "a reconnect line", 20_000);
      expect(w.child.exitCode).toBeNull();
      expect(w.logs.some((l) => l.msg === "worker started")).toBe(false);
    } finally {
      freeze("SIGCONT");
    }
    // and once the nodes answer it starts and runs jobs on all three masters
    await started(w, 40_000);
    const jobs = [...await fine.sendMany([{}, {}]), ...await fineB.sendMany([{}]), ...await pickyC.sendMany([{}])];
    await redis.set(`${prefix}:test:fixed`, "1");
    expect(await Promise.all(jobs.map((j) => j.result({ timeout: 30_000 })))).toEqual(["fine", "fine", "fine", "fixed"]);
  }, 90_000);
});
