/**
 * The history recorder (src/history/recorder.ts): in memory against the supervisor's events, for
 * what it counts and how it rides out a Redis that is away; then in real workers on Redis with a
 * thread pool, for the counts of real outcomes, a time-limit kill, the flush on stop, and a second
 * worker adding to what the first left.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { pino } from "pino";
import { freePort } from "../bench/chaos/redis_server.ts";
import { MemoryHistory } from "../src/broker/history.ts";
import { RedisBroker } from "../src/broker/redis.ts";
import type { HistoryRow, HistoryStore } from "../src/broker/types.ts";
import { closeBroker } from "../src/client.ts";
import { configure } from "../src/config.ts";
import { ConfigError } from "../src/errors.ts";
import { Events, type WorkerEventMap } from "../src/events.ts";
import type { JobRequest } from "../src/executor/types.ts";
import { actorStats } from "../src/history/read.ts";
import { HistoryRecorder, historyEvery } from "../src/history/recorder.ts";
import { startWorker, type RunningWorker } from "../src/worker.ts";
import { doomed, flaky, ok, spin } from "./fixtures/history_app.ts";
import { cleanPrefix, fixture, REDIS_URL, sleep, testPrefix, until } from "./helpers.ts";
import { redisTest } from "./redis_test.ts";

const silent = pino({ level: "silent" });
const error = { name: "Error", message: "no" };
const ids = (actor: string) => ({ id: crypto.randomUUID(), actor, queue: "q" });

/** A store that remembers each add's rows and can be made to fail or hang. */
class ProbeStore implements HistoryStore {
  readonly memory = new MemoryHistory();
  readonly adds: HistoryRow[][] = [];
  mode: "ok" | "fail" | "hang" = "ok";

  add(rows: HistoryRow[]): Promise<void> {
    if (this.mode === "hang") return new Promise(() => {});
    if (this.mode === "fail") return Promise.reject(new Error("connection refused"));
    this.adds.push(rows);
    return this.memory.add(rows);
  }

  read(...args: Parameters<HistoryStore["read"]>): Promise<HistoryRow[]> {
    return this.memory.read(...args);
  }
}

