/**
 * `dray bench`: a sweep of dray worker settings (threads x concurrency), then interleaved rounds of
 * dray at the recommended setting against the bare Streams loop and, with `--compare bullmq`,
 * BullMQ in-process and with worker threads. Prints progress, tables, a recommendation and the
 * throughput targets; can write JSON and an SVG chart.
 */
import { writeFileSync } from "node:fs";
import { isClusterUrl } from "../src/broker/cluster.ts";
import { newRedis } from "../src/broker/connection.ts";
import { closeBroker } from "../src/client.ts";
import { configure, settings } from "../src/config.ts";
import type { Isolation } from "../src/executor/mod.ts";
import { exit, onShutdownSignal, type RuntimeName } from "../src/runtime/mod.ts";
import { chartSvg } from "./chart.ts";
import { machineInfo, machineLine, type MachineInfo } from "./machine.ts";
import { LEGEND, mastersTable, progressLine, referenceTable, sweepTable, targetLines } from "./report.ts";
import { cleanPrefix, runOnce, type RunOptions, type RunResult } from "./runner.ts";
import type { Scenario } from "./scenarios.ts";
import { killChildren } from "./spawn.ts";
import { freePort } from "./chaos/redis_server.ts";
import { evaluateTargets, isolationLine, medianRun, recommend, type Recommendation, type Reference, type TargetResult } from "./summary.ts";
import { BaselineSystem, DraySystem, type BenchContext, type DrayConfig, type System } from "./systems.ts";
import type { BullSystem } from "./bullmq_system.ts";
import { ConfigError, UsageError } from "../src/errors.ts";
import { masterNodes, queuesLine, spreadQueues, type BenchQueue } from "./topology.ts";

type BullSystems = typeof import("./bullmq_system.ts");

/** BullMQ's side of the comparison, loaded only for it: dray does not depend on bullmq. */
async function loadBullmq(): Promise<BullSystems> {
  try {
    return await import("./bullmq_system.ts");
  } catch (error) {
    throw new ConfigError("--compare bullmq needs the bullmq package installed beside dray (npm install bullmq)", { cause: error });
  }
}

export interface BenchOptions {
  scenario: Scenario;
  /** Jobs pre-filled per run (bulk); a quarter more (at most 5,000) are sent one by one. */
  jobs: number;
  threads: number[];
  concurrency: number[];
  /** `dray worker --processes` values to sweep. @default [1] */
  processes?: number[];
  /** Runtime of the worker (and of the baseline and BullMQ processes). */
  runtime: RuntimeName;
  isolation: Isolation;
  compareBullmq: boolean;
  /** Jobs keep a result record (dray's default); `false` sends to actors with `resultTtl: 0`. */
  results: boolean;
  /** dray's workers serve Prometheus metrics, so that a run measures what counting costs. */
  metrics?: boolean;
  /** The workers' DRAY_HISTORY_MS (0: no history); unset: the worker's default. */
  historyMs?: number | undefined;
  /** `dray worker --prefetch`; unset: the worker's default (its concurrency). */
  prefetch?: number | undefined;
  /**
   * Queues the jobs go to, round-robin; the worker reads them all. On a Redis Cluster they are picked
   * on different masters (round-robin when more than the masters). @default 1; on a cluster, the masters
   */
  queues?: number | undefined;
  /** Rounds of the interleaved reference runs (dray, baseline, BullMQ ...), medians reported. */
  rounds: number;
  baseline: boolean;
  rate: number;
  latencySeconds: number;
  /** Seconds of the latency run sent first and not counted. */
  warmupSeconds: number;
  maxSeconds: number;
  startTimeoutMs: number;
  json?: string;
  chart?: string;
  /** A `redis+cluster://` URL runs the bench on a Redis Cluster. @default settings().redisUrl (REDIS_URL) */
  redisUrl?: string;
  /** The command line, recorded in the report. */
  command?: string;
  log?: (line: string) => void;
}

