/**
 * Results, status, abort, groups, pipelines and rate limits across processes: this test process
 * sends and waits, real worker processes (`dray worker test/fixtures/results_app.ts`) run the jobs.
 * Groups and pipelines span three queues (three masters of a cluster). Run on one Redis by
 * results.test.ts and on the local cluster by cluster_e2e.test.ts.
 */
import { afterEach, beforeEach, describe, expect } from "bun:test";
import type { RedisClient } from "../src/broker/connection.ts";
import { RedisBroker } from "../src/broker/redis.ts";
import { closeBroker } from "../src/client.ts";
import { configure } from "../src/config.ts";
import { GroupMemberFailed, JobAborted, PipelineStepFailed, TimeoutError, UnknownJobError } from "../src/errors.ts";
import { group } from "../src/group.ts";
import { getJob } from "../src/job.ts";
import { pipeline } from "../src/pipeline.ts";
import {
  big, failing, fetchPage, flaky, limited, parsePage, showMeta, sleeper, spinner, square, storePage, windowed,
} from "./fixtures/results_app.ts";
import { fixture, rejection, sleep, spawnWorker, started, until, type WorkerProcess } from "./helpers.ts";
import { targetTest, type Target } from "./target.ts";

const QUEUES = ["res", "res_b", "res_c"];

