/**
 * Pausing and resuming a queue end to end, through real worker processes (`dray worker
 * test/fixtures/core_app.ts`, queue "core") and `dray queues`: a paused queue is not read within a
 * second, what runs finishes, nothing sent meanwhile is lost, and the pause outlives a restart.
 */
import { afterEach, beforeEach, describe, expect } from "bun:test";
import { Redis } from "ioredis";
import { RedisBroker } from "../src/broker/redis.ts";
import { closeBroker } from "../src/client.ts";
import { configure } from "../src/config.ts";
import type { Delivery } from "../src/message.ts";
import { pauseQueue, resumeQueue } from "../src/operations.ts";
import { normal, slow } from "./fixtures/core_app.ts";
import { cleanPrefix, fixture, REDIS_URL, sleep, spawnDray, spawnWorker, started, testPrefix, until, type WorkerProcess } from "./helpers.ts";
import { cpuDuring, procfsAvailable } from "./procfs.ts";
import { redisTest as it } from "./redis_test.ts";

const app = fixture("core_app.ts");
let prefix = "";
let redis: Redis;
let broker: RedisBroker;
const workers: WorkerProcess[] = [];

function worker(): WorkerProcess {
  const w = spawnWorker([app], ["--concurrency", "8"], { DRAY_PREFIX: prefix, REDIS_URL });
  workers.push(w);
  return w;
}

/** `dray queues <args>` run to its end: exit code and everything it printed. */
async function queues(...args: string[]): Promise<{ code: number | null; output: string }> {
  const p = spawnDray("queues", args, { DRAY_PREFIX: prefix, REDIS_URL });
  const code = await p.exited;
  return { code, output: p.output() };
}

/** The `n` of every `normal` job that ran, sorted. */
const ran = async (): Promise<number[]> =>
  (await redis.lrange(`${prefix}:test:order`, 0, -1)).map(Number).sort((a, b) => a - b);

const range = (from: number, count: number): number[] => Array.from({ length: count }, (_, i) => from + i);

/** When the worker logged `msg` for the core queue (its pino time, ms), once it has. */
const logged = async (w: WorkerProcess, msg: string, timeout = 5_000): Promise<number> =>
  Number(await until(() => w.logs.find((l) => l.msg === msg && l.queue === "core")?.time, `"${msg}" logged`, timeout));

beforeEach(() => {
  prefix = testPrefix("pause");
  configure({ prefix, redisUrl: REDIS_URL });
  redis = new Redis(REDIS_URL);
  broker = new RedisBroker({ url: REDIS_URL, prefix, patient: true });
});

afterEach(async () => {
  await Promise.all(workers.splice(0).map((w) => w.stop("SIGKILL")));
  await closeBroker();
  await broker.close();
  redis.disconnect();
  await cleanPrefix(prefix);
});