export interface BenchReport {
  meta: MachineInfo & { command: string; date: string; scenario: Scenario; runtime: RuntimeName; isolation: Isolation; results: boolean;
    /** The key prefix the run used (and removed). */
    prefix: string;
    /** The Redis was a cluster; its masters ("host:port"). */
    cluster: { masters: string[] } | null;
    /** The queues the jobs went to, and the server of each. */
    queues: BenchQueue[] };
  cells: RunResult[];
  recommendation: Recommendation | null;
  references: Reference[];
  ioNoopCeiling: RunResult | null;
  targets: TargetResult[];
}

export async function runBench(o: BenchOptions): Promise<BenchReport> {
  const log = o.log ?? ((line: string) => console.log(line));
  const previous = settings();
  const redisUrl = o.redisUrl ?? previous.redisUrl;
  const prefix = `dray-bench-${crypto.randomUUID().slice(0, 8)}`;
  const cluster = isClusterUrl(redisUrl);
  // BullMQ's side and the bare loops take a plain client of one Redis.
  if (cluster && o.compareBullmq) throw new UsageError("--compare bullmq runs on a single Redis, not on a Redis Cluster");
  configure({ prefix, redisUrl });
  const redis = newRedis(redisUrl);
  const bulls: BullSystem[] = [];
  const bullmq = o.compareBullmq ? await loadBullmq() : undefined;
  const removeSignal = onShutdownSignal(() => {
    log("interrupted: stopping workers and removing the bench's keys");
    killChildren();
    void cleanPrefix(redis, prefix).finally(() => exit(130));
  });
  try {
    const machine = await machineInfo(redis); // the first command: a Cluster client then knows the slots
    const masters = masterNodes(redis).map((m) => m.name);
    const queues = spreadQueues(redis, prefix, o.queues ?? (cluster ? masters.length : 1));
    const ctx: BenchContext = { redis, redisUrl, cluster, queues, prefix, scenario: o.scenario, runtime: o.runtime, results: o.results,
      prefetch: o.prefetch, ...(o.metrics ? { metricsPort: await freePort() } : {}), ...(o.historyMs !== undefined ? { historyMs: o.historyMs } : {}) };
    const meta = { ...machine, command: o.command ?? "dray bench", date: new Date().toISOString(),
      scenario: o.scenario, runtime: o.runtime, isolation: o.isolation, results: o.results, prefix,
      cluster: cluster ? { masters } : null, queues };
    log(machineLine(meta));
    log(`bench prefix ${prefix} · scenario ${o.scenario} · worker runtime ${o.runtime} · isolation ${o.isolation}` +
      ` · result records ${o.results ? "on" : "off"}${o.metrics ? " · metrics on" : ""}` +
      `${o.historyMs === undefined ? "" : ` · history every ${o.historyMs || "(off)"} ms`}`);
    if (cluster || queues.length > 1) log(queuesLine(queues, cluster ? masters : undefined));
    // The bare loops read the one stream of queue "bench" with a plain client.
    const baseline = o.baseline && !cluster && queues.length === 1;
    if (o.baseline && !baseline) log("no bare Streams loops: they read one queue on a single Redis");
    const runOptions: RunOptions = {
      jobs: o.jobs, singleJobs: Math.min(5_000, Math.ceil(o.jobs / 4)), chunk: 1_000, maxSeconds: o.maxSeconds,
      rate: o.rate, latencySeconds: o.latencySeconds, warmupSeconds: o.warmupSeconds, startTimeoutMs: o.startTimeoutMs, log,
    };
    const cells = await sweep(ctx, o, runOptions, log);
    meta.isolation = o.isolation;
    log("");
    log(sweepTable(cells));
    if (cluster) log(`\n${mastersTable(cells.map((run) => ({ label: run.label, run })))}`);
    const rec = recommend(cells, o.scenario);
    log(rec ? `recommendation: ${rec.line}` : "recommendation: none (no cell finished)");
    const references = await referenceRounds(ctx, { ...o, baseline }, runOptions, rec, bulls, log, bullmq);
    const dray = references.find((r) => r.kind === "dray" && r.median.concurrency === rec?.concurrency)?.median
      ?? cells.find((c) => c.threads === rec?.threads && c.concurrency === rec?.concurrency);
    if (references.length > 0) log(`\n${referenceTable(references, dray)}`);
    if (cluster && references.length > 0) log(`\n${mastersTable(references.map((r) => ({ label: r.label, run: r.median })))}`);
    const isolation = isolationLine(references, dray);
    if (isolation) log(isolation);
    const ioDray = dray?.threads === 2 && dray.concurrency === 200 ? [dray] : [];
    const io = await ioCeiling(ctx, o, runOptions, [...ioDray, ...cells], log);
    const bullThreads = references.filter((r) => r.label.includes("worker-threads")).map((r) => r.median)
      .filter((r) => r.status === "ok").sort((a, b) => b.processing.jobsPerSec - a.processing.jobsPerSec)[0]
      ?? references.find((r) => r.label.includes("worker-threads"))?.median;
    const targets = evaluateTargets({
      scenario: o.scenario, isolation: o.isolation, dray,
      baseline: references.find((r) => r.kind === "baseline")?.median,
      bullInProcess: references.find((r) => r.label.startsWith("bullmq in-process c50"))?.median,
      bullThreads,
      drayAt10: references.find((r) => r.kind === "dray" && r.median.concurrency === 10)?.median,
      bullThreadsAt10: references.filter((r) => r.label.includes("worker-threads c10")).map((r) => r.median)
        .find((r) => r.status === "ok"),
      ...(io ? { io } : {}),
    });
    log(`\n${LEGEND}\n\ntargets:\n${targetLines(targets)}`);
    if (rec) log(`\nrecommendation: ${rec.line}`);
    const report: BenchReport = { meta, cells, recommendation: rec ?? null, references, ioNoopCeiling: io?.run ?? null, targets };
    if (o.json) {
      writeFileSync(o.json, JSON.stringify(report, null, 2) + "\n");
      log(`wrote ${o.json}`);
    }
    if (o.chart) {
      const refs = references.filter((r) => r.kind !== "dray" && r.median.status === "ok")
        .map((r) => ({ label: r.label, jobsPerSec: r.median.processing.jobsPerSec }));
      writeFileSync(o.chart, chartSvg(`dray bench: ${o.scenario}, ${o.runtime}, isolation ${o.isolation}`, cells, refs));
      log(`wrote ${o.chart}`);
    }
    return report;
  } finally {
    removeSignal();
    await cleanPrefix(redis, prefix).catch(() => undefined);
    await Promise.all(bulls.map((b) => b.close().catch(() => undefined)));
    await closeBroker();
    redis.disconnect();
    configure({ prefix: previous.prefix, redisUrl: previous.redisUrl });
  }
}

