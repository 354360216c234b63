/**
 * `dray worker --processes N` (src/cli/fleet.ts) through real processes, as users start it: the
 * parent starts N workers sharing the queues, restarts one that dies (after growing delays when it
 * dies in a loop), ticks the crons once, and passes stop signals on. The parent's log lines say
 * `"process": "parent"` and name a child by `child` (its index) and `childPid`; a child's say
 * `"process": i`.
 */
import { afterEach, beforeEach, describe, expect } from "bun:test";
import { Redis } from "ioredis";
import { RedisBroker } from "../src/broker/redis.ts";
import { closeBroker } from "../src/client.ts";
import { configure } from "../src/config.ts";
import { getWorkers } from "../src/operations.ts";
import { freePort } from "../bench/chaos/redis_server.ts";
import { record } from "./fixtures/processes_app.ts";
import { cleanPrefix, fixture, REDIS_URL, sleep, spawnDray, spawnWorker, testPrefix, until, type WorkerProcess } from "./helpers.ts";
import { redisTest as it } from "./redis_test.ts";

const app = fixture("processes_app.ts");
let prefix = "";
let redis: Redis;
let broker: RedisBroker;
const parents: WorkerProcess[] = [];

/** `dray worker <app> --processes 2 <args>`, beating every 200 ms so that getWorkers() sees it soon. */
function fleet(args: string[], env: Record<string, string> = {}, modules = [app]): WorkerProcess {
  const w = spawnWorker(modules, ["--processes", "2", ...args], { DRAY_PREFIX: prefix, REDIS_URL, DRAY_HEARTBEAT_MS: "200", ...env });
  parents.push(w);
  return w;
}

/** The parent's "worker process started" lines for child `index`: pid and time, oldest first. */
const starts = (w: WorkerProcess, index: number): Array<{ pid: number; time: number }> => w.logs
  .filter((l) => l.process === "parent" && l.msg === "worker process started" && l.child === index)
  .map((l) => ({ pid: Number(l.childPid), time: Number(l.time) }));

/** The pids of the children that logged "worker started", once `n` of them have. */
async function upChildren(w: WorkerProcess, n = 2, timeout = 30_000): Promise<number[]> {
  const pids = () => [...new Set(w.logs.filter((l) => l.msg === "worker started").map((l) => Number(l.pid)))];
  await until(() => pids().length >= n || w.child.exitCode !== null, `${n} worker processes started`, timeout);
  if (w.child.exitCode !== null) throw new Error(`the parent exited with ${w.child.exitCode}:\n${w.output()}`);
  return pids();
}

/** Every run the fixture recorded: the job's `n` and the index of the worker process that ran it. */
const runs = async (): Promise<Array<{ n: number; process: string }>> =>
  (await redis.lrange(`${prefix}:test:runs`, 0, -1)).map((s) => JSON.parse(s));

/** How many runs have begun (a job only claimed may still go back to its queue on a stop). */
const started = async (): Promise<number> => await redis.llen(`${prefix}:test:starts`);

const range = (from: number, count: number): number[] => Array.from({ length: count }, (_, i) => from + i);
const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};
const sendJobs = (ns: number[], ms: number) => record.sendMany(ns.map((n) => ({ n, ms })));

beforeEach(() => {
  prefix = testPrefix("procs");
  configure({ prefix, redisUrl: REDIS_URL });
  redis = new Redis(REDIS_URL);
  broker = new RedisBroker({ url: REDIS_URL, prefix });
});

afterEach(async () => {
  for (const w of parents.splice(0)) {
    await w.stop("SIGKILL");
    // The kernel ends the children with their parent (setpriv); this is for a system without it.
    for (const l of w.logs) if (l.msg === "worker process started" && alive(Number(l.childPid))) process.kill(Number(l.childPid), "SIGKILL");
  }
  await closeBroker();
  await broker.close();
  redis.disconnect();
  await cleanPrefix(prefix);
});

