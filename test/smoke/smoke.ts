/**
 * The smoke suite, one run per runtime, each in its own runner (not bun:test):
 *   bun test/smoke/smoke.ts
 *   deno run --allow-env --allow-net --allow-read --allow-sys=hostname,osRelease,cpus --allow-run test/smoke/smoke.ts
 *   node --import tsx test/smoke/smoke.ts
 * It starts a worker on the runtime it runs on and checks the delivery path and the hard kill of a
 * busy loop end to end, that hung jobs sent with ordinary ones are all dead-lettered while the
 * ordinary ones complete once, uncharged (./hung.ts), that a child process stuck in a loop dies with
 * a worker killed by SIGKILL, and that `dray worker --processes 2` starts and stops (./processes.ts),
 * then stops each kind of hang with this runtime's executors directly. Prints
 * "ok - ..." / "not ok - ..." per check ("ok - ... # SKIP why" for one that cannot run here: no Redis
 * outside CI, no /proc) and ends with exactly one line "N passed, N failed, N skipped".
 * `--full` also runs the process executor where threads are the default, and adds the slow
 * measurements: RSS over 50 kill cycles, 200 jobs of 50 ms.
 */
import dc from "node:diagnostics_channel";
import process from "node:process";
import { pathToFileURL } from "node:url";
import { pino } from "pino";
import { closeBroker } from "../../src/client.ts";
import { configure } from "../../src/config.ts";
import { RedisBroker } from "../../src/broker/redis.ts";
import { newRedis } from "../../src/broker/connection.ts";
import { createExecutor, defaultIsolation, type Isolation } from "../../src/executor/mod.ts";
import type { Executor, JobOutcome, JobRequest } from "../../src/executor/types.ts";
import { runtime } from "../../src/runtime/mod.ts";
import { busyLoop, longBusyLoop, sleeper } from "../fixtures/isolation.ts";
import { freePort } from "../../bench/chaos/redis_server.ts";
import {
  cleanPrefix, fixture, maxOverlap, REDIS_URL, redisAvailable, spawnWorker, started, testPrefix, until, type Span, type WorkerProcess,
} from "../helpers.ts";
import { assert, check, fail, finish, skip } from "../checks.ts";
import { dashboardChecks, dashboardSmoke } from "./dashboard.ts";
import { processesChecks, processesSmoke } from "./processes.ts";
import { hungChecks, hungSmoke } from "./hung.ts";
import { commandLine, cpuDuring, isRunning, processTree, procfsAvailable } from "../procfs.ts";

const rt = runtime();
const full = process.argv.includes("--full");
const limit = 200; // the fixtures' timeLimit
const slack = 250;
// Workers start with this very binary unless told otherwise.
const binVar = `${rt.toUpperCase()}_BIN`;
process.env[binVar] ??= process.execPath;

/** Why checks that need Redis cannot run ("" when they can). Throws in CI, as redisAvailable does. */
async function withoutRedis(): Promise<string> {
  return (await redisAvailable()) ? "" : `Redis does not answer at ${REDIS_URL}`;
}

const noProcfs = "no /proc on this system";