/** Every threads x concurrency cell; `--isolation inline` has no threads, so one row per concurrency. */
async function sweep(ctx: BenchContext, o: BenchOptions, ro: RunOptions, log: (l: string) => void): Promise<RunResult[]> {
  const threads = o.isolation === "inline" ? o.threads.slice(0, 1) : o.threads;
  const processes = o.processes ?? [1];
  const cells: RunResult[] = [];
  const total = processes.length * threads.length * o.concurrency.length;
  for (const n of processes) for (const t of threads) {
    for (const c of o.concurrency) {
      const r = await runOnce(ctx, new DraySystem(ctx, { threads: t, concurrency: c, isolation: o.isolation, processes: n }), ro);
      if (r.status !== "ok" && o.isolation !== "inline" && /isolation "\w+" is not available/.test(r.note ?? "")) {
        // Until the thread and process executors exist, measure what does: say so loudly.
        log(`isolation "${o.isolation}" is not available in this build: falling back to --isolation inline`);
        o.isolation = "inline";
        return await sweep(ctx, o, ro, log);
      }
      cells.push(r);
      log(`[${cells.length}/${total}] ${progressLine(r)}`);
    }
  }
  return cells;
}

/**
 * Interleaved rounds (A B C A B C ...) so that a slow spell of a shared machine hits every system
 * alike. BullMQ's worker-thread mode may not start on some runtimes (it did not on Bun): such a run
 * is reported "did not start" and the mode is tried on Node instead.
 */
