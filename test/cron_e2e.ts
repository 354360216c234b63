/**
 * Cron end to end, through real processes as users run them: `dray scheduler` and `dray worker`
 * (whose embedded tickers race the schedulers) on every-second crons. Exactly once per tick across
 * five tickers, no lost tick when a scheduler is killed, the overlap lock (SKIPPED runs settled as
 * skipped jobs, release on success and failure, renewal during runs longer than lockTtl, expiry after
 * kill -9), and each catch-up policy after a 6-tick outage. Run on one Redis by cron_e2e.test.ts
 * and on the local cluster by cluster_e2e.test.ts; about 70 s on each, a third of it the 20-tick
 * run.
 */
import { afterEach, beforeEach, describe, expect } from "bun:test";
import type { RedisClient } from "../src/broker/connection.ts";
import { cronKeys, queueKeys } from "../src/broker/keys.ts";
import { cronHistory, type CronRun } from "../src/cron/history.ts";
import { decodeMessage, type Message } from "../src/message.ts";
import { fixture, maxOverlap, sleep, spawnScheduler, spawnWorker, started, tickerStarted, until,
  type WorkerProcess } from "./helpers.ts";
import { targetTest, type Target } from "./target.ts";

export function cronEndToEnd(target: Target): void {
  let prefix = "";
  let redis: RedisClient;
  const procs: WorkerProcess[] = [];

  const env = (extra: Record<string, string> = {}) => ({ DRAY_PREFIX: prefix, REDIS_URL: target.url(), ...extra });
  function scheduler(app: string, extra: Record<string, string> = {}): WorkerProcess {
    const p = spawnScheduler([fixture(app)], env(extra));
    procs.push(p);
    return p;
  }
  function worker(app: string, args: string[] = [], extra: Record<string, string> = {}): WorkerProcess {
    const p = spawnWorker([fixture(app)], ["--isolation", "inline", "--concurrency", "8", ...args], env(extra));
    procs.push(p);
    return p;
  }

  /** Every cron message still in the "cron" queue's stream (not consumed). */
  async function queued(): Promise<Message[]> {
    const entries = await redis.xrange(queueKeys(prefix, "cron").stream(0), "-", "+");
    return entries.map(([, fields]) => decodeMessage(fields[fields.indexOf("m") + 1], "cron"));
  }

  const beats = async () => Object.entries(await redis.hgetall(`${prefix}:test:beats`)).map(([t, n]) => [Number(t), Number(n)] as const);
  const history = (name: string) => cronHistory(redis, prefix, { name, queue: "cron" }, 1000);

  /** Ticks one second apart with no gap and no repeat, else the first offender. */
  function gaps(ticks: number[]): string[] {
    const sorted = [...ticks].sort((a, b) => a - b);
    return sorted.slice(1).flatMap((t, i) => (t - sorted[i]! === 1000 ? [] : [`${sorted[i]} -> ${t}`]));
  }

  const it = targetTest(target);

  describe(`cron across processes: ${target.name}`, () => {
    beforeEach(() => {
      if (!target.enabled) return;
      prefix = target.prefix("cron");
      redis = target.client();
    });

    afterEach(async () => {
      if (!target.enabled) return;
      await Promise.all(procs.splice(0).map((p) => p.stop("SIGKILL")));
      redis.disconnect();
      await target.clean(prefix);
    });

    it("3 schedulers + 2 ticking workers over 20+ ticks enqueue and run each tick exactly once", async () => {
      // given five tickers on one every-second cron (jobs keep no dedup key: resultTtl 0)
      const all = [scheduler("cron_app.ts"), scheduler("cron_app.ts"), scheduler("cron_app.ts"),
        worker("cron_app.ts"), worker("cron_app.ts")];
      await Promise.all(all.map((p) => tickerStarted(p)));
      // when they run for more than 20 ticks (100 claims raced)
      await until(async () => (await redis.hlen(`${prefix}:test:beats`)) >= 22, "22 ticks run", 60_000);
      await Promise.all(all.map((p) => p.stop("SIGTERM")));
      // then every tick from the first to the last was enqueued once: run once, or still queued
      const ran = await beats();
      const left = (await queued()).map((m) => m.cron!.tick);
      const ticks = [...ran.map(([t]) => t), ...left];
      expect(ran.filter(([, n]) => n !== 1)).toEqual([]);
      expect(gaps(ticks)).toEqual([]);
      expect(ticks.length).toBeGreaterThanOrEqual(22);
      expect(Number(await redis.get(cronKeys(prefix, "cron", "cron_beat").last))).toBe(Math.max(...ticks));
      // and the tickers' own logs count one enqueue per tick, whoever won it
      const wins = all.map((p) => p.logs.filter((l) => l.msg === "cron tick enqueued").length +
        p.logs.filter((l) => l.msg === "caught up missed cron ticks").reduce((n, l) => n + Number(l.sent), 0));
      expect(wins.reduce((a, b) => a + b, 0)).toBe(ticks.length);
      console.log(`cron exactly-once: ${ticks.length} ticks; won per ticker (3 schedulers, 2 workers): ${wins.join(", ")}`);
    }, 120_000);

    it("killing a scheduler mid-run loses no tick while another ticker lives", async () => {
      // given two schedulers and a worker that does not tick (--no-cron)
      const w = worker("cron_app.ts", ["--no-cron"]);
      const [s1, s2] = [scheduler("cron_app.ts"), scheduler("cron_app.ts")];
      await Promise.all([started(w), tickerStarted(s1), tickerStarted(s2)]);
      const ranAtLeast = (n: number) => until(async () => (await redis.hlen(`${prefix}:test:beats`)) >= n, `${n} ticks`, 15_000);
      await ranAtLeast(3);
      // when one is killed -9, a third starts, and then the second is killed -9 too
      s1.child.kill("SIGKILL");
      await ranAtLeast(6);
      const s3 = scheduler("cron_app.ts");
      await tickerStarted(s3);
      s2.child.kill("SIGKILL");
      await ranAtLeast(10);
      await s3.stop("SIGTERM");
      await until(async () => (await queued()).length === 0, "queue drained");
      // then every tick in the window ran exactly once
      const ran = await beats();
      expect(ran.filter(([, n]) => n !== 1)).toEqual([]);
      expect(gaps(ran.map(([t]) => t))).toEqual([]);
      expect(ran.length).toBeGreaterThanOrEqual(10);
      expect(w.logs.some((l) => l.msg === "cron ticker started")).toBe(false);
    }, 60_000);

    it("a run that overlaps the previous one is SKIPPED; the lock is released on success and on failure", async () => {
      // given cron_slow (2.5 s runs every second, lockTtl 10 s), cron_doomed (always fails, no retry)
      // and cron_flaky (fails once, passes on retry), all ticked by one worker
      const w = worker("cron_overlap.ts");
      await started(w);
      // when they run for a while
      await until(async () => (await history("cron_slow")).filter((r) => r.status === "COMPLETED").length >= 2,
        "two slow runs completed", 20_000);
      await w.stop("SIGTERM");
      // then slow runs never overlap; ticks during a run were skipped; the tick after a run ran
      const slow = (await history("cron_slow")).reverse();
      const runs = slow.filter((r) => r.status !== "SKIPPED");
      const skipped = slow.filter((r) => r.status === "SKIPPED");
      expect(skipped.length).toBeGreaterThanOrEqual(2);
      for (const [i, r] of runs.entries()) {
        const prev = runs[i - 1];
        if (prev?.completedAt === undefined) continue;
        expect(r.startedAt).toBeGreaterThanOrEqual(prev.completedAt - 5);
        // released on success: the next run is the next tick, not one lockTtl (10 s) later
        expect(r.startedAt - prev.completedAt).toBeLessThan(2_000);
      }
      expect(skipped.every((s) => runs.some((r) => r.startedAt <= s.startedAt && (r.completedAt ?? Infinity) >= s.startedAt - 5))).toBe(true);
      const done = runs.find((r) => r.status === "COMPLETED")!;
      expect(done).toMatchObject({ cron: "cron_slow", result: { slept: 2500 }, attempt: 1 });
      expect(done.jobId).toBe(`cron:cron_slow:${done.tick}`);
      expect(done.duration).toBeGreaterThanOrEqual(2_400);

      // and a failed run releases the lock: the next tick runs instead of being skipped for 10 s
      const doomed = await history("cron_doomed");
      expect(doomed.filter((r) => r.status === "FAILED").length).toBeGreaterThanOrEqual(3);
      expect(doomed.filter((r) => r.status === "SKIPPED")).toEqual([]);
      expect(doomed[0]!.error).toEqual({ name: "Error", message: "always fails" });
      // cron jobs take the normal path: dead letters ...
      const letters = await redis.xrange(queueKeys(prefix, "cron").dlq, "-", "+");
      const dead = letters.map(([, f]) => decodeMessage(f[f.indexOf("m") + 1], "cron"));
      expect(dead.filter((m) => m.cron?.name === "cron_doomed").length).toBe(doomed.filter((r) => r.status === "FAILED").length);
      // ... and retries: each flaky tick failed once, then passed on attempt 2
      const flaky = await history("cron_flaky");
      const passed = flaky.filter((r) => r.status === "COMPLETED");
      expect(passed.length).toBeGreaterThanOrEqual(2);
      for (const p of passed) {
        expect(p.attempt).toBe(2);
        expect(flaky.some((r) => r.tick === p.tick && r.attempt === 1 && r.status === "FAILED")).toBe(true);
      }
    }, 40_000);

    it("a tick skipped by the overlap lock settles as skipped: its job record says why, and it is not logged completed", async () => {
      // given cron_slow alone (2.5 s runs every second under a 10 s lock) on one worker
      const w = worker("cron_overlap.ts", [], { CRON_ONLY: "slow" });
      await started(w);
      // when a run completes and ticks are skipped during one
      await until(async () => {
        const h = await history("cron_slow");
        return h.some((r) => r.status === "COMPLETED") && h.filter((r) => r.status === "SKIPPED").length >= 2;
      }, "a completed run and two skipped ticks", 20_000);
      await w.stop("SIGTERM");
      // then each skipped tick's job record is "skipped" with the reason; the worker logged it skipped,
      // never completed (its log line and job:complete go together)
      const all = await history("cron_slow");
      const record = async (id: string) => JSON.parse((await redis.get(queueKeys(prefix, "cron").job(id))) ?? "null");
      const said = (id: string) => w.logs.filter((l) => l.id === id).map((l) => l.msg);
      const skipped = all.filter((r) => r.status === "SKIPPED");
      expect(skipped.length).toBeGreaterThanOrEqual(2);
      for (const run of skipped) {
        expect(await record(run.jobId)).toMatchObject({ status: "skipped", attempts: 0,
          error: { name: "Locked", message: "the previous run still holds the overlap lock" } });
        expect(said(run.jobId)).toContain("job skipped");
        expect(said(run.jobId)).not.toContain("job completed");
      }
      // and a run that went ahead is completed, as before
      const done = all.find((r) => r.status === "COMPLETED")!;
      expect(await record(done.jobId)).toMatchObject({ status: "completed", attempts: 1, result: { slept: 2500 } });
      expect(said(done.jobId)).toContain("job completed");
    }, 40_000);

    it("a run longer than lockTtl keeps its lock: the ticks during it are SKIPPED and no two runs overlap", async () => {
      // given cron_slow alone: 3 s runs every second under a 1 s lock, on one worker
      const w = worker("cron_overlap.ts", [], { CRON_ONLY: "slow", CRON_SLOW_MS: "3000", CRON_LOCK_TTL: "1000" });
      await started(w);
      // when two runs complete
      await until(async () => (await history("cron_slow")).filter((r) => r.status === "COMPLETED").length >= 2,
        "two slow runs completed", 20_000);
      await w.stop("SIGTERM");
      // then the runs never overlapped, the ticks during them were skipped, and no renewal found its lock lost
      const all = await history("cron_slow");
      const runs = all.filter((r) => r.status !== "SKIPPED");
      const spans = runs.map((r) => ({ start: r.startedAt, end: r.completedAt ?? Date.now() }));
      expect({ runs: runs.length, overlap: maxOverlap(spans) }).toEqual({ runs: runs.length, overlap: 1 });
      expect(all.filter((r) => r.status === "SKIPPED").length).toBeGreaterThanOrEqual(3);
      expect(w.logs.filter((l) => Number(l.level) >= 40 && String(l.msg).includes("lock"))).toEqual([]);
    }, 40_000);

    it("the lock of a worker killed -9 mid-run blocks the next runs until lockTtl, then expires", async () => {
      // given cron_slow alone with 60 s runs and a 4 s lock, a scheduler, and worker A running a tick
      const extra = { CRON_ONLY: "slow", CRON_SLOW_MS: "60000", CRON_LOCK_TTL: "4000" };
      const s = scheduler("cron_overlap.ts", extra);
      const a = worker("cron_overlap.ts", ["--no-cron"], extra);
      await Promise.all([tickerStarted(s), started(a)]);
      const running = (await until(async () => (await history("cron_slow")).find((r) => r.status === "RUNNING"), "a run", 10_000))!;
      // when A is killed -9 (its lock stays) and worker B takes over (no reclaim of A's job here)
      a.child.kill("SIGKILL");
      const b = worker("cron_overlap.ts", ["--no-cron", "--visibility-timeout", "60000"], extra);
      await started(b);
      const next = (await until(async () => (await history("cron_slow")).find((r) => r.status === "RUNNING" && r.jobId !== running.jobId),
        "a run after the lock expired", 15_000))!;
      // then B skipped the ticks while the dead holder's lock lived, and ran once it expired
      const all = await history("cron_slow");
      const skippedByB = all.filter((r: CronRun) => r.status === "SKIPPED" && r.startedAt >= running.startedAt);
      expect(skippedByB.length).toBeGreaterThanOrEqual(1);
      expect(next.startedAt).toBeGreaterThanOrEqual(running.startedAt + 4_000 - 50);
      expect(next.startedAt).toBeLessThan(running.startedAt + 4_000 + 3_000);
      expect(all.find((r) => r.jobId === running.jobId)!.status).toBe("RUNNING"); // its holder died mid-run
    }, 40_000);

    it("after a 6-tick outage of every ticker, each catch-up policy does what it says", async () => {
      // given four every-second crons (none, last, all, all with maxCatchUp 3) ticked by one scheduler
      const first = scheduler("cron_catchup.ts");
      await tickerStarted(first);
      await until(async () => (await queued()).length >= 4 * 3, "three ticks of each cron", 10_000);
      // when it is killed -9, nothing ticks for seven seconds (six ticks and change), and a new one starts
      first.child.kill("SIGKILL");
      await first.exited;
      const killedAt = Date.now();
      await sleep(7_000);
      const second = scheduler("cron_catchup.ts");
      await tickerStarted(second);
      await sleep(2_500);
      await second.stop("SIGTERM");
      // then (per cron: L = last tick before the outage, F = first tick enqueued on time after it)
      const byCron = new Map<string, Message[]>();
      for (const m of await queued()) byCron.set(m.cron!.name, [...(byCron.get(m.cron!.name) ?? []), m]);
      const caughtUp = (name: string) => {
        const msgs = byCron.get(name)!.sort((x, y) => x.cron!.tick - y.cron!.tick);
        const ticks = msgs.map((m) => m.cron!.tick);
        expect(new Set(ticks).size).toBe(ticks.length); // never twice
        const last = Math.max(...msgs.filter((m) => m.sentAt <= killedAt).map((m) => m.cron!.tick));
        const onTime = msgs.filter((m) => m.sentAt > killedAt && m.sentAt - m.cron!.tick < 1000).map((m) => m.cron!.tick);
        const firstOnTime = Math.min(...onTime);
        expect(gaps(onTime)).toEqual([]);
        const missed = (firstOnTime - last) / 1000 - 1;
        return { missed, caught: ticks.filter((t) => t > last && t < firstOnTime).map((t) => (firstOnTime - t) / 1000) };
      };
      const none = caughtUp("cu_none");
      expect(none.missed).toBeGreaterThanOrEqual(6);
      expect(none.caught).toEqual([]);
      expect(caughtUp("cu_last").caught).toEqual([1]);
      expect(caughtUp("cu_all3").caught).toEqual([3, 2, 1]);
      const all = caughtUp("cu_all");
      expect(all.caught).toEqual(Array.from({ length: all.missed }, (_, i) => all.missed - i));
      console.log(`cron catch-up: ${none.missed} ticks missed; none ran 0, last 1, all ${all.caught.length}, all(max 3) 3`);
    }, 40_000);
  });
}