/** Through a real worker process of this runtime and Redis. */
async function endToEnd(): Promise<void> {
  const starts = `a worker starts on ${rt} (isolation ${defaultIsolation()})`;
  const runs = "a job sent to the worker completes";
  const kills = `a busy loop is stopped within timeLimit + ${slack} ms, retried, then dead-lettered as TimeLimitExceeded`;
  const after = "a normal job sent after the kill completes";
  const idle = "the worker's CPU returns to idle after the kill";
  const counted = "the worker's /metrics counts those jobs and the kills, and /healthz is 200";
  const why = await withoutRedis();
  if (why) return skip([starts, runs, kills, after, counted, idle], why);
  const prefix = testPrefix("smoke");
  configure({ prefix, redisUrl: REDIS_URL });
  const broker = new RedisBroker({ url: REDIS_URL, prefix });
  let w: WorkerProcess | undefined;
  const completed = (id: string) => w!.logs.some((l) => l.msg === "job completed" && l.id === id);
  const metricsPort = await freePort();
  try {
    const up = await check(starts, async () => {
      w = spawnWorker([fixture("isolation.ts")], ["--concurrency", "8", "--threads", "2", "--metrics-port", String(metricsPort)],
        { DRAY_PREFIX: prefix, REDIS_URL }, rt);
      await started(w, 30_000);
    }, 40_000);
    if (!up) return;
    await check(runs, async () => {
      const handle = await sleeper.send({ ms: 1, value: "hello" });
      await until(() => completed(handle.id), "job completed", 10_000);
    });
    await check(kills, async () => {
      const handle = await busyLoop.send({});
      await until(async () => (await broker.stats("iso")).dead === 1, "dead letter", 15_000);
      const [letter] = await broker.deadLetters("iso");
      assert(letter?.error.name === "TimeLimitExceeded", `dead letter error is ${letter?.error.name}`);
      assert(letter.retries === 1, `retried ${letter.retries} times, expected 1`);
      const stopLines = () => w!.logs.filter((l) => l.id === handle.id && ["job failed; retrying", "job dead-lettered"].includes(String(l.msg)));
      // The worker's log lines come through a pipe, maybe after Redis has the letter.
      await until(() => stopLines().length >= 2, "2 stops logged", 5_000).catch(() => undefined);
      const stops = stopLines();
      assert(stops.length === 2, `${stops.length} stops logged, expected 2`);
      const durations = stops.map((l) => Number(l.duration));
      assert(durations.every((d) => d < limit + slack), `stopped after ${durations.join(", ")} ms`);
      return `stopped after ${durations.join(" and ")} ms`;
    });
    await check(after, async () => {
      const handle = await sleeper.send({ ms: 1, value: "after" });
      await until(() => completed(handle.id), "job completed", 10_000);
    });
    await check(counted, async () => {
      // Two sleeps completed; the busy loop was killed twice: retried once, then dead. The histograms
      // count each completed run's duration and each start's wait.
      const want = { completed: 2, retried: 1, dead: 1, kills: 2, durations: 2, sleepWaits: 2, loopWaits: 2 };
      const seen = async () => {
        const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
        const value = (name: string, actor: string, outcome?: string) => {
          const labels = `queue="iso",actor="${actor}"${outcome ? `,outcome="${outcome}"` : ""}`;
          return Number(new RegExp(`^${name}\\{${labels}\\} (\\S+)$`, "m").exec(text)?.[1]);
        };
        return {
          completed: value("dray_jobs_total", "iso_sleep", "completed"), retried: value("dray_jobs_total", "iso_busy_loop", "retried"),
          dead: value("dray_jobs_total", "iso_busy_loop", "dead"), kills: value("dray_time_limit_kills_total", "iso_busy_loop"),
          durations: value("dray_job_duration_seconds_count", "iso_sleep"), sleepWaits: value("dray_job_wait_seconds_count", "iso_sleep"),
          loopWaits: value("dray_job_wait_seconds_count", "iso_busy_loop"),
        };
      };
      const got = await until(async () => {
        const s = await seen();
        return JSON.stringify(s) === JSON.stringify(want) ? s : undefined;
      }, "the counts", 5_000).catch(async () => await seen());
      assert(JSON.stringify(got) === JSON.stringify(want), `metrics say ${JSON.stringify(got)}, expected ${JSON.stringify(want)}`);
      const healthz = await fetch(`http://127.0.0.1:${metricsPort}/healthz`);
      const body = await healthz.text();
      assert(healthz.status === 200, `/healthz ${healthz.status} ${body}`);
      return `${JSON.stringify(got)}; /healthz ${body.trim()}`;
    });
    if (!procfsAvailable()) skip([idle], noProcfs);
    else {
      await check(idle, async () => {
        const windows: number[] = [];
        await until(async () => windows.push(await cpuDuring(w!.child.pid!, 1_000)) > 0 && windows.at(-1)! < 0.2, "idle", 8_000)
          .catch(() => undefined);
        assert(windows.at(-1)! < 0.2, `CPU ${windows.join(", ")} s per second`);
        return `${windows.at(-1)!.toFixed(2)} s of CPU over 1 s`;
      }, 15_000);
    }
  } finally {
    if (w) {
      w.child.kill("SIGTERM");
      await Promise.race([w.exited, new Promise((r) => setTimeout(r, 5_000))]);
      if (w.child.exitCode === null) await w.stop("SIGKILL");
    }
    await closeBroker();
    await broker.close();
    await cleanPrefix(prefix);
  }
}