describe("history recorder, in memory", () => {
  test("given one of each outcome and a kill, when flushed, then one add holds minute and hour rows, counted exactly", async () => {
    // given a recorder watching a supervisor's events
    const store = new ProbeStore();
    const events = new Events<WorkerEventMap>();
    const recorder = new HistoryRecorder({ store, logger: silent, everyMs: 60_000 });
    recorder.watch(events);
    // when jobs start (after 40 ms in the queue), complete (in 25 ms), fail in every way, and one is killed
    for (let i = 0; i < 4; i++) events.emit("job:start", { ...ids("a"), attempt: 1, enqueuedAt: Date.now() - 40 });
    events.emit("job:complete", { ...ids("a"), attempt: 1, duration: 25, value: null });
    events.emit("job:complete", { ...ids("a"), attempt: 1, duration: 25, value: null });
    events.emit("job:retry", { ...ids("a"), attempt: 1, delay: 10, error });
    events.emit("job:dead", { ...ids("a"), attempt: 2, error });
    for (const status of ["failed", "aborted", "skipped"] as const) events.emit("job:discarded", { ...ids("b"), attempt: 1, status, error });
    events.emit("job:returned", { ...ids("b"), reason: "deferred: rate limit" });
    events.emit("job:returned", { ...ids("b"), reason: "shutdown" });
    recorder.poolHooks.timeLimitKill!({ ...ids("a"), payload: null, attempt: 1, timeLimit: 10 } as JobRequest);
    await recorder.flush();
    // then one add, with a minute row and an hour row per actor
    expect(store.adds.length).toBe(1);
    expect(store.adds[0]!.map((r) => `${r.resolution} ${r.actor}`).sort()).toEqual(["hour a", "hour b", "minute a", "minute b"]);
    // and the stats read back say what happened
    const [a, b] = await actorStats(store, "hour");
    expect(a).toMatchObject({ actor: "a", runs: 4, completed: 2, failures: 2, retried: 1, dead: 1, kills: 1, aborted: 0 });
    expect(a!.duration!.p50).toBeGreaterThan(25 / 1.2);
    expect(a!.duration!.p50).toBeLessThan(25 * 1.2);
    expect(a!.wait!.p50).toBeGreaterThan(40 / 1.2);
    expect(b).toMatchObject({ actor: "b", runs: 0, failures: 1, aborted: 1, skipped: 1, deferred: 1, duration: null, wait: null });
    const [day] = await actorStats(store, "day");
    expect(day).toMatchObject({ actor: "a", runs: 4, completed: 2, kills: 1 });
    // and a flush with nothing new adds nothing
    await recorder.flush();
    expect(store.adds.length).toBe(1);
  });

  test("given Redis away, the counts are kept and land with the next flush; past an hour the oldest go, with one warning", async () => {
    // given a recorder on a clock the test moves, and a store that fails
    let now = Date.UTC(2030, 0, 1, 10, 0, 30);
    const store = new ProbeStore();
    const warnings: string[] = [];
    const logger = pino({ level: "warn" }, { write: (line: string) => void warnings.push(JSON.parse(line).msg) });
    const events = new Events<WorkerEventMap>();
    const recorder = new HistoryRecorder({ store, logger, everyMs: 60_000, now: () => now });
    recorder.watch(events);
    const complete = () => events.emit("job:complete", { ...ids("a"), attempt: 1, duration: 5, value: null });
    store.mode = "fail";
    // when jobs complete in one minute, the flush fails, and more complete in the same minute and the next
    complete();
    await recorder.flush();
    complete();
    now += 60_000;
    complete();
    // then the flush after Redis is back adds all three: the first two in one minute row, and one hour row
    store.mode = "ok";
    await recorder.flush();
    expect(store.adds.length).toBe(1);
    const minutes = store.adds[0]!.filter((r) => r.resolution === "minute").map((r) => r.counts.completed);
    const hours = store.adds[0]!.filter((r) => r.resolution === "hour").map((r) => r.counts.completed);
    expect(minutes.sort()).toEqual([1, 2]);
    expect(hours).toEqual([3]);
    // when Redis is away for over an hour while jobs keep completing
    store.mode = "fail";
    for (let i = 0; i < 70; i++) {
      complete();
      await recorder.flush();
      now += 60_000;
    }
    // then the minutes older than an hour were dropped, with one warning
    expect(warnings.filter((w) => w.includes("dropping its oldest minutes"))).toHaveLength(1);
    // and once Redis is back, the rest lands oldest first, at most five minutes per add
    store.mode = "ok";
    await recorder.flush();
    expect(store.adds[1]!.filter((r) => r.resolution === "minute").map((r) => r.at))
      .toEqual([0, 1, 2, 3, 4].map((i) => store.adds[1]![0]!.at + i * 60_000));
    await recorder.stop();
    const later = store.adds.slice(1);
    expect(later.every((rows) => rows.filter((r) => r.resolution === "minute").length <= 5)).toBe(true);
    const kept = later.flat().filter((r) => r.resolution === "minute");
    expect(kept.length).toBeLessThanOrEqual(60);
    expect(kept.length).toBeGreaterThanOrEqual(59);
    expect(Math.min(...kept.map((r) => r.at))).toBeGreaterThan(now - 3_600_000 - 60_000);
    expect(kept.reduce((n, r) => n + r.counts.completed!, 0)).toBe(kept.length);
  });

  test("stop adds what is left; with a store that never answers it ends within its bound and stops counting", async () => {
    // given counts not yet flushed
    const store = new ProbeStore();
    const events = new Events<WorkerEventMap>();
    const recorder = new HistoryRecorder({ store, logger: silent, everyMs: 60_000 });
    recorder.watch(events);
    recorder.start();
    events.emit("job:complete", { ...ids("a"), attempt: 1, duration: 5, value: null });
    // when it stops, then they are added
    await recorder.stop();
    expect(store.adds.length).toBe(1);
    // and given another whose store hangs, when it stops with a 200 ms bound
    const hanging = new ProbeStore();
    hanging.mode = "hang";
    const second = new HistoryRecorder({ store: hanging, logger: silent, everyMs: 60_000 });
    second.watch(events);
    events.emit("job:complete", { ...ids("a"), attempt: 1, duration: 5, value: null });
    const t0 = Date.now();
    await second.stop(200);
    // then it ended in its bound, and counts no more
    expect(Date.now() - t0).toBeLessThan(1_000);
    expect(events.has("job:complete")).toBe(false);
  });

  test("the flush interval: the option, else DRAY_HISTORY_MS, else 5 s; 0 turns it off; anything else is a ConfigError", () => {
    const saved = process.env.DRAY_HISTORY_MS;
    try {
      delete process.env.DRAY_HISTORY_MS;
      expect(historyEvery(undefined)).toBe(5_000);
      expect(historyEvery(0)).toBe(0);
      expect(historyEvery(250)).toBe(250);
      process.env.DRAY_HISTORY_MS = "0";
      expect(historyEvery(undefined)).toBe(0);
      process.env.DRAY_HISTORY_MS = "1500";
      expect(historyEvery(undefined)).toBe(1_500);
      expect(historyEvery(100)).toBe(100);
      for (const bad of [-1, 1.5, Number.NaN]) expect(() => historyEvery(bad)).toThrow(ConfigError);
      process.env.DRAY_HISTORY_MS = "soon";
      expect(() => historyEvery(undefined)).toThrow(ConfigError);
    } finally {
      if (saved === undefined) delete process.env.DRAY_HISTORY_MS;
      else process.env.DRAY_HISTORY_MS = saved;
    }
  });
});