export function resultsEndToEnd(target: Target): void {
  const app = fixture("results_app.ts");
  let prefix = "";
  let redis: RedisClient;
  let broker: RedisBroker;
  const workers: WorkerProcess[] = [];
  const obs = (name: string) => `${prefix}:obs:${name}`;

  async function worker(args: string[] = [], env: Record<string, string> = {}): Promise<WorkerProcess> {
    const w = spawnWorker([app], ["--concurrency", "8", "--isolation", "inline", ...args], { DRAY_PREFIX: prefix, REDIS_URL: target.url(), ...env });
    workers.push(w);
    await started(w);
    return w;
  }

  const it = targetTest(target);

  describe(`results across processes: ${target.name}`, () => {
    beforeEach(() => {
      if (!target.enabled) return;
      prefix = target.prefix("res", QUEUES);
      configure({ prefix, redisUrl: target.url(), middleware: [] });
      redis = target.client();
      broker = new RedisBroker({ url: target.url(), prefix });
    });

    afterEach(async () => {
      if (!target.enabled) return;
      await Promise.all(workers.splice(0).map((w) => w.stop("SIGKILL")));
      configure({ middleware: [] });
      await closeBroker();
      await broker.close();
      redis.disconnect();
      await target.clean(prefix);
    });

    it("the result of a job that retried twice, awaited without polling", async () => {
      // given a worker, and a sender waiting on a job that fails twice before it succeeds
      await worker();
      const job = await flaky.send({ v: "hello" });
      // when the sender waits for the result
      const value = await job.result({ timeout: 10_000 });
      // then it gets the third attempt's value, and the record says so
      expect(value).toEqual({ v: "hello", attempt: 3 });
      const info = await job.info();
      expect(info).toMatchObject({ status: "completed", attempts: 3, actor: "res_flaky", queue: "res" });
      expect(info.finishedAt! - info.enqueuedAt).toBeGreaterThanOrEqual(100); // two backoffs of >= 50 ms
      // and a handle made from the bare id, with no queue, finds the same job
      expect(await getJob(job.id).result()).toEqual({ v: "hello", attempt: 3 });
    });

    it("many waiters on one job all resolve; a dead job rejects with its own error", async () => {
      await worker();
      const job = await sleeper.send({ ms: 300 });
      const waiters = await Promise.all(Array.from({ length: 20 }, () => job.result({ timeout: 10_000 })));
      expect(waiters).toEqual(Array.from({ length: 20 }, () => "slept"));
      const dead = await failing.send(undefined);
      const error = await rejection(dead.result({ timeout: 10_000 }));
      expect(error.name).toBe("Error");
      expect(error.message).toBe("boom");
      expect(await dead.info()).toMatchObject({ status: "dead", error: { message: "boom" } });
    });

    it("abort of a queued job: it never runs", async () => {
      // given a job queued while no worker runs
      const job = await sleeper.send({ ms: 10 });
      expect(await job.status()).toBe("queued");
      // when it is aborted, and a worker starts and runs a later job
      expect(await job.abort()).toMatchObject({ aborted: true, status: "queued" });
      await worker();
      const later = await sleeper.send({ ms: 10 });
      await later.result({ timeout: 10_000 });
      // then the aborted job never ran, and says so
      expect(await redis.get(obs(`started:${job.id}`))).toBeNull();
      expect(await job.status()).toBe("aborted");
      await expect(job.result({ timeout: 1_000 })).rejects.toBeInstanceOf(JobAborted);
      expect((await broker.stats("res"))).toMatchObject({ ready: 0, running: 0, delayed: 0, dead: 0 });
    });

    it("abort of a delayed job: it never runs when its time comes", async () => {
      await worker();
      const job = await sleeper.send({ ms: 10 }, { delay: 800 });
      expect(await job.status()).toBe("delayed");
      expect(await job.abort()).toMatchObject({ aborted: true, status: "delayed" });
      await sleep(1_000);
      const later = await sleeper.send({ ms: 10 });
      await later.result({ timeout: 10_000 });
      await until(async () => (await broker.stats("res")).delayed === 0, "delayed set emptied");
      expect(await redis.get(obs(`started:${job.id}`))).toBeNull();
      expect(await job.status()).toBe("aborted");
    });

    it("abort of a running cooperative job: its signal aborts, status aborted, not retried", async () => {
      await worker();
      const job = await sleeper.send({ ms: 30_000 });
      await until(() => redis.get(obs(`started:${job.id}`)), "job started");
      expect(await job.status()).toBe("running");
      // a wait shorter than the job says it is still running
      const timeout = await rejection(job.result({ timeout: 200 }));
      expect(timeout).toBeInstanceOf(TimeoutError);
      expect(timeout.message).toContain("still running");
      expect(await job.abort()).toMatchObject({ aborted: true, status: "running" });
      await expect(job.result({ timeout: 5_000 })).rejects.toBeInstanceOf(JobAborted);
      expect(await job.info()).toMatchObject({ status: "aborted", attempts: 1 });
      expect((await broker.stats("res"))).toMatchObject({ ready: 0, running: 0, delayed: 0, dead: 0 });
    });

    it("abort of a running CPU-bound job on the thread executor: its thread is stopped", async () => {
      await worker(["--isolation", "thread", "--threads", "1", "--concurrency", "2"]);
      const job = await spinner.send({ ms: 20_000 });
      await until(() => redis.get(obs(`started:${job.id}`)), "job started");
      const t0 = Date.now();
      expect(await job.abort()).toMatchObject({ aborted: true, status: "running" });
      await expect(job.result({ timeout: 10_000 })).rejects.toBeInstanceOf(JobAborted);
      expect(Date.now() - t0).toBeLessThan(5_000); // stopped, not waited out
      expect(await redis.get(obs(`finished:${job.id}`))).toBeNull();
      expect(await job.status()).toBe("aborted");
      // and the worker goes on with new jobs
      expect(await square.send({ n: 7 }).then((j) => j.result({ timeout: 10_000 }))).toBe(49);
    });

    it("abort of a finished job is a no-op that says so; an unknown id says unknown job", async () => {
      await worker();
      const job = await square.send({ n: 4 });
      expect(await job.result({ timeout: 10_000 })).toBe(16);
      expect(await job.abort()).toEqual({ aborted: false, status: "completed", message: `job "${job.id}" already completed: nothing to abort` });
      expect(await job.result()).toBe(16);
      const t0 = Date.now();
      await expect(getJob("no-such-job").result({ timeout: 10_000 })).rejects.toBeInstanceOf(UnknownJobError);
      await expect(getJob("no-such-job", { queue: "res" }).result({ timeout: 10_000 })).rejects.toBeInstanceOf(UnknownJobError);
      await expect(getJob("no-such-job", { queue: "res" }).abort()).rejects.toBeInstanceOf(UnknownJobError);
      expect(Date.now() - t0).toBeLessThan(2_000); // said at once, not after the timeout
    });

    it("dedup: a second send with the same id is the first job's handle", async () => {
      const first = await square.send({ n: 2 }, { jobId: "order-42" });
      const second = await square.send({ n: 3 }, { jobId: "order-42" });
      expect(second).toMatchObject({ id: "order-42", duplicate: true });
      await worker();
      expect(await second.result({ timeout: 10_000 })).toBe(4);
      expect(await first.status()).toBe("completed");
    });

    it("a group of 100: results arrive in order", async () => {
      await worker(["--concurrency", "16"]);
      const g = await group(Array.from({ length: 100 }, (_, n) => square.message({ n }))).send();
      expect(g.jobs).toHaveLength(100);
      expect(await g.results({ timeout: 20_000 })).toEqual(Array.from({ length: 100 }, (_, n) => n * n));
    });

    it("a group with a failed member rejects naming it", async () => {
      await worker();
      const g = await group([square.message({ n: 1 }), failing.message(), square.message({ n: 2 })]).send();
      const error = await rejection(g.results({ timeout: 10_000 }));
      expect(error).toBeInstanceOf(GroupMemberFailed);
      expect(error.index).toBe(1);
      expect(error.message).toContain(`actor "res_fail", job "${g.jobs[1]!.id}"`);
      expect(error.cause.message).toBe("boom");
    });

    it("a 3-step pipeline: each step gets the previous result", async () => {
      await worker();
      const url = "https://example.com/a";
      const p = await pipeline([fetchPage.message({ url }), parsePage.message(), storePage.message()]).send();
      expect(await p.result({ timeout: 10_000 })).toBe(`stored ${url}: 4 words`);
      expect(await redis.hget(obs("store"), url)).toBe("4");
      expect(await Promise.all(p.jobs.map((j) => j.status()))).toEqual(["completed", "completed", "completed"]);
    });

    it("a pipeline whose middle step fails stops there", async () => {
      await worker();
      const p = await pipeline([square.message({ n: 3 }), failing.message(), square.message()]).send();
      const error = await rejection(p.result({ timeout: 10_000 }));
      expect(error).toBeInstanceOf(PipelineStepFailed);
      expect(error.step).toBe(1);
      await sleep(200);
      await expect(p.jobs[2]!.status()).rejects.toBeInstanceOf(UnknownJobError);
    });

    it("a concurrency limit of 2 across two workers: 20 jobs never run more than 2 at once", async () => {
      await Promise.all([worker(), worker()]);
      const jobs = await limited.sendMany(Array.from({ length: 20 }, () => undefined));
      await Promise.all(jobs.map((j) => j.result({ timeout: 25_000 })));
      const max = Number(await redis.get(obs("{lim}:max")));
      console.log(`concurrency limiter: observed at most ${max} running at once (limit 2, 2 workers x 8 slots)`);
      expect(max).toBeGreaterThan(0);
      expect(max).toBeLessThanOrEqual(2);
      expect(Number(await redis.get(obs("limited:done")))).toBe(20);
      // deferrals are not attempts
      for (const j of jobs) expect((await j.info()).attempts).toBe(1);
    }, 40_000);

    it("a window limit of 10 per second: 30 jobs take three windows", async () => {
      await Promise.all([worker(), worker()]);
      const jobs = await windowed.sendMany(Array.from({ length: 30 }, () => undefined));
      await Promise.all(jobs.map((j) => j.result({ timeout: 25_000 })));
      const starts = (await redis.lrange(obs("starts"), 0, -1)).map(Number).sort((a, b) => a - b);
      expect(starts).toHaveLength(30);
      // The limiter admits by the Redis clock; handlers stamp a few ms later, so allow that much.
      const slack = 50;
      let worst = 0;
      for (const t of starts) worst = Math.max(worst, starts.filter((s) => s >= t && s < t + 1_000 - slack).length);
      console.log(`window limiter: at most ${worst} starts in any ${1_000 - slack} ms; 30 starts over ${starts.at(-1)! - starts[0]!} ms`);
      expect(worst).toBeLessThanOrEqual(10);
      expect(starts.at(-1)! - starts[0]!).toBeGreaterThanOrEqual(2_000 - slack);
    }, 40_000);

    it("a result over the cap is refused: the job is failed with ResultTooLarge, not lost", async () => {
      await worker([], { DRAY_MAX_RESULT_BYTES: "1000" });
      const ok = await big.send(500);
      const tooBig = await big.send(5_000);
      expect(await ok.result({ timeout: 10_000 })).toHaveLength(500);
      const error = await rejection(tooBig.result({ timeout: 10_000 }));
      expect(error.name).toBe("ResultTooLarge");
      expect(error.message).toContain("the cap is 1000");
      expect(await tooBig.info()).toMatchObject({ status: "failed", attempts: 1 });
      expect((await broker.stats("res")).dead).toBe(0);
    });

    it("middleware: meta set by the sender's beforeEnqueue reaches ctx.meta in the worker", async () => {
      await worker();
      configure({ middleware: [{ name: "tracing", beforeEnqueue: (m) => void (m.meta = { traceId: "trace-7" }) }] });
      const job = await showMeta.send(undefined);
      expect(await job.result({ timeout: 10_000 })).toEqual({ traceId: "trace-7" });
    });
  });
}