describe("pausing a queue", () => {
  it("stops reads within a second; the running job finishes; a resume runs every job that waited", async () => {
    // given a worker running a 1.5 s job
    const w = worker();
    await started(w);
    await slow.send({ n: 1, ms: 1_500 });
    await until(async () => (await redis.llen(`${prefix}:test:starts`)) === 1, "the slow job started");
    // when the queue is paused
    const pausedAt = Date.now();
    expect(await pauseQueue("core", broker)).toEqual({ declared: true });
    // then the worker sees it within a second (plus a round trip)
    expect(await logged(w, "queue paused") - pausedAt).toBeLessThan(1_500);
    // when jobs are sent at once (a blocking read begun before the pause would take them: it was cut short)
    await normal.sendMany(range(0, 20).map((n) => ({ n })));
    // then the running job still finishes, none of the new ones runs for 3 s, and the worker idles
    // meanwhile (no loop spinning on an empty read)
    await until(async () => (await redis.llen(`${prefix}:test:ends`)) === 1, "the slow job finished", 5_000);
    const cpu = procfsAvailable() ? await cpuDuring(w.child.pid!, 3_000) : (await sleep(3_000), 0);
    expect(await ran()).toEqual([]);
    expect(cpu).toBeLessThan(0.3);
    expect(await broker.stats("core")).toMatchObject({ ready: 20, running: 0 });
    // when the queue is resumed
    const resumedAt = Date.now();
    expect(await resumeQueue("core", broker)).toEqual({ wasPaused: true });
    // then the worker reads again within a second, and every job runs, once
    expect(await logged(w, "queue resumed") - resumedAt).toBeLessThan(1_500);
    await until(async () => (await ran()).length === 20, "all 20 ran", 5_000);
    await sleep(200);
    expect(await ran()).toEqual(range(0, 20));
  });

  it("holds for a worker restarted while the queue is paused", async () => {
    // given a paused queue and a worker that saw the pause
    const a = worker();
    await started(a);
    await pauseQueue("core", broker);
    await logged(a, "queue paused");
    // when that worker stops, jobs are sent, and a new worker starts
    expect(await a.stop("SIGTERM")).toBe(0);
    await normal.sendMany(range(0, 10).map((n) => ({ n })));
    const b = worker();
    await started(b);
    // then the new worker knows the queue is paused from its start, and runs nothing
    expect(b.logs.findIndex((l) => l.msg === "queue paused" && l.queue === "core"))
      .toBeLessThan(b.logs.findIndex((l) => l.msg === "worker started"));
    await sleep(2_500);
    expect(await ran()).toEqual([]);
    // when the queue is resumed
    await resumeQueue("core", broker);
    // then every job runs
    await until(async () => (await ran()).length === 10, "all 10 ran", 5_000);
    expect(await ran()).toEqual(range(0, 10));
  });

  it("still takes a delayed send and a retry; both run after resume", async () => {
    // given a worker whose queue is paused
    const w = worker();
    await started(w);
    await pauseQueue("core", broker);
    await logged(w, "queue paused");
    // when a job is sent with a 200 ms delay, and a job another worker held when the pause came
    // fails and is retried in 200 ms (this broker is that worker: the pause is for workers' reads)
    await normal.send({ n: 1 }, { delay: 200 });
    await normal.send({ n: 2 });
    const [held] = (await broker.read(["core"], 1, 0)) as Delivery[];
    expect(held!.message.payload).toEqual({ n: 2 });
    expect(await broker.retry(held!, 200)).toBe(true);
    // then both wait in the delayed set past their time, not run and not lost
    await sleep(1_500);
    expect(await ran()).toEqual([]);
    expect(await broker.stats("core")).toMatchObject({ ready: 0, running: 0, delayed: 2 });
    // when the queue is resumed
    await resumeQueue("core", broker);
    // then both run
    await until(async () => (await ran()).length === 2, "both ran", 5_000);
    expect(await ran()).toEqual([1, 2]);
    await until(async () => (await broker.stats("core")).delayed === 0, "delayed set empty");
  });
});

describe("dray queues", () => {
  it("pauses and resumes by name, and shows which queues are paused", async () => {
    // given a queue a worker declared
    await broker.publishActors([{ name: "a", queue: "mail", priority: 0 }]);
    // when a queue no worker has declared is paused
    const pause = await queues("pause", "later");
    // then it is paused, and the output says the pause waits for workers to come
    expect(pause.code).toBe(0);
    expect(pause.output).toContain(`paused "later"; no worker has declared it yet: the pause holds for those that will`);
    // and the overview lists it as paused beside the declared queue, which is not
    const overview = await queues();
    expect(overview.code).toBe(0);
    const rows = overview.output.trim().split("\n").map((l) => l.split(/\s+/));
    expect(rows[0]).toEqual(["queue", "ready", "running", "delayed", "dead", "paused"]);
    expect(rows.slice(1)).toEqual([["later", "0", "0", "0", "0", "yes"], ["mail", "0", "0", "0", "0", "no"]]);
    // when it is resumed twice
    const first = await queues("resume", "later");
    const second = await queues("resume", "later");
    // then the first resumes it, and the second says it was not paused, without failing
    expect(first.output).toContain(`resumed "later"`);
    expect(second.code).toBe(0);
    expect(second.output).toContain(`"later" was not paused`);
    expect(await broker.control.paused()).toEqual([]);
  });

  it("refuses a bad queue name as a usage error", async () => {
    // when a queue name with a space is paused
    const r = await queues("pause", "no good");
    // then it exits 2 with the name's rule, and pauses nothing
    expect(r.code).toBe(2);
    expect(r.output).toContain(`queue name "no good" is invalid`);
    expect(await broker.control.paused()).toEqual([]);
  });
});