describe("history recorder, in a worker on Redis", () => {
  let prefix = "";
  const running: RunningWorker[] = [];

  afterEach(async () => {
    await Promise.all(running.splice(0).map((w) => w.stop()));
    await closeBroker();
    if (prefix) await cleanPrefix(prefix);
    prefix = "";
  });

  /** A worker with a pool of two threads; counts its settled outcomes. */
  async function worker(historyMs: number, metricsPort?: number): Promise<{ worker: RunningWorker; settled: () => number }> {
    const w = await startWorker({
      modules: [fixture("history_app.ts")], queues: ["history"], isolation: "thread", threads: 2, concurrency: 4,
      handleSignals: false, cron: false, logger: silent, historyMs, ...(metricsPort !== undefined ? { metricsPort } : {}),
    });
    running.push(w);
    let settled = 0;
    for (const name of ["job:complete", "job:retry", "job:dead", "job:discarded"] as const) {
      w.supervisor.events.on(name, () => void settled++);
    }
    return { worker: w, settled: () => settled };
  }

  /** What the dashboard would read: a broker of its own on the test's prefix. */
  let reader: RedisBroker | undefined;
  const history = () => (reader ??= new RedisBroker({ url: REDIS_URL, prefix })).history;
  const stats = async (actor: string) => (await actorStats(history(), "hour")).find((s) => s.actor === actor);
  afterEach(async () => {
    await reader?.close();
    reader = undefined;
  });

  redisTest("given jobs of known outcomes and a time-limit kill, when the recorder flushes, then actorStats reads each count", async () => {
    // given a worker flushing every 100 ms, which also serves metrics (both count kills from the pool)
    prefix = testPrefix("history-w");
    configure({ prefix, redisUrl: REDIS_URL });
    const port = await freePort();
    const { settled } = await worker(100, port);
    // when 3 jobs complete, 2 fail once then complete, 1 fails twice (retried, then dead)
    await ok.sendMany([{ ms: 20 }, { ms: 20 }, { ms: 20 }]);
    await flaky.sendMany([{}, {}]);
    await doomed.send({});
    await until(() => settled() === 3 + 4 + 2, "the first jobs settled", 15_000);
    // and then a busy loop overruns its 200 ms limit and its thread is stopped
    await spin.send({});
    await until(() => settled() === 10, "the busy loop dead", 15_000);
    // then, once flushed, the hour's stats hold every count
    await until(async () => (await stats("history_spin"))?.kills === 1, "the kill in the history", 5_000);
    expect(await stats("history_ok")).toMatchObject({ queue: "history", runs: 3, completed: 3, failures: 0, kills: 0 });
    expect(await stats("history_flaky")).toMatchObject({ runs: 4, completed: 2, retried: 2, failures: 2 });
    expect(await stats("history_doomed")).toMatchObject({ runs: 2, completed: 0, retried: 1, dead: 1, failures: 2, duration: null });
    expect(await stats("history_spin")).toMatchObject({ runs: 1, dead: 1, kills: 1, failures: 1 });
    // and the durations of the 20 ms jobs read as about 20 ms; every run waited some time
    const okStats = (await stats("history_ok"))!;
    expect(okStats.duration!.p50).toBeGreaterThan(15);
    expect(okStats.duration!.p50).toBeLessThan(500);
    expect(okStats.wait).not.toBeNull();
    // and the metrics counted the same kill: the pool calls both hooks
    const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    expect(metrics).toContain('dray_time_limit_kills_total{queue="history",actor="history_spin"} 1');
  }, 45_000);

  redisTest("a stop flushes what is left, and a second worker's counts add to the first's", async () => {
    // given a worker that would not flush for a minute
    prefix = testPrefix("history-w");
    configure({ prefix, redisUrl: REDIS_URL });
    const first = await worker(60_000);
    await ok.sendMany([{}, {}, {}]);
    await until(() => first.settled() === 3, "three jobs done", 10_000);
    await sleep(50);
    expect(await stats("history_ok")).toBeUndefined();
    // when it stops, then its counts are in Redis
    await first.worker.stop();
    expect(await stats("history_ok")).toMatchObject({ runs: 3, completed: 3 });
    // when a second worker (a restart) runs two more and stops
    const second = await worker(60_000);
    await ok.sendMany([{}, {}]);
    await until(() => second.settled() === 2, "two more jobs done", 10_000);
    await second.worker.stop();
    // then the history holds both
    expect(await stats("history_ok")).toMatchObject({ runs: 5, completed: 5 });
    const day = (await actorStats(history(), "day")).find((s) => s.actor === "history_ok");
    expect(day).toMatchObject({ runs: 5, completed: 5 });
  }, 45_000);
});
