/**
 * End to end through real worker processes (`dray worker test/fixtures/core_app.ts`), as users run
 * them (kill -9 recovery is in recovery.ts): a job that kills its worker, claim renewal, retries and backoff, delays, dead letters,
 * malformed input, graceful shutdown.
 */
import { redisTest } from "./redis_test.ts";
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { Redis } from "ioredis";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { configure } from "../src/config.ts";
import { closeBroker } from "../src/client.ts";
import { RedisBroker } from "../src/broker/redis.ts";
import { aged, explicit, failing, flagged, normal, poison, slow, typed, urgent } from "./fixtures/core_app.ts";
import { maxLostClaims } from "../src/middleware/retries.ts";
import { cleanPrefix, fixture, REDIS_URL, root, runtimeCommand, sleep, spawnWorker, started, testPrefix, until, type WorkerProcess } from "./helpers.ts";

const app = fixture("core_app.ts");
let prefix = "";
let redis: Redis;
let broker: RedisBroker;
const workers: WorkerProcess[] = [];

const list = async <T>(name: string): Promise<T[]> =>
  (await redis.lrange(`${prefix}:test:${name}`, 0, -1)).map((s) => JSON.parse(s) as T);

function worker(args: string[] = [], env: Record<string, string> = {}): WorkerProcess {
  const w = spawnWorker([app], ["--concurrency", "8", ...args], { DRAY_PREFIX: prefix, REDIS_URL, ...env });
  workers.push(w);
  return w;
}

const it = redisTest;

beforeEach(() => {
  prefix = testPrefix("core");
  configure({ prefix, redisUrl: REDIS_URL });
  redis = new Redis(REDIS_URL);
  broker = new RedisBroker({ url: REDIS_URL, prefix });
});

afterEach(async () => {
  await Promise.all(workers.splice(0).map((w) => w.stop("SIGKILL")));
  await closeBroker();
  await broker.close();
  redis.disconnect();
  await cleanPrefix(prefix);
});

