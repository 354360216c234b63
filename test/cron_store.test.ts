/**
 * The cron stores against their conformance suite (cron_conformance.ts), and cron on a worker with
 * the MemoryBroker end to end: ticks enqueued, run, locked and recorded without Redis.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { Redis } from "ioredis";
import { pino } from "pino";
import { actor } from "../src/actor.ts";
import { cronKeys, queueKeys } from "../src/broker/keys.ts";
import { MemoryBroker } from "../src/broker/memory.ts";
import { cron, crons } from "../src/cron/cron.ts";
import { RedisCronStore } from "../src/cron/redis_store.ts";
import { cronStoreFor } from "../src/cron/stores.ts";
import { Ticker } from "../src/cron/ticker.ts";
import { decodeMessage, type Message } from "../src/message.ts";
import { startWorker } from "../src/worker.ts";
import { CONFORMANCE_QUEUE, cronStoreConformance } from "./cron_conformance.ts";
import { cleanPrefix, fixture, REDIS_URL, testPrefix } from "./helpers.ts";
import { hasRedis, redisTest } from "./redis_test.ts";

const redisPrefixes: string[] = [];
let redis: Redis | undefined;

cronStoreConformance("redis", async () => {
  const prefix = testPrefix("cronstore");
  redisPrefixes.push(prefix);
  redis ??= new Redis(REDIS_URL);
  const r = redis;
  const stream = queueKeys(prefix, CONFORMANCE_QUEUE).stream(0);
  return {
    store: new RedisCronStore(r, prefix),
    sent: async () => (await r.xrange(stream, "-", "+")).map(([, fields]) => decodeMessage(fields[1]!, CONFORMANCE_QUEUE)),
  };
}, hasRedis);

cronStoreConformance("memory", async () => {
  const broker = new MemoryBroker();
  const sent: Message[] = [];
  return {
    store: cronStoreFor(broker),
    sent: async () => {
      // Reading claims them, so keep what earlier calls saw.
      for (const d of await broker.read([CONFORMANCE_QUEUE], 1_000, 0)) if (!("malformed" in d)) sent.push(d.message);
      return [...sent];
    },
  };
}, true);

afterAll(async () => {
  redis?.disconnect();
  for (const prefix of redisPrefixes) await cleanPrefix(prefix);
});

describe("redis cron store", () => {
  redisTest("trimming the history removes the trimmed runs' records too, not only their order", async () => {
    // given a store and a cron keeping 2 runs
    const prefix = testPrefix("cronstore");
    redisPrefixes.push(prefix);
    redis ??= new Redis(REDIS_URL);
    const store = new RedisCronStore(redis, prefix);
    const run = (tick: number) => ({ cron: "trim", tick, jobId: `cron:trim:${tick}`, attempt: 1, status: "RUNNING" as const, startedAt: tick });
    // when four runs are recorded
    for (let tick = 1; tick <= 4; tick++) {
      await store.run({ queue: "q", cron: "trim", mode: "start", jobId: `cron:trim:${tick}`, lockTtl: 0, runId: `r${tick}`,
        run: run(tick), score: tick, cap: 2 });
    }
    // then two are left in both the order and the records
    const k = cronKeys(prefix, "q", "trim");
    expect(await redis.zcard(k.order)).toBe(2);
    expect(await redis.hlen(k.runs)).toBe(2);
    expect((await store.history({ name: "trim", queue: "q" })).map((r) => r.tick)).toEqual([4, 3]);
  });
});

describe("a ticker's published crons", () => {
  test("given Redis away when the ticker starts, its crons are published once a tick goes through", async () => {
    // given a store whose first publish fails (Redis away at start), then works
    const broker = new MemoryBroker();
    const store = cronStoreFor(broker);
    let refusals = 1;
    const publish = store.publish.bind(store);
    store.publish = (jobs) => (refusals-- > 0 ? Promise.reject(new Error("connect ECONNREFUSED")) : publish(jobs));
    const target = actor("cron_publish_actor", { queue: "cron-publish" }, () => undefined);
    const job = cron("0 0 1 1 *", target, { name: "cron_publish_yearly" });
    crons.delete(job.name);
    const warnings: string[] = [];
    const logger = pino({ level: "info" }, { write: (line: string) => void warnings.push(JSON.parse(line).msg) });
    // when a ticker starts and ticks
    const ticker = new Ticker({ store, jobs: new Map([[job.name, job]]), logger });
    ticker.start();
    const until = Date.now() + 5_000;
    while ((await store.published()).length === 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    await ticker.stop();
    // then the cron is listed after all, and the failure was said once
    expect((await store.published()).map((c) => c.name)).toEqual(["cron_publish_yearly"]);
    expect(warnings.filter((m) => m.startsWith("publishing crons failed"))).toHaveLength(1);
    expect(warnings).toContain("crons published");
  });
});

describe("cron on a worker with the MemoryBroker", () => {
  const ran: number[] = [];
  const ticked = actor("cron_mem_actor", { queue: "cron-mem", maxRetries: 0 }, (_: unknown, ctx) => {
    ran.push(Number(ctx.jobId.split(":").at(-1)));
    return { n: ran.length };
  });

  test("an every-second cron ticks, runs once per tick and records its runs, with no Redis", async () => {
    // given a worker on a MemoryBroker with one every-second cron
    const broker = new MemoryBroker();
    const job = cron("* * * * * *", ticked, { name: "cron_mem_every_second" });
    let worker: Awaited<ReturnType<typeof startWorker>> | undefined;
    try {
      worker = await startWorker({
        modules: [fixture("lazy_app.ts")], queues: ["cron-mem"], broker, isolation: "inline", concurrency: 2,
        handleSignals: false, logger: pino({ level: "silent" }),
      });
      // when it runs for a few ticks
      const until = Date.now() + 10_000;
      while (ran.length < 2 && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    } finally {
      await worker?.stop();
      // Out of the global registry only now: the worker's ticker reads it on every pass.
      crons.delete(job.name);
    }
    // then each tick ran once, and the history holds them as COMPLETED, newest first
    expect(ran.length).toBeGreaterThanOrEqual(2);
    expect(new Set(ran).size).toBe(ran.length);
    const history = await cronStoreFor(broker).history({ name: job.name, queue: "cron-mem" });
    const completed = history.filter((r) => r.status === "COMPLETED").map((r) => r.tick);
    expect(completed.length).toBe(ran.length);
    expect(completed).toEqual([...ran].sort((a, b) => b - a));
  }, 20_000);

  const slow = actor("cron_mem_slow_actor", { queue: "cron-mem-slow", maxRetries: 0 }, async () => {
    await new Promise((r) => setTimeout(r, 1_500));
    return "slept";
  });

  test("a tick skipped by the overlap lock settles as skipped: its record says so, and no job:complete", async () => {
    // given a worker on a MemoryBroker with an every-second cron whose runs take 1.5 s under a 10 s lock
    const broker = new MemoryBroker();
    const job = cron("* * * * * *", slow, { name: "cron_mem_overlap", lockTtl: 10_000 });
    const completes: string[] = [];
    const discards: Array<{ id: string; status: string; error: { name: string } }> = [];
    let worker: Awaited<ReturnType<typeof startWorker>> | undefined;
    const history = () => cronStoreFor(broker).history({ name: job.name, queue: "cron-mem-slow" });
    try {
      worker = await startWorker({
        modules: [fixture("lazy_app.ts")], queues: ["cron-mem-slow"], broker, isolation: "inline", concurrency: 4,
        handleSignals: false, logger: pino({ level: "silent" }),
      });
      worker.supervisor.events.on("job:complete", (e) => completes.push(e.id));
      worker.supervisor.events.on("job:discarded", (e) => discards.push(e));
      // when a run completes with a tick skipped during it
      const until = Date.now() + 10_000;
      const seen = async () => {
        const runs = await history();
        return runs.some((r) => r.status === "COMPLETED") && runs.some((r) => r.status === "SKIPPED");
      };
      while (!(await seen()) && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    } finally {
      await worker?.stop();
      crons.delete(job.name);
    }
    // then the skipped job's record is "skipped" with the reason, it was discarded and never completed
    const runs = await history();
    const skipped = runs.filter((r) => r.status === "SKIPPED").map((r) => r.jobId);
    const ran = runs.filter((r) => r.status === "COMPLETED").map((r) => r.jobId);
    expect(skipped.length).toBeGreaterThanOrEqual(1);
    expect(ran.length).toBeGreaterThanOrEqual(1);
    for (const id of skipped) {
      expect(await broker.jobs.get("cron-mem-slow", id)).toMatchObject({ status: "skipped",
        error: { name: "Locked", message: "the previous run still holds the overlap lock" } });
      expect(completes).not.toContain(id);
      expect(discards.find((d) => d.id === id)).toMatchObject({ status: "skipped", error: { name: "Locked" } });
    }
    // and the run that went ahead completed as usual
    for (const id of ran) {
      expect(await broker.jobs.get("cron-mem-slow", id)).toMatchObject({ status: "completed", result: "slept" });
      expect(completes).toContain(id);
    }
  }, 20_000);
});
