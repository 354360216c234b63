/**
 * Live workers: each worker's heartbeat (src/heartbeat.ts) and `dray workers`. In memory for the
 * counts and for a Redis that never answers; through real worker processes for the roll call as an
 * operator sees it, including a worker that stops cleanly and one killed with SIGKILL.
 */
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { Redis } from "ioredis";
import { pino } from "pino";
import { actor } from "../src/actor.ts";
import { MemoryBroker } from "../src/broker/memory.ts";
import { RedisBroker } from "../src/broker/redis.ts";
import type { Control, WorkerInfo } from "../src/broker/types.ts";
import { closeBroker, setBroker } from "../src/client.ts";
import { configure } from "../src/config.ts";
import { ConfigError } from "../src/errors.ts";
import { Events, type WorkerEventMap } from "../src/events.ts";
import { startHeartbeat } from "../src/heartbeat.ts";
import { getWorkers } from "../src/operations.ts";
import { startWorker } from "../src/worker.ts";
import { flagged, normal } from "./fixtures/core_app.ts";
import { cleanPrefix, fixture, REDIS_URL, rejection, sleep, spawnDray, spawnWorker, started, testPrefix, until,
  type WorkerProcess } from "./helpers.ts";
import { redisTest } from "./redis_test.ts";

const silent = pino({ level: "silent" });

describe("heartbeat, in memory", () => {
  const ok = actor("workers_mem_ok", { queue: "workers-mem", maxRetries: 0 }, () => "done");
  const bad = actor("workers_mem_bad", { queue: "workers-mem", maxRetries: 0 }, () => {
    throw new Error("no");
  });

  test("given a worker beating every 50 ms, when jobs complete and fail, then it is listed with its counts until it stops", async () => {
    // given a worker on a MemoryBroker
    const broker = new MemoryBroker();
    setBroker(broker);
    const worker = await startWorker({
      modules: [fixture("lazy_app.ts")], queues: ["workers-mem"], broker, isolation: "inline", concurrency: 3,
      handleSignals: false, cron: false, heartbeatMs: 50, logger: silent,
    });
    try {
      // when two jobs complete and one dies
      await ok.sendMany([{}, {}]);
      await bad.send({});
      // then its entry counts them: three processed, one failed
      await until(async () => (await getWorkers(broker))[0]?.processed === 3, "three jobs counted", 5_000);
      const [me] = await getWorkers(broker);
      expect(me).toMatchObject({ pid: process.pid, queues: ["workers-mem"], isolation: "inline", concurrency: 3, threads: 0,
        running: 0, processed: 3, failed: 1 });
      expect(me!.expiresAt - me!.beatAt).toBe(150);
    } finally {
      // when it stops
      await worker.stop();
      setBroker(undefined);
    }
    // then it is gone at once
    expect(await getWorkers(broker)).toEqual([]);
  });

  test("given a heartbeat of 0 ms, when the worker starts, then it is refused with a ConfigError", async () => {
    const error = await rejection(startWorker({ modules: [fixture("lazy_app.ts")], broker: new MemoryBroker(),
      isolation: "inline", handleSignals: false, heartbeatMs: 0, logger: silent }));
    expect(error).toBeInstanceOf(ConfigError);
    expect(error.message).toContain("heartbeatMs must be a positive whole number of ms");
  });

  test("given Redis that never answers, then beats are logged and tried again, and stop still ends in its bound", async () => {
    // given a control whose beats fail and whose removal never answers
    let beats = 0;
    const never = new Promise<void>(() => {});
    const control = {
      heartbeat: async () => {
        beats++;
        throw new Error("connection refused");
      },
      removeWorker: () => never,
    } as unknown as Control;
    const debug: string[] = [];
    const logger = pino({ level: "debug" }, { write: (line: string) => void debug.push(JSON.parse(line).msg) });
    const supervisor = { queues: ["q"], running: 0, events: new Events<WorkerEventMap>() };
    // when it beats every 20 ms for a while
    const heartbeat = startHeartbeat({ control, supervisor, logger, id: "w", everyMs: 20, isolation: "inline",
      concurrency: 1, threads: undefined });
    await until(() => beats >= 3, "three beats tried", 2_000);
    // then each failure is a debug line, and the next tick tries again
    expect(debug.filter((m) => m.startsWith("heartbeat failed")).length).toBeGreaterThanOrEqual(2);
    // when it stops with a 200 ms bound
    const t0 = Date.now();
    await heartbeat.stop(200);
    // then it ended within the bound, and beats no more
    expect(Date.now() - t0).toBeLessThan(1_000);
    const after = beats;
    await sleep(100);
    expect(beats).toBe(after);
  });
});