describe("worker", () => {
  it("a message that kills its worker every time is dead-lettered as WorkerCrashed once its lost claims run out", async () => {
    // given a job whose handler kills the worker process, with maxRetries 5 (crashes are counted apart)
    await poison.send({});
    // when it kills one worker after another: the first run, then once per claim the broker takes back
    for (let run = 1; run <= maxLostClaims + 1; run++) {
      const w = worker(["--visibility-timeout", "400"]);
      const code = await Promise.race([w.exited, sleep(15_000).then(() => "still running")]);
      expect(code).not.toBe("still running");
      expect((await list("poison")).length).toBe(run);
    }
    // then the next worker dead-letters it without running it, and keeps going
    const survivor = worker(["--visibility-timeout", "400"]);
    await started(survivor);
    await until(async () => (await broker.stats("core")).dead === 1, "poison dead-lettered", 15_000);
    const [letter] = await broker.deadLetters("core");
    expect(letter!.error).toMatchObject({ name: "WorkerCrashed" });
    expect(letter!.error.message).toContain(`died ${maxLostClaims + 1} times`);
    expect((await list("poison")).length).toBe(maxLostClaims + 1);
    await normal.send({ n: 1 });
    await until(async () => (await list("order")).length === 1, "a normal job after it", 10_000);
    expect(survivor.child.exitCode).toBeNull();
  }, 90_000);

  it("a job running longer than the visibility timeout is not run twice", async () => {
    // given two workers with a 600 ms visibility timeout
    const a = worker(["--visibility-timeout", "600"]);
    const b = worker(["--visibility-timeout", "600"]);
    await Promise.all([started(a), started(b)]);
    // when a job runs for 2.5 s
    await slow.send({ n: 1, ms: 2_500 });
    await until(async () => (await list("ends")).length === 1, "job finished", 10_000);
    await sleep(800);
    // then it started once
    expect((await list("starts")).length).toBe(1);
  });

  it("retries follow exponential backoff within bounds, then dead-letter with the error", async () => {
    const w = worker();
    await started(w);
    await failing.send({});
    await until(async () => (await broker.stats("core")).dead === 1, "dead letter", 15_000);
    const attempts = await list<{ attempt: number; t: number }>("failing");
    expect(attempts.map((a) => a.attempt)).toEqual([1, 2, 3, 4]);
    // retry n waits within [max(min, c/2), c], c = min(maxBackoff, minBackoff * 2^n); 300/800 here
    const bounds = [[300, 300], [300, 600], [400, 800]];
    for (let n = 0; n < 3; n++) {
      const gap = attempts[n + 1]!.t - attempts[n]!.t;
      expect(gap).toBeGreaterThanOrEqual(bounds[n]![0]! - 15);
      expect(gap).toBeLessThanOrEqual(bounds[n]![1]! + 500);
    }
    const [letter] = await broker.deadLetters("core");
    expect(letter).toMatchObject({ retries: 3, error: { name: "Error", message: "attempt 4 failed" } });
    expect(letter!.error.stack).toContain("core_app.ts");
  });

  it("Retry({ delay }) from a handler retries after that delay, not the backoff", async () => {
    const w = worker();
    await started(w);
    await explicit.send({});
    await until(async () => (await list("explicit")).length === 2, "second attempt", 10_000);
    const [first, second] = await list<{ t: number }>("explicit");
    expect(second!.t - first!.t).toBeGreaterThanOrEqual(285);
    expect(second!.t - first!.t).toBeLessThan(5_000);
  });

  it("a delayed message does not run early", async () => {
    const w = worker();
    await started(w);
    const sentAt = Date.now();
    await slow.send({ n: 7, ms: 0 }, { delay: 1_500 });
    await slow.send({ n: 8, ms: 0 }, { at: new Date(Date.now() + 800) });
    await until(async () => (await list("starts")).length === 2, "both ran", 10_000);
    const starts = await list<{ n: number; t: number }>("starts");
    expect(starts.find((s) => s.n === 8)!.t - sentAt).toBeGreaterThanOrEqual(790);
    expect(starts.find((s) => s.n === 7)!.t - sentAt).toBeGreaterThanOrEqual(1_490);
  });

  it("throws errors are dead-lettered at once; requeue from the CLI runs the job again", async () => {
    const w = worker();
    await started(w);
    await flagged.send({});
    await until(async () => (await broker.stats("core")).dead === 1, "dead letter");
    expect((await list("flagged")).length).toBe(1); // not retried
    await redis.set(`${prefix}:test:flag`, "1");
    const [cmd, ...pre] = runtimeCommand();
    const out = spawnSync(cmd!, [...pre, join(root, "src/cli/main.ts"), "dlq", "requeue", "--queue", "core"], {
      env: { ...process.env, DRAY_PREFIX: prefix, REDIS_URL }, encoding: "utf8",
    });
    expect(out.stdout).toContain("core: requeued 1");
    await until(async () => (await list("flagged")).length === 2, "ran again");
    await until(async () => (await broker.stats("core")).dead === 0 && (await broker.stats("core")).running === 0, "settled");
  });

  it("1,000 malformed entries leave the worker alive and the DLQ holding 1,000 reasons", async () => {
    const w = worker();
    await started(w);
    const k = broker.keys("core");
    const pipe = redis.pipeline();
    for (let i = 0; i < 1_000; i++) {
      const kind = i % 4;
      if (kind === 0) pipe.xadd(k.stream(0), "*", "m", `{broken ${i}`);
      else if (kind === 1) pipe.xadd(k.stream(0), "*", "m", JSON.stringify({ id: `x${i}` }));
      else if (kind === 2) pipe.xadd(k.stream(0), "*", "other", "field");
      else pipe.xadd(k.stream(0), "*", "m", JSON.stringify({ id: `u${i}`, actor: "nobody_knows", sentAt: Date.now() }));
    }
    await pipe.exec();
    await until(async () => (await broker.stats("core")).dead === 1_000, "1,000 dead letters", 20_000);
    const letters = await broker.deadLetters("core", { limit: 1_000 });
    expect(letters.length).toBe(1_000);
    expect(letters.every((l) => l.error.message.length > 0)).toBe(true);
    const names = new Set(letters.map((l) => l.error.name));
    expect([...names].sort()).toEqual(["MalformedMessageError", "UnknownActorError"]);
    // the worker still serves real jobs
    await slow.send({ n: 1, ms: 0 });
    await until(async () => (await list("ends")).length === 1, "a real job after the garbage");
    expect(w.child.exitCode).toBeNull();
  });

  it("a payload that fails its schema in the worker is dead-lettered, not retried", async () => {
    const w = worker();
    await started(w);
    // bypass the sender's own check, as a foreign or outdated sender would
    await broker.enqueue([{ message: { id: "bad", actor: "core_typed", queue: "core", payload: { email: "nope", count: 1.5 }, priority: 0, sentAt: Date.now() } }]);
    await typed.send({ email: "a@b.co", count: 2 });
    await until(async () => (await broker.stats("core")).dead === 1 && (await list("typed")).length === 1, "one dead, one ran");
    const [letter] = await broker.deadLetters("core");
    expect(letter!.error.name).toBe("PayloadValidationError");
    expect(letter!.error.message).toContain("email");
    expect(letter!.retries).toBe(0);
  });

  it("messages older than maxAge are dead-lettered, not run", async () => {
    const w = worker();
    await started(w);
    await broker.enqueue([{ message: { id: "old", actor: "core_aged", queue: "core", payload: null, priority: 0, sentAt: Date.now() - 5_000 } }]);
    await aged.send(null);
    await until(async () => (await broker.stats("core")).dead === 1 && (await list("aged")).length === 1, "old dead, new ran");
    expect((await broker.deadLetters("core"))[0]!.error.name).toBe("MaxAgeExceeded");
  });

  it("serves higher priority first within a queue", async () => {
    await normal.sendMany([{ n: 1 }, { n: 2 }, { n: 3 }]);
    await urgent.sendMany([{ n: 100 }, { n: 101 }]);
    const w = worker(["--concurrency", "1"]);
    await started(w);
    await until(async () => (await list("order")).length === 5, "all ran");
    expect(await list("order")).toEqual([100, 101, 1, 2, 3]);
  });

  it("SIGTERM lets the running job finish and exits 0", async () => {
    const w = worker(["--shutdown-grace", "10000"]);
    await started(w);
    await slow.send({ n: 1, ms: 1_500 });
    await until(async () => (await list("starts")).length === 1, "job started");
    const code = await w.stop("SIGTERM");
    expect(code).toBe(0);
    expect((await list("ends")).length).toBe(1);
    expect(await broker.stats("core")).toMatchObject({ ready: 0, running: 0 });
  });

  it("SIGTERM gives back the prefetched jobs at once and lets the running one finish", async () => {
    // given one job running and three read ahead, waiting in the thread
    const w = worker(["--concurrency", "1", "--threads", "1", "--prefetch", "3", "--shutdown-grace", "10000"]);
    await started(w);
    await slow.sendMany([1, 2, 3, 4].map((n) => ({ n, ms: 1_500 })));
    await until(async () => (await list("starts")).length === 1, "job started");
    await until(async () => (await broker.stats("core")).running === 4, "all four read");
    // when the worker is told to stop
    const code = await w.stop("SIGTERM");
    // then it exits 0 after the running job only: the three others are back in the queue, unstarted
    expect(code).toBe(0);
    expect((await list("starts")).length).toBe(1);
    expect((await list("ends")).length).toBe(1);
    expect(await broker.stats("core")).toMatchObject({ ready: 3, running: 0 });
  });

  it("a bad --prefetch is refused with the flag named, before anything is read", async () => {
    const dray = (...args: string[]) => spawnSync(runtimeCommand()[0]!, [...runtimeCommand().slice(1), "src/cli/main.ts", "worker", app, ...args],
      { cwd: root, env: { ...process.env, DRAY_PREFIX: prefix, REDIS_URL }, encoding: "utf8" });
    for (const [args, says] of [
      [["--prefetch", "lots"], '--prefetch must be a whole number >= 0, not "lots"'],
      [["--prefetch=-1"], '--prefetch must be a whole number >= 0, not "-1"'],
      [["--prefetch", "-1"], "dray worker: option '--prefetch' needs a value; one starting with '-' goes as '--prefetch=<value>'"],
    ] as const) {
      const r = dray(...args);
      expect(r.status).toBe(2);
      expect(r.stderr).toContain(says);
      expect(r.stderr).not.toContain("    at ");
    }
  });

  it("a second signal exits at once; another worker recovers the job", async () => {
    const w = worker(["--visibility-timeout", "1000"]);
    await started(w);
    await slow.send({ n: 1, ms: 3_000 });
    await until(async () => (await list("starts")).length === 1, "job started");
    w.child.kill("SIGTERM");
    await sleep(1_100);
    const t0 = Date.now();
    w.child.kill("SIGTERM");
    const code = await w.exited;
    expect(Date.now() - t0).toBeLessThan(1_000);
    expect(code).not.toBe(0);
    const b = worker(["--visibility-timeout", "1000"]);
    await started(b);
    await until(async () => (await list("ends")).length >= 1, "recovered and finished", 15_000);
  });

  it("apps with different prefixes on one Redis never see each other's jobs", async () => {
    const other = testPrefix("other");
    const w = worker();
    const w2 = spawnWorker([app], [], { DRAY_PREFIX: other, REDIS_URL });
    workers.push(w2);
    await Promise.all([started(w), started(w2)]);
    await slow.sendMany([{ n: 1, ms: 0 }, { n: 2, ms: 0 }]);
    await until(async () => (await list("ends")).length === 2, "ran");
    await sleep(300);
    expect(await redis.lrange(`${other}:test:ends`, 0, -1)).toEqual([]);
    // Stopped first: a running worker would make its group and stream again after the cleanup.
    await w2.stop("SIGKILL");
    await cleanPrefix(other);
  });
});
