/**
 * `dray bench` end to end on a tiny run: a real worker process on the real Redis, one cell, the
 * baseline loop once. Checks the report's shape and sanity, never its timings.
 */
import { describe, expect, test } from "bun:test";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { parseBenchArgs } from "../src/cli/bench.ts";
import { runBench, type BenchReport } from "../bench/mod.ts";
import type { RunResult } from "../bench/runner.ts";
import { evaluateTargets } from "../bench/summary.ts";
import { ConfigError } from "../src/errors.ts";
import { queueKeys } from "../src/broker/keys.ts";
import { closeCluster, clusterEnabled, masterFor, openCluster, type OpenCluster } from "./cluster/suite.ts";
import { REDIS_URL } from "./helpers.ts";
import { redisTest } from "./redis_test.ts";

describe("dray bench", () => {
  redisTest("given a tiny noop bench, when it runs, then it reports sane figures, writes JSON and SVG, and leaves no keys", async () => {
    // given
    const out = join(tmpdir(), `dray-bench-test-${crypto.randomUUID().slice(0, 8)}`);
    const lines: string[] = [];
    const options = {
      ...parseBenchArgs(["--jobs", "200", "--threads", "1", "--concurrency", "8", "--isolation", "inline",
        "--runtime", "bun", "--rate", "100", "--latency-seconds", "0.3", "--rounds", "1",
        "--json", `${out}.json`, "--chart", `${out}.svg`]),
      redisUrl: REDIS_URL,
      log: (line: string) => void lines.push(line),
    };
    let report: BenchReport;
    try {
      // when
      report = await runBench(options);
      // then
      const cell = report.cells[0]!;
      expect(report.cells).toHaveLength(1);
      expect(cell.status).toBe("ok");
      expect(cell.processing.jobs).toBe(250); // 200 bulk + 50 single sends
      expect(cell.processing.complete).toBe(true);
      expect(cell.processing.jobsPerSec).toBeGreaterThan(0);
      expect(cell.enqueue.bulkJobsPerSec).toBeGreaterThan(0);
      expect(cell.enqueue.singleJobsPerSec).toBeGreaterThan(0);
      expect(cell.redisCommandsPerJob).toBeGreaterThan(0);
      expect(cell.enqueueCommandsPerJob).toBeGreaterThanOrEqual(1); // at least the XADD
      expect(cell.latency?.jobs).toBe(30);
      // 0.5 s of warm-up at 100/s ran before them and is left out of the percentiles, not dropped.
      expect(cell.latency?.warmup.jobs).toBe(50);
      expect(cell.latency!.warmup.startMax).toBeGreaterThanOrEqual(0);
      expect(lines.some((l) => /start p99 [\d.]+ ms \(warm-up 50 jobs, worst [\d.]+ ms\)/.test(l))).toBe(true);
      expect(cell.latency!.start.p50).toBeLessThanOrEqual(cell.latency!.start.p99);
      expect(cell.latency!.start.p99).toBeLessThanOrEqual(cell.latency!.complete.p99);
      if (existsSync("/proc/self/stat")) expect(cell.peakRssMb).toBeGreaterThan(0);
      expect(report.recommendation?.concurrency).toBe(8);
      const baseline = report.references.find((r) => r.kind === "baseline");
      expect(baseline?.median.status).toBe("ok");
      expect(report.targets.find((t) => t.name.includes("bare streams loop"))?.status).toMatch(/PASS|MISS/);
      // and the same loop with a thread hop, its latency run included, with what isolation alone costs
      const hop = report.references.find((r) => r.kind === "hop");
      expect(hop?.median.status).toBe("ok");
      expect(hop?.median.processing.jobs).toBe(250);
      expect(hop?.median.latency?.jobs).toBe(30);
      expect(lines.some((l) => /^isolation alone: the thread-hop loop does [\d.]+x the bare loop; dray = [\d.]+x/.test(l))).toBe(true);
      expect(lines.some((l) => l.startsWith("recommendation: for this scenario (noop) use --threads 1 --concurrency 8"))).toBe(true);
      const json = JSON.parse(readFileSync(`${out}.json`, "utf8")) as BenchReport;
      expect(json.cells[0]!.processing.jobs).toBe(250);
      expect(json.meta.versions.redis).toMatch(/^\d+\./);
      expect(readFileSync(`${out}.svg`, "utf8")).toStartWith("<svg");
      const redis = new Redis(REDIS_URL);
      const left: string[] = [];
      let cursor = "0";
      do {
        const [next, keys] = await redis.scan(cursor, "MATCH", `*${report.meta.prefix}*`, "COUNT", 1_000);
        cursor = next;
        left.push(...keys);
      } while (cursor !== "0");
      redis.disconnect();
      expect(left).toEqual([]);
    } finally {
      rmSync(`${out}.json`, { force: true });
      rmSync(`${out}.svg`, { force: true });
    }
  }, 120_000);

  redisTest("given a drain cut off at --max-seconds, when it ends, then no latency is measured behind the backlog", async () => {
    // given jobs of 10 ms, one at a time, and 0.3 s to drain 1,250 of them
    const options = {
      ...parseBenchArgs(["--scenario", "io", "--jobs", "1000", "--threads", "1", "--concurrency", "1", "--isolation", "inline",
        "--runtime", "bun", "--rate", "5", "--latency-seconds", "0.3", "--rounds", "1", "--max-seconds", "0.3", "--no-baseline"]),
      redisUrl: REDIS_URL,
      log: () => undefined,
    };
    // when
    const report = await runBench(options);
    // then the cell is marked cut off and has no latency figures, and says why
    const cell = report.cells[0]!;
    expect(cell.processing.complete).toBe(false);
    expect(cell.latency).toBeNull();
    expect(cell.note).toContain("no latency run: the drain was cut off");
  }, 60_000);

  test.skipIf(!clusterEnabled())("given a Redis Cluster of 3 masters, when a tiny bench runs on it, then jobs spread over 3 masters and Redis cost is reported per master", async () => {
    // given a cluster started for this test, and its URL given as --redis
    let open: Partial<OpenCluster> = {};
    const lines: string[] = [];
    try {
      open = await openCluster();
      const options = {
        ...parseBenchArgs(["--redis", open.cluster!.url, "--jobs", "2000", "--threads", "1", "--concurrency", "16",
          "--isolation", "inline", "--runtime", "bun", "--rate", "100", "--latency-seconds", "0.3", "--rounds", "1"]),
        log: (line: string) => void lines.push(line),
      };
      // when
      const report = await runBench(options);
      // then the default --queues is one queue per master, each on a master of its own
      const { masters } = open;
      expect(report.meta.cluster?.masters).toHaveLength(3);
      expect(report.meta.queues).toHaveLength(3);
      for (const q of report.meta.queues) {
        expect(`127.0.0.1:${masterFor(masters!, queueKeys(report.meta.prefix, q.name).stream(0)).port}`).toBe(q.node);
      }
      expect(new Set(report.meta.queues.map((q) => q.node)).size).toBe(3);
      const cell = report.cells[0]!;
      expect(cell.status).toBe("ok");
      expect(cell.processing.jobs).toBe(2500);
      expect(cell.latency?.jobs).toBe(30);
      // and each master took its share of the sends (a third each, round-robin) and of the processing
      const per = cell.redisMasters!;
      expect(per.map((m) => m.node).sort()).toEqual(report.meta.cluster!.masters);
      for (const m of per) {
        expect(m.queues).toHaveLength(1);
        expect(m.enqueueCommandsPerJob).toBeGreaterThan(0.25);
        expect(m.processCommandsPerJob).toBeGreaterThan(0.25);
      }
      // and the totals are the masters' sums, up to the rounding of each
      const sum = (pick: (m: (typeof per)[number]) => number) => per.reduce((n, m) => n + pick(m), 0);
      expect(Math.abs(sum((m) => m.cpuMsPerJob) - cell.redisCpuMsPerJob!)).toBeLessThanOrEqual(0.0003);
      expect(Math.abs(sum((m) => m.enqueueCommandsPerJob) - cell.enqueueCommandsPerJob!)).toBeLessThanOrEqual(0.03);
      expect(Math.abs(sum((m) => m.processCommandsPerJob) - cell.processCommandsPerJob!)).toBeLessThanOrEqual(0.03);
      // and the summary prints them, a row per master
      const printed = lines.find((l) => l.includes("Redis cost per master"));
      for (const node of report.meta.cluster!.masters) expect(printed).toContain(node);
      // and no key of the run is left on any master
      const left = await Promise.all(open.raw!.nodes("master").map((n) => n.keys(`*${report.meta.prefix}*`)));
      expect(left.flat()).toEqual([]);
    } finally {
      await closeCluster(open);
    }
  }, 60_000);

  test("given --redis and --queues, when parsed, then they are taken, and a password is not recorded", () => {
    const o = parseBenchArgs(["--redis", "redis+cluster://u:secret@h:7000,h:7001", "--queues", "4"]);
    expect(o.redisUrl).toBe("redis+cluster://u:secret@h:7000,h:7001");
    expect(o.queues).toBe(4);
    expect(o.command).toBe("dray bench --redis redis+cluster://u:***@h:7000,h:7001 --queues 4");
    expect(parseBenchArgs([]).queues).toBeUndefined();
    expect(() => parseBenchArgs(["--queues", "0"])).toThrow(ConfigError);
  });

  test("given bad flags, when parsed, then they are refused with a ConfigError", () => {
    expect(() => parseBenchArgs(["--scenario", "sleepy"])).toThrow(ConfigError);
    expect(() => parseBenchArgs(["--threads", "1,x"])).toThrow(ConfigError);
    expect(() => parseBenchArgs(["--compare", "celery"])).toThrow(ConfigError);
    expect(parseBenchArgs(["--concurrency", "2,200"]).concurrency).toEqual([2, 200]);
    expect(() => parseBenchArgs(["--prefetch", "some"])).toThrow(ConfigError);
    expect(() => parseBenchArgs(["--latency-warmup", "soon"])).toThrow(ConfigError);
    expect(parseBenchArgs([]).warmupSeconds).toBe(0.5);
    expect(parseBenchArgs(["--prefetch", "0"]).prefetch).toBe(0);
    expect(parseBenchArgs([]).prefetch).toBeUndefined();
  });

  test("given no --isolation, when the flags are parsed, then the worker isolates as `dray worker` does on its runtime", () => {
    expect(parseBenchArgs(["--runtime", "bun"]).isolation).toBe("thread");
    expect(parseBenchArgs(["--runtime", "node"]).isolation).toBe("thread");
    expect(parseBenchArgs(["--runtime", "deno"]).isolation).toBe("process");
    expect(parseBenchArgs(["--runtime", "deno", "--isolation", "thread"]).isolation).toBe("thread");
  });

  test("given medians of two rounds, when the targets are printed, then commands per job show two decimals at most", () => {
    // The median of 3.20 and 3.19 is 3.1950000000000003 in floating point.
    const dray = { status: "ok", processing: { jobsPerSec: 1000 }, enqueue: { bulkJobsPerSec: 1000 },
      redisCommandsPerJob: (3.2 + 3.19) / 2, enqueueCommandsPerJob: 2, processCommandsPerJob: (1.2 + 1.19) / 2 } as unknown as RunResult;
    const line = evaluateTargets({ scenario: "noop", isolation: "thread", dray, baseline: undefined, bullInProcess: undefined, bullThreads: undefined })
      .find((t) => t.name.startsWith("<= 5 Redis commands"))!;
    expect(line.status).toBe("PASS");
    expect(line.detail).toBe("3.2 commands/job (enqueue 2 + processing 1.19)");
  });

  test("given a ratio that misses by less than its rounding, when the targets are printed, then it shows a third decimal", () => {
    const run = (rss: number) => ({ status: "ok", processing: { jobsPerSec: 1000 }, enqueue: { bulkJobsPerSec: 1000 }, peakRssMb: rss }) as unknown as RunResult;
    const rss = (dray: number, bull: number) => evaluateTargets({
      scenario: "noop", isolation: "thread", dray: run(dray), baseline: undefined, bullInProcess: undefined, bullThreads: undefined,
      drayAt10: run(dray), bullThreadsAt10: run(bull),
    }).find((t) => t.name.startsWith("worker RSS"))!;
    expect(rss(112.7, 223.3)).toMatchObject({ status: "MISS", detail: "113 / 223 = 0.505x (want <= 0.5x)" });
    expect(rss(100, 250)).toMatchObject({ status: "PASS", detail: "100 / 250 = 0.40x (want <= 0.5x)" });
  });
});