describe("dray worker --processes 2", () => {
  it("given two processes, when jobs are sent, then both are live workers, share the jobs, each ran once, and every line says whose it is", async () => {
    // given a parent of two worker processes, each serving metrics on its own port
    const port = await freePort();
    const w = fleet(["--concurrency", "2", "--prefetch", "0", "--threads", "1", "--metrics-port", String(port)]);
    const pids = await upChildren(w);
    // then two live workers, with their own pids: the parent's children, not the parent
    const listed = (await until(async () => {
      const ws = await getWorkers(broker);
      return ws.length === 2 ? ws : undefined;
    }, "two workers listed", 5_000))!;
    const listedPids = listed.map((x) => x.pid).sort();
    expect(listedPids).toEqual([...pids].sort());
    expect(new Set(listedPids).size).toBe(2);
    expect([starts(w, 0)[0]!.pid, starts(w, 1)[0]!.pid].sort()).toEqual(listedPids);
    expect(listedPids).not.toContain(w.child.pid);
    // when 40 jobs of 50 ms are sent
    await sendJobs(range(0, 40), 50);
    // then each ran, once, and each process ran some
    await until(async () => (await runs()).length >= 40, "40 runs", 20_000);
    await sleep(200);
    const done = await runs();
    expect(done.map((r) => r.n).sort((a, b) => a - b)).toEqual(range(0, 40));
    expect(new Set(done.map((r) => r.process))).toEqual(new Set(["0", "1"]));
    // and child i serves its metrics on port + i
    for (const p of [port, port + 1]) expect((await fetch(`http://127.0.0.1:${p}/healthz`)).status).toBe(200);
    // and every log line says which process wrote it
    expect(w.logs.length).toBeGreaterThan(5);
    expect(w.logs.filter((l) => ![0, 1, "parent"].includes(l.process as number | string))).toEqual([]);
    const byPid = new Map(w.logs.map((l) => [Number(l.pid), l.process]));
    expect(byPid.get(w.child.pid!)).toBe("parent");
    expect(new Set(pids.map((pid) => byPid.get(pid)))).toEqual(new Set([0, 1]));
  }, 60_000);

  it("given a child killed with SIGKILL, then it is restarted with a new pid, the exit is logged, and jobs keep flowing", async () => {
    // given two processes that give up a silent worker's jobs after 1 s
    const w = fleet(["--concurrency", "2", "--prefetch", "0", "--threads", "1", "--visibility-timeout", "1000"]);
    await upChildren(w);
    const victim = starts(w, 0)[0]!.pid;
    await sendJobs(range(0, 20), 200);
    await until(async () => (await runs()).length >= 2, "jobs running", 10_000);
    // when child 0 is killed with SIGKILL
    process.kill(victim, "SIGKILL");
    // then the parent says so, naming its index, pid and signal, and starts it again after 1 s
    const exit = (await until(() => w.logs.find((l) => l.msg === "worker process exited; restarting it"), "the exit logged", 5_000))!;
    expect(exit).toMatchObject({ process: "parent", child: 0, childPid: victim, signal: "SIGKILL", restartInMs: 1_000 });
    const again = (await until(() => starts(w, 0)[1], "child 0 started again", 10_000))!;
    expect(again.pid).not.toBe(victim);
    expect(again.time - Number(exit.time)).toBeGreaterThanOrEqual(1_000);
    await until(async () => (await getWorkers(broker)).some((x) => x.pid === again.pid), "the new child listed", 30_000);
    // when more jobs are sent
    await sendJobs(range(20, 20), 50);
    // then every job ran; only those the victim held ran twice
    await until(async () => new Set((await runs()).map((r) => r.n)).size === 40, "all 40 jobs ran", 30_000);
    const done = await runs();
    expect([...new Set(done.map((r) => r.n))].sort((a, b) => a - b)).toEqual(range(0, 40));
    expect(done.length).toBeLessThanOrEqual(42);
    expect(alive(victim)).toBe(false);
  }, 90_000);

  it("given running jobs, when the parent gets SIGTERM, then every child drains and exits 0, and so does the parent", async () => {
    // given jobs running in both processes
    const w = fleet(["--concurrency", "2", "--prefetch", "0", "--threads", "1"]);
    const pids = await upChildren(w);
    await sendJobs(range(0, 4), 1_000);
    await until(async () => (await started()) === 4, "4 jobs started", 10_000);
    // when the parent gets SIGTERM
    const code = await w.stop("SIGTERM");
    // then the running jobs finished, each child stopped with nothing unsettled, the parent exits 0
    expect(code).toBe(0);
    expect((await runs()).map((r) => r.n).sort()).toEqual(range(0, 4));
    const stopped = w.logs.filter((l) => l.msg === "worker stopped");
    expect(stopped.map((l) => l.unsettled)).toEqual([0, 0]);
    expect(w.logs.filter((l) => l.msg === "worker process exited").map((l) => l.code)).toEqual([0, 0]);
    expect(w.logs.some((l) => l.msg === "worker process exited; restarting it")).toBe(false);
    expect(await broker.stats("proc")).toMatchObject({ running: 0, ready: 0 });
    expect(pids.filter(alive)).toEqual([]);
  }, 60_000);

  it("given a child that crashes on start every time, then it is restarted after growing delays, and the parent exits 1 at the end", async () => {
    // given child 1 throwing on import, child 0 sound
    const w = fleet(["--threads", "1"], { DRAY_TEST_CRASH_PROCESS: "1" });
    await upChildren(w, 1);
    // when it has crashed four times
    await until(() => starts(w, 1).length >= 4, "child 1 started 4 times", 30_000);
    // then the delays double from 1 s, and the time between its starts grows with them
    const exits = w.logs.filter((l) => l.msg === "worker process exited; restarting it");
    expect(exits.slice(0, 3).map((l) => [l.child, l.code, l.restartInMs])).toEqual([[1, 1, 1_000], [1, 1, 2_000], [1, 1, 4_000]]);
    const times = starts(w, 1).map((s) => s.time);
    const gaps = times.slice(1).map((t, i) => t - times[i]!);
    expect(gaps[0]!).toBeGreaterThanOrEqual(1_000);
    expect(gaps[1]!).toBeGreaterThanOrEqual(2_000);
    expect(gaps[2]!).toBeGreaterThanOrEqual(4_000);
    expect(gaps[1]!).toBeGreaterThan(gaps[0]!);
    expect(gaps[2]!).toBeGreaterThan(gaps[1]!);
    expect(new Set(starts(w, 0).map((s) => s.pid)).size).toBe(1);
    // when the parent is stopped while child 1 waits for its next start (8 s)
    await until(() => w.logs.filter((l) => l.msg === "worker process exited; restarting it").length >= 4, "the 4th crash", 10_000);
    const code = await w.stop("SIGTERM");
    // then it is not started again, and the parent says the stop was not clean
    expect(code).toBe(1);
    expect(starts(w, 1).length).toBe(4);
  }, 60_000);

  it("given a stop in progress, then a copy of the signal within 1 s is ignored, and one later kills the children and exits 1", async () => {
    // given jobs that run 20 s in both processes, with a grace long enough for them
    const w = fleet(["--concurrency", "1", "--prefetch", "0", "--threads", "1", "--shutdown-grace", "30000"]);
    const pids = await upChildren(w);
    await sendJobs(range(0, 2), 20_000);
    await until(async () => (await started()) === 2, "2 jobs started", 10_000);
    // when SIGTERM comes twice, 100 ms apart (a terminal's Ctrl-C and a launcher's copy)
    w.child.kill("SIGTERM");
    await sleep(100);
    w.child.kill("SIGTERM");
    // then the parent and its children wait for the jobs
    await sleep(1_200);
    expect(w.child.exitCode).toBeNull();
    expect(pids.filter(alive).length).toBe(2);
    // when a third comes after the second
    const t = performance.now();
    const code = await w.stop("SIGTERM");
    // then the parent exits 1 at once, and its children are gone
    expect(code).toBe(1);
    expect(performance.now() - t).toBeLessThan(3_000);
    await until(() => pids.filter(alive).length === 0, "the children gone", 3_000);
    expect(w.logs.some((l) => l.process === "parent" && l.msg === "second signal: killing the worker processes")).toBe(true);
  }, 60_000);

  it("given modules that define a cron, then only the parent ticks, and the children run the ticks", async () => {
    const w = fleet(["--threads", "1"], {}, [fixture("cron_app.ts")]);
    await upChildren(w);
    await until(async () => Object.keys(await redis.hgetall(`${prefix}:test:beats`)).length >= 2, "two ticks run", 10_000);
    const ticking = w.logs.filter((l) => l.msg === "cron ticker started");
    expect(ticking.map((l) => l.process)).toEqual(["parent"]);
    expect(Object.values(await redis.hgetall(`${prefix}:test:beats`)).every((v) => v === "1")).toBe(true);
  }, 60_000);
});

describe("dray worker --processes, bad usage", () => {
  const dray = async (args: string[]) => {
    const p = spawnDray("worker", [app, ...args], { DRAY_PREFIX: prefix, REDIS_URL });
    return { code: await p.exited, output: p.output() };
  };

  it("given 0 processes or a metrics port with no room for each, then it refuses to start, naming the flag", async () => {
    const zero = await dray(["--processes", "0"]);
    expect(zero.code).toBe(2);
    expect(zero.output).toContain('--processes must be a positive integer or auto, not "0"');
    const port = await dray(["--processes", "3", "--metrics-port", "65534"]);
    expect(port.code).toBe(2);
    expect(port.output).toContain("--metrics-port 65534 leaves no room for 3 processes");
  });
});
