/**
 * One measured run of one system: enqueue (bulk, then single sends with 64 in flight), start its
 * worker on the pre-filled queue and time the drain, then offer a fixed rate and record latencies.
 * Worker CPU and RSS come from /proc, Redis CPU and commands from INFO deltas over the drain (on a
 * Redis Cluster: on each master, summed, and reported per master too).
 */
import { isCluster, keySlot } from "../src/broker/cluster.ts";
import type { RedisClient } from "../src/broker/connection.ts";
import { PeakRss, sampleTree } from "./proc.ts";
import { deltaNodes, snapshotNodes, type RedisCost } from "./redis_stats.ts";
import type { BenchPayload } from "./scenarios.ts";
import type { Child } from "./spawn.ts";
import type { BenchContext, System } from "./systems.ts";
import { measureLatency, type Latency } from "./latency.ts";
import { masterNodes } from "./topology.ts";

export interface RunOptions {
  /** Jobs pre-filled with bulk sends. */
  jobs: number;
  /** Jobs sent one by one (64 in flight) after the bulk ones; processed with them. */
  singleJobs: number;
  /** Jobs per bulk send. @default 1000 */
  chunk: number;
  /** The drain is cut off after this long; jobs/s is then what was done so far. */
  maxSeconds: number;
  /** Offered rate of the latency run, jobs/s (0 = no latency run). */
  rate: number;
  latencySeconds: number;
  /** Sent at the rate before the latency run and not counted (see latency.ts). */
  warmupSeconds: number;
  /** A worker that has not finished one job this long after it said ready "did not start". */
  startTimeoutMs: number;
  log: (line: string) => void;
}

export interface RunResult {
  label: string;
  kind: System["kind"];
  threads?: number;
  concurrency?: number;
  /** dray run with `--processes` above 1. */
  processes?: number;
  status: "ok" | "did not start" | "failed";
  note?: string;
  enqueue: { bulkJobsPerSec: number; singleJobsPerSec: number };
  processing: { jobs: number; seconds: number; jobsPerSec: number; complete: boolean };
  latency: Latency | null;
  peakRssMb: number | null;
  workerCpuMsPerJob: number | null;
  redisCpuMsPerJob: number | null;
  /** Redis commands per job, enqueue and processing together (one of the targets). */
  redisCommandsPerJob: number | null;
  /** The enqueue part (bulk and single sends alike). */
  enqueueCommandsPerJob: number | null;
  /** The processing part: reads, acks, claim renewals, from the worker's start to the drain's end. */
  processCommandsPerJob: number | null;
  /** Per-command breakdown of the processing part. */
  commandsPerJob: Record<string, number>;
  /**
   * On a Redis Cluster: the Redis figures above for each master, whose sums they are (up to rounding;
   * in a median of rounds, each figure is its own median). Replicas are not counted.
   */
  redisMasters?: MasterCost[];
}

/** One master's share of a run's Redis cost, per job of the run (as the totals are). */
export interface MasterCost {
  /** "host:port". */
  node: string;
  /** The run's queues whose keys it holds. */
  queues: string[];
  cpuMsPerJob: number;
  redisCommandsPerJob: number;
  enqueueCommandsPerJob: number;
  processCommandsPerJob: number;
}

const POLL_MS = 5;
const IN_FLIGHT = 64;