describe("dray workers", () => {
  const app = fixture("core_app.ts");
  let prefix = "";
  let redis: Redis;
  let broker: RedisBroker;
  const processes: WorkerProcess[] = [];

  function worker(args: string[]): WorkerProcess {
    const w = spawnWorker([app], args, { DRAY_PREFIX: prefix, REDIS_URL, DRAY_HEARTBEAT_MS: "300" });
    processes.push(w);
    return w;
  }

  /** Runs `dray workers <args>` to its end; its stdout. */
  async function dray(args: string[] = []): Promise<string> {
    const p = spawnDray("workers", args, { DRAY_PREFIX: prefix, REDIS_URL });
    expect(await p.exited).toBe(0);
    return p.output();
  }
  const listed = async (): Promise<WorkerInfo[]> => JSON.parse(await dray(["--json"]));

  beforeEach(() => {
    prefix = testPrefix("workers");
    configure({ prefix, redisUrl: REDIS_URL });
    redis = new Redis(REDIS_URL);
    broker = new RedisBroker({ url: REDIS_URL, prefix });
  });

  afterEach(async () => {
    await Promise.all(processes.splice(0).map((w) => w.stop("SIGKILL")));
    await closeBroker();
    await broker.close();
    redis.disconnect();
    await cleanPrefix(prefix);
  });

  redisTest("given two workers, then both are listed; after jobs, counted; after SIGTERM, one is removed at once", async () => {
    // given no worker yet, then it says so
    expect(await dray()).toContain(`no live workers (prefix "${prefix}")`);
    // given two workers beating every 300 ms
    const a = worker(["--concurrency", "4", "--threads", "2"]);
    const b = worker(["--concurrency", "2", "--threads", "1", "--queues", "core"]);
    await Promise.all([started(a), started(b)]);
    // when an operator lists them
    await until(async () => (await getWorkers(broker)).length === 2, "both beat");
    const both = await listed();
    // then both are there with their pid, queues and pool
    const byPid = new Map(both.map((w) => [w.pid, w]));
    expect(byPid.get(a.child.pid!)).toMatchObject({ queues: ["core", "core_b"], concurrency: 4, threads: 2,
      runtime: process.env.DRAY_TEST_RUNTIME ?? "bun" });
    expect(byPid.get(b.child.pid!)).toMatchObject({ queues: ["core"], concurrency: 2, threads: 1 });
    // and the table names each of them
    const table = await dray();
    expect(table).toStartWith("id  ");
    for (const w of both) expect(table).toContain(w.id);

    // when five jobs complete and one fails for good
    await normal.sendMany([1, 2, 3, 4, 5].map((n) => ({ n })));
    await flagged.send({});
    // then the workers' processed counts add up to six, and one failed
    const sum = (list: WorkerInfo[], field: "processed" | "failed") => list.reduce((n, w) => n + w[field], 0);
    await until(async () => sum(await getWorkers(broker), "processed") === 6, "six jobs counted");
    const counted = await listed();
    expect(sum(counted, "processed")).toBe(6);
    expect(sum(counted, "failed")).toBe(1);

    // when one is stopped with SIGTERM
    const idA = byPid.get(a.child.pid!)!.id;
    expect(await a.stop("SIGTERM")).toBe(0);
    // then its entry is gone the moment it exits, not left to lapse
    expect(await redis.hexists(`${prefix}:workers`, idA)).toBe(0);
    expect((await listed()).map((w) => w.pid)).toEqual([b.child.pid!]);
  });

  redisTest("given a worker killed with SIGKILL, then it is listed until its heartbeat lapses, and then gone", async () => {
    // given a worker beating every 300 ms
    const w = worker(["--concurrency", "2", "--threads", "1"]);
    await started(w);
    await until(async () => (await getWorkers(broker)).length === 1, "it beats");
    const [entry] = await getWorkers(broker);
    // when it is killed without a chance to say goodbye
    w.child.kill("SIGKILL");
    await w.exited;
    const killedAt = Date.now();
    // then it is still listed: its last beat holds for three beats
    const raw = JSON.parse((await redis.hget(`${prefix}:workers`, entry!.id))!) as WorkerInfo;
    expect(raw.expiresAt - raw.beatAt).toBe(900);
    expect(raw.expiresAt).toBeGreaterThan(killedAt);
    expect((await getWorkers(broker)).map((i) => i.id)).toEqual([entry!.id]);
    // and once it lapsed, `dray workers` no longer shows it
    await sleep(raw.expiresAt - Date.now() + 50);
    expect(await listed()).toEqual([]);
    expect(await redis.hexists(`${prefix}:workers`, entry!.id)).toBe(0);
  });

  test("given DRAY_HEARTBEAT_MS that is not a positive integer, then `dray worker` exits 2 and says why", async () => {
    for (const bad of ["0", "-5", "1.5", "soon"]) {
      const w = spawnWorker([app], [], { DRAY_PREFIX: testPrefix("workers"), REDIS_URL, DRAY_HEARTBEAT_MS: bad });
      expect(await w.exited).toBe(2);
      expect(w.output()).toContain(`dray worker: DRAY_HEARTBEAT_MS must be a positive whole number of ms`);
      expect(w.output()).toContain(`not "${bad}"`);
    }
  });
});