/**
 * `kill -9` of a worker whose child process is stuck in a CPU loop: the child must not spin on as an
 * orphan (the kernel kills it: see src/runtime/parent_death.mjs).
 */
async function orphan(): Promise<void> {
  const name = "a child stuck in a CPU loop (and its spare) die with their worker when the worker is killed with SIGKILL";
  const why = procfsAvailable() ? await withoutRedis() : noProcfs;
  if (why) return skip([name], why);
  const prefix = testPrefix("smoke-orphan");
  configure({ prefix, redisUrl: REDIS_URL });
  let w: WorkerProcess | undefined;
  let children: number[] = [];
  try {
    await check(name, async () => {
      w = spawnWorker([fixture("isolation.ts")], ["--isolation", "process", "--threads", "1", "--concurrency", "1", "--queues", "iso_long"],
        { DRAY_PREFIX: prefix, REDIS_URL }, rt);
      await started(w, 30_000);
      // One child runs jobs, the other is its ready spare (src/executor/processes.ts).
      const jobProcesses = () => processTree(w!.child.pid!).filter((pid) => commandLine(pid).includes("workers/child.ts"));
      children = (await until(() => (jobProcesses().length === 2 ? jobProcesses() : undefined), "a child and its spare", 10_000))!;
      await longBusyLoop.send({});
      await until(async () => (await Promise.all(children.map((c) => cpuDuring(c, 300)))).some((cpu) => cpu > 0.2), "a child spinning", 10_000);
      w.child.kill("SIGKILL");
      const t = performance.now();
      await until(() => !children.some(isRunning), "the children gone", 5_000);
      return `gone ${Math.round(performance.now() - t)} ms after the worker`;
    }, 45_000);
  } finally {
    for (const child of children) if (isRunning(child)) process.kill(child, "SIGKILL");
    if (w && w.child.exitCode === null && w.child.signalCode === null) await w.stop("SIGKILL");
    await closeBroker();
    await cleanPrefix(prefix);
  }
}

let seq = 0;
const job = (actor: string, timeLimit: number, payload: unknown = {}): JobRequest =>
  ({ id: `smoke-${++seq}`, actor, queue: "iso", payload, attempt: 1, timeLimit });

function pool(isolation: Isolation, o: { concurrency: number; threads: number; graceMs?: number; prefetch?: number }): Executor {
  return createExecutor({
    isolation, modules: [pathToFileURL(fixture("isolation.ts")).href], registry: new Map(), ...o,
    logger: pino({ level: "silent" }), redisUrl: REDIS_URL, prefix: "dt-smoke-direct",
  });
}

async function timed(p: Promise<JobOutcome>): Promise<[JobOutcome, number]> {
  const t = performance.now();
  return [await p, performance.now() - t];
}