export async function runOnce(ctx: BenchContext, system: System, o: RunOptions): Promise<RunResult> {
  await cleanPrefix(ctx.redis, ctx.prefix);
  const beforeFill = await snapshotNodes(ctx.redis);
  const enqueue = await fill(system, o);
  const enqueueCost = deltaNodes(beforeFill, await snapshotNodes(ctx.redis));
  const enqueueCommands = enqueueCost.total.total / enqueue.total;
  const child = system.start();
  const result: RunResult = {
    label: system.label, kind: system.kind,
    ...(system.threads !== undefined ? { threads: system.threads } : {}),
    ...(system.concurrency !== undefined ? { concurrency: system.concurrency } : {}),
    ...((system.processes ?? 1) > 1 ? { processes: system.processes } : {}),
    status: "ok", enqueue, processing: { jobs: 0, seconds: 0, jobsPerSec: 0, complete: false }, latency: null,
    peakRssMb: null, workerCpuMsPerJob: null, redisCpuMsPerJob: null,
    redisCommandsPerJob: null, enqueueCommandsPerJob: null, processCommandsPerJob: null, commandsPerJob: {},
  };
  let rss: PeakRss | undefined;
  try {
    const t0 = await deadline(child.ready, o.startTimeoutMs, "the worker did not say it was ready");
    rss = new PeakRss(child.pid);
    const drained = await drain(ctx, system, child, t0, o, result);
    result.enqueueCommandsPerJob = round(enqueueCommands, 2);
    result.redisCommandsPerJob = round(enqueueCommands + result.processCommandsPerJob!, 2);
    if (ctx.cluster) result.redisMasters = perMaster(ctx, enqueueCost.nodes, enqueue.total, drained.nodes, drained.jobs);
    if (result.status === "ok" && o.rate > 0) {
      // Offering more than half of what the worker drains would measure a queue building up; after a
      // cut-off drain, the sends would wait behind what is left and measure that backlog instead.
      if (!result.processing.complete) {
        result.note = `no latency run: the drain was cut off at --max-seconds with ${enqueue.total - result.processing.jobs} jobs left`;
      } else if (result.processing.jobsPerSec >= 2 * o.rate) {
        result.latency = await measureLatency(ctx, system, o.rate, o.latencySeconds, o.warmupSeconds, enqueue.total);
      } else {
        result.note = `no latency run: drains ${Math.round(result.processing.jobsPerSec)}/s, under 2x the offered ${o.rate}/s`;
      }
    }
  } catch (error) {
    if (result.status === "ok") result.status = "failed";
    result.note = (error as Error).message.split("\n")[0];
    o.log(`  ${system.label}: ${result.status}: ${(error as Error).message}`);
  } finally {
    const peak = rss?.stop() ?? null;
    result.peakRssMb = peak === null ? null : round(peak / 2 ** 20, 1);
    await child.stop();
    await cleanPrefix(ctx.redis, ctx.prefix);
  }
  return result;
}

async function fill(system: System, o: RunOptions) {
  let started = performance.now();
  for (let i = 0; i < o.jobs; i += o.chunk) {
    const payloads: BenchPayload[] = [];
    for (let j = i; j < Math.min(o.jobs, i + o.chunk); j++) payloads.push({ i: j });
    await system.enqueueBulk(payloads);
  }
  const bulkJobsPerSec = o.jobs / ((performance.now() - started) / 1000);
  started = performance.now();
  let next = o.jobs;
  const total = o.jobs + o.singleJobs;
  await Promise.all(Array.from({ length: IN_FLIGHT }, async () => {
    while (next < total) await system.enqueueOne({ i: next++ });
  }));
  const singleJobsPerSec = o.singleJobs / ((performance.now() - started) / 1000);
  return { bulkJobsPerSec: Math.round(bulkJobsPerSec), singleJobsPerSec: Math.round(singleJobsPerSec), total };
}

/**
 * Times the worker draining the pre-filled queue and charges CPU and commands to the jobs done.
 * Returns the Redis cost per server and the jobs it is charged to.
 */