async function referenceRounds(ctx: BenchContext, o: BenchOptions, ro: RunOptions, rec: Recommendation | undefined,
  bulls: BullSystem[], log: (l: string) => void, bullmq: BullSystems | undefined): Promise<Reference[]> {
  const systems: System[] = [];
  if (rec) systems.push(new DraySystem(ctx, { threads: rec.threads, concurrency: rec.concurrency, isolation: o.isolation, processes: rec.processes } satisfies DrayConfig));
  if (o.baseline) systems.push(new BaselineSystem(ctx), new BaselineSystem(ctx, true));
  if (bullmq) {
    const make = (mode: "inprocess" | "threads", c: number) => {
      const b = new bullmq.BullSystem(ctx, mode, c);
      bulls.push(b);
      return b;
    };
    systems.push(make("inprocess", 50));
    if (rec && rec.concurrency !== 50) systems.push(make("inprocess", rec.concurrency));
    systems.push(make("threads", 2), make("threads", 10));
    // The memory target compares at the same concurrency as BullMQ's larger worker-threads run.
    if (rec && rec.concurrency !== 10) systems.push(new DraySystem(ctx, { threads: rec.threads, concurrency: 10, isolation: o.isolation }));
  }
  if (systems.length === 0) return [];
  const runs = new Map<string, { system: System; runs: RunResult[] }>();
  log(`\nreference runs: ${o.rounds} interleaved round(s) of ${systems.map((s) => s.label).join(", ")}`);
  for (let round = 1; round <= o.rounds; round++) {
    for (let i = 0; i < systems.length; i++) {
      const system = systems[i]!;
      const r = await runOnce(ctx, system, ro);
      const entry = runs.get(system.label) ?? { system, runs: [] };
      entry.runs.push(r);
      runs.set(system.label, entry);
      log(`[round ${round}] ${progressLine(r)}`);
      if (bullmq && system instanceof bullmq.BullSystem && system.mode === "threads" && r.status !== "ok" && system.runtime !== "node") {
        log(`  BullMQ worker-threads ${r.status} on ${o.runtime}; using Node for this mode from now on`);
        const onNode = new bullmq.BullSystem(ctx, "threads", system.concurrency, "node");
        bulls.push(onNode);
        systems[i] = onNode;
        const retry = await runOnce(ctx, onNode, ro);
        runs.set(onNode.label, { system: onNode, runs: [retry] });
        log(`[round ${round}] ${progressLine(retry)}`);
      }
    }
  }
  return [...runs.entries()].map(([label, e]) => ({ label, kind: e.system.kind, runs: e.runs, median: medianRun(e.runs) }));
}

/** io scenario: the noop ceiling at --threads 2 --concurrency 200, the io target's reference. */
async function ioCeiling(ctx: BenchContext, o: BenchOptions, ro: RunOptions, cells: RunResult[], log: (l: string) => void) {
  const cell = cells.find((c) => c.threads === 2 && c.concurrency === 200 && c.status === "ok")
    ?? (o.isolation === "inline" ? cells.find((c) => c.concurrency === 200 && c.status === "ok") : undefined);
  if (o.scenario !== "io" || !cell) return undefined;
  const noopCtx: BenchContext = { ...ctx, scenario: "noop" };
  const run = await runOnce(noopCtx, new DraySystem(noopCtx, { threads: 2, concurrency: 200, isolation: o.isolation }), { ...ro, rate: 0 });
  log(`[io ceiling] noop ${progressLine(run)}`);
  return run.status === "ok" ? { cell, noopCeiling: run.processing.jobsPerSec, run } : undefined;
}