/** Each kind of hang against this runtime's executors, used directly (no Redis). */
async function direct(isolation: Isolation): Promise<void> {
  const ex = pool(isolation, { concurrency: 8, threads: 2 });
  if (!(await check(`the ${isolation} pool starts on ${rt}`, () => ex.start(), 60_000))) return;
  try {
    const hangs = [["iso_busy_loop", "a busy loop"], ["iso_regex_bomb", "a catastrophic regex"],
      ["iso_atomics_wait", "Atomics.wait"], ["iso_never_resolves", "a never-resolving promise"]];
    for (const [actor, what] of hangs) {
      await check(`${isolation}: ${what} is stopped within timeLimit + ${slack} ms; the job beside it is not lost`, async () => {
        const neighbour = ex.run(job("iso_sleep", 5_000, { ms: 300 }));
        const [outcome, took] = await timed(ex.run(job(actor!, limit)));
        assert(outcome.status === "error" && outcome.error.name === "TimeLimitExceeded", `outcome ${JSON.stringify(outcome)}`);
        // From the job's start; the wall time also counts waiting for a replacement host to start.
        assert(outcome.duration < limit + slack, `stopped ${Math.round(outcome.duration)} ms after its start`);
        const other = await neighbour;
        assert(other.status === "ok" || other.status === "interrupted", `neighbour ${JSON.stringify(other)}`);
        return `stopped ${Math.round(outcome.duration)} ms after its start, ${Math.round(took)} ms after run(); neighbour ${other.status}`;
      });
    }
    const echo = `${isolation}: a handler's ctx.redis works, ioredis loading in its host on first use`;
    const why = await withoutRedis();
    if (why) skip([echo], why);
    else {
      await check(echo, async () => {
        const key = `dt-smoke-direct:echo:${crypto.randomUUID()}`;
        const [outcome, took] = await timed(ex.run(job("iso_redis_echo", 10_000, { key, value: "pong" })));
        assert(outcome.status === "ok" && outcome.value === "pong", `outcome ${JSON.stringify(outcome)}`);
        return `${Math.round(took)} ms, the host's first Redis client included`;
      });
    }
    const idle = `${isolation}: this process's CPU returns to idle after the kills`;
    if (!procfsAvailable()) skip([idle], noProcfs);
    else {
      await check(idle, async () => {
        const windows: number[] = [];
        await until(async () => windows.push(await cpuDuring(process.pid, 1_000)) > 0 && windows.at(-1)! < 0.15, "idle", 8_000)
          .catch(() => undefined);
        assert(windows.at(-1)! < 0.15, `CPU ${windows.join(", ")} s per second`);
        return `${windows.at(-1)!.toFixed(2)} s of CPU over 1 s`;
      }, 15_000);
    }
  } finally {
    await ex.close(0);
  }
  await prefetch(isolation);
  if (full) await measure(isolation);
}

/** Jobs waiting in the hosts (prefetch) never lift what runs at once over the concurrency, and wait uncharged. */
async function prefetch(isolation: Isolation): Promise<void> {
  await check(`${isolation}: with prefetch, concurrency 3 over 2 hosts is never exceeded and waiting is not charged`, async () => {
    const ex = pool(isolation, { concurrency: 3, threads: 2, prefetch: 6 });
    await ex.start();
    try {
      // 12 jobs of 80 ms with a 150 ms limit: most wait longer than their limit before they start.
      const outcomes = await Promise.all(Array.from({ length: 12 }, () => ex.run(job("iso_span", 150, { ms: 80 }))));
      const most = maxOverlap(outcomes.map((o) => {
        assert(o.status === "ok", `outcome ${JSON.stringify(o)}`);
        return o.value as Span;
      }));
      assert(most === 3, `at most ${most} ran at once`);
      return `at most ${most} at once`;
    } finally {
      await ex.close(0);
    }
  }, 60_000);
}