async function drain(ctx: BenchContext, system: System, child: Child, t0: number, o: RunOptions, r: RunResult) {
  const total = o.jobs + o.singleJobs;
  const before = await snapshotNodes(ctx.redis);
  const cpuBefore = sampleTree(child.pid);
  let polls = 1;
  const first = await system.remaining();
  let left = first.left;
  let end = Date.now();
  let exited = false;
  void child.exited.then(() => (exited = true));
  for (;;) {
    await sleep(POLL_MS);
    const now = await system.remaining();
    polls++;
    end = Date.now();
    left = now.left;
    if (now.failed > 0) throw new Error(`${now.failed} jobs failed:\n${child.output().slice(-600)}`);
    if (left === 0 || end - t0 > o.maxSeconds * 1000) break;
    if (exited) throw new Error(`the worker exited:\n${child.output().slice(-600)}`);
    if (left === total && end - t0 > o.startTimeoutMs) {
      r.status = "did not start";
      throw new Error(`no job finished ${o.startTimeoutMs} ms after the worker said it was ready`);
    }
  }
  const cpuAfter = sampleTree(child.pid);
  const own = Object.fromEntries([...before.keys()].map((node) => {
    // A system that polls one server only (a single Redis) says so with pollCommands alone.
    const commands = system.pollCommandsAt?.[node] ?? (before.size === 1 ? system.pollCommands : {});
    return [node, Object.fromEntries(Object.entries(commands).map(([k, n]) => [k, n * polls]))];
  }));
  const { total: cost, nodes } = deltaNodes(before, await snapshotNodes(ctx.redis), own);
  const jobs = total - left;
  const inWindow = Math.max(1, first.left - left);
  const seconds = Math.max(1, end - t0) / 1000;
  r.processing = { jobs, seconds: round(seconds, 3), jobsPerSec: Math.round(jobs / seconds), complete: left === 0 };
  r.workerCpuMsPerJob = cpuBefore && cpuAfter ? round((cpuAfter.cpuMs - cpuBefore.cpuMs) / inWindow, 4) : null;
  r.redisCpuMsPerJob = round(cost.cpuMs / inWindow, 4);
  r.processCommandsPerJob = round(cost.total / inWindow, 2);
  r.commandsPerJob = Object.fromEntries(Object.entries(cost.calls)
    .map(([k, n]) => [k, round(n / inWindow, 3)] as const)
    .filter(([, n]) => n >= 0.005)
    .sort((a, b) => b[1] - a[1]));
  return { nodes, jobs: inWindow };
}

/** Each master's enqueue and processing cost, per job as the totals are: enqueue over the jobs sent, the rest over the drained. */
function perMaster(ctx: BenchContext, enqueue: Map<string, RedisCost>, sent: number, drained: Map<string, RedisCost>,
  jobs: number): MasterCost[] {
  return [...drained].map(([node, cost]) => {
    const enq = (enqueue.get(node)?.total ?? 0) / sent;
    const proc = cost.total / jobs;
    return {
      node, queues: ctx.queues.filter((q) => q.node === node).map((q) => q.name),
      cpuMsPerJob: round(cost.cpuMs / jobs, 4), redisCommandsPerJob: round(enq + proc, 2),
      enqueueCommandsPerJob: round(enq, 2), processCommandsPerJob: round(proc, 2),
    };
  });
}

/**
 * SCAN + UNLINK every key holding the bench's prefix (never FLUSH: the database is not ours), on
 * every master of a cluster.
 */
export async function cleanPrefix(redis: RedisClient, prefix: string): Promise<void> {
  const cluster = isCluster(redis);
  await Promise.all(masterNodes(redis).map(async ({ client }) => {
    let cursor = "0";
    do {
      const [next, keys] = await client.scan(cursor, "MATCH", `*${prefix}*`, "COUNT", 1000);
      cursor = next;
      // A cluster node refuses an UNLINK of keys in several slots, and a prefix's keys are in many.
      for (const group of cluster ? bySlot(keys) : [keys]) if (group.length > 0) await client.unlink(...group);
    } while (cursor !== "0");
  }));
}

function bySlot(keys: string[]): string[][] {
  const groups = new Map<number, string[]>();
  for (const key of keys) {
    const slot = keySlot(key);
    const group = groups.get(slot);
    if (group) group.push(key);
    else groups.set(slot, [key]);
  }
  return [...groups.values()];
}

function deadline<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} within ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
export const round = (n: number, digits: number) => Math.round(n * 10 ** digits) / 10 ** digits;