/** The slow measurements (`--full`). */
async function measure(isolation: Isolation): Promise<void> {
  await check(`${isolation}: 200 jobs that await 50 ms finish in under 1.5 s (2 hosts, concurrency 100)`, async () => {
    const wide = pool(isolation, { concurrency: 100, threads: 2 });
    await wide.start();
    try {
      const t = performance.now();
      const all = await Promise.all(Array.from({ length: 200 }, () => wide.run(job("iso_sleep", 5_000, { ms: 50 }))));
      const took = performance.now() - t;
      assert(all.every((o) => o.status === "ok"), "a job did not complete");
      assert(took < 1_500, `took ${Math.round(took)} ms`);
      return `${Math.round(took)} ms`;
    } finally {
      await wide.close(0);
    }
  }, 60_000);
  await check(`${isolation}: RSS after 50 kill cycles is within 20% of RSS after 5`, async () => {
    const cycles = pool(isolation, { concurrency: 2, threads: 2, graceMs: 50 });
    await cycles.start();
    const gc = (globalThis as { gc?: () => void; Bun?: { gc(force: boolean): void } });
    const rss = async () => {
      gc.Bun?.gc(true);
      gc.gc?.();
      await new Promise((r) => setTimeout(r, 200));
      return process.memoryUsage().rss;
    };
    try {
      let after5 = 0;
      for (let i = 1; i <= 50; i++) {
        const outcome = await cycles.run(job("iso_busy_loop", 30));
        assert(outcome.status === "error", `cycle ${i}: ${JSON.stringify(outcome)}`);
        if (i === 5) after5 = await rss();
      }
      const after50 = await rss();
      const note = `${Math.round(after5 / 1e6)} MB after 5, ${Math.round(after50 / 1e6)} MB after 50`;
      assert(after50 < after5 * 1.2, note);
      return note;
    } finally {
      await cycles.close(0);
    }
  }, 120_000);
}

/**
 * ioredis skips its per-command tracing only when `hasSubscribers` is exactly false; Bun lacks the
 * getter, which src/runtime/tracing.ts supplies for ioredis's channels once dray makes a client.
 */
async function tracing(): Promise<void> {
  await check("ioredis sees no tracing subscriber until one subscribes", async () => {
    // Nothing changes on import: only a client dray makes brings the fix.
    const other = dc.tracingChannel("smoke:other");
    const before = other.hasSubscribers;
    newRedis("redis://127.0.0.1:6379", { lazyConnect: true }).disconnect();
    const channel = dc.tracingChannel("ioredis:command");
    assert(channel.hasSubscribers === false, `hasSubscribers is ${String(channel.hasSubscribers)} with nobody listening`);
    // Another library's channel reads as it did before the fix (undefined on Bun, a boolean elsewhere).
    assert(other.hasSubscribers === before, `another library's channel changed: ${String(before)} -> ${String(other.hasSubscribers)}`);
    const probe = dc.tracingChannel("ioredis:smoke");
    // Node's typings want all five handlers; one is what an APM might subscribe.
    const handlers = { asyncEnd: () => undefined } as unknown as Parameters<typeof probe.subscribe>[0];
    probe.subscribe(handlers);
    const seen: boolean = probe.hasSubscribers;
    probe.unsubscribe(handlers);
    const after: boolean = probe.hasSubscribers;
    assert(seen && !after, `with a subscriber: ${String(seen)}; after: ${String(after)}`);
  });
}

const started_ = performance.now();
try {
  await tracing();
  await endToEnd();
  const why = await withoutRedis();
  if (why) skip([...dashboardChecks, ...hungChecks, ...processesChecks], why);
  else {
    await dashboardSmoke(check);
    await hungSmoke(check);
    await processesSmoke(check);
  }
  await orphan();
  // Deno cannot stop a thread stuck on the CPU: its only isolated executor is the process one.
  const modes: Isolation[] = !full ? [defaultIsolation()] : rt === "deno" ? ["process"] : ["thread", "process"];
  for (const isolation of modes) await direct(isolation);
} catch (error) {
  fail("the smoke suite itself failed", String((error as Error)?.stack ?? error));
}
console.log(`# ${rt} ${(process.versions as Record<string, string | undefined>)[rt] ?? process.version} in ${Math.round((performance.now() - started_) / 1000)} s`);
finish();
