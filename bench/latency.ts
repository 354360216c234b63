/**
 * Latency at a fixed offered rate: jobs are sent one by one on a schedule (not as fast as possible),
 * each carrying its send time; the handler appends "<start-latency> <complete-latency>" to a list.
 * "complete" is when the handler returned (the ack follows in the next batch).
 *
 * The first `warmupSeconds` of jobs go to a list of their own and are left out of the percentiles:
 * they carry one-time costs of the worker's first jobs that use Redis, such as a thread loading its
 * Redis client (about 50 ms on Bun, dray loads it on first use), which in a 3 s run at 500 jobs/s
 * would be the p99 on their own. Their worst start latency is reported next to the percentiles.
 */
import { nowMs, type BenchPayload } from "./scenarios.ts";
import type { BenchContext, System } from "./systems.ts";

export interface Percentiles {
  p50: number;
  p95: number;
  p99: number;
}

export interface Latency {
  /** Offered jobs/s. */
  rate: number;
  jobs: number;
  /** enqueue -> handler started, ms. */
  start: Percentiles;
  /** enqueue -> handler returned, ms. */
  complete: Percentiles;
  /** The jobs sent first and left out of the percentiles, and the worst start latency among them, ms. */
  warmup: { jobs: number; startMax: number };
}

const WAIT_MS = 30_000;

export async function measureLatency(ctx: BenchContext, system: System, rate: number, seconds: number,
  warmupSeconds: number, firstIndex: number): Promise<Latency> {
  // One hash tag for both lists, so that a Redis Cluster takes the DEL of both.
  const key = `{${ctx.prefix}:latency}`;
  const warmKey = `${key}:warmup`;
  await ctx.redis.del(key, warmKey);
  const n = Math.max(1, Math.round(rate * seconds));
  const w = Math.round(rate * warmupSeconds);
  const interval = 1000 / rate;
  const began = performance.now();
  const sends: Promise<unknown>[] = [];
  for (let i = 0; i < w + n;) {
    // Send everything that is due (a late timer must not lower the offered rate), then sleep.
    const due = Math.min(w + n, Math.floor((performance.now() - began) / interval) + 1);
    for (; i < due; i++) {
      const payload: BenchPayload = { i: firstIndex + i, t: nowMs(), k: i < w ? warmKey : key };
      sends.push(system.enqueueOne(payload));
    }
    if (i < w + n) await sleep(Math.max(0, i * interval - (performance.now() - began)));
  }
  await Promise.all(sends);
  const deadline = Date.now() + WAIT_MS;
  while ((await ctx.redis.llen(key)) < n || (await ctx.redis.llen(warmKey)) < w) {
    if (Date.now() > deadline) throw new Error(`latency run: not all ${w + n} jobs finished within ${WAIT_MS} ms`);
    await sleep(20);
  }
  const [start, complete] = parse(await ctx.redis.lrange(key, 0, -1));
  const [warmStart] = parse(await ctx.redis.lrange(warmKey, 0, -1));
  await ctx.redis.del(key, warmKey);
  return {
    rate, jobs: n, start: percentiles(start), complete: percentiles(complete),
    warmup: { jobs: w, startMax: warmStart.length ? Math.round(Math.max(...warmStart) * 100) / 100 : NaN },
  };
}

/** "<start> <complete>" lines into the two lists of ms. */
function parse(lines: string[]): [start: number[], complete: number[]] {
  const start: number[] = [];
  const complete: number[] = [];
  for (const line of lines) {
    const [s, c] = line.split(" ");
    start.push(Number(s));
    complete.push(Number(c));
  }
  return [start, complete];
}

export function percentiles(values: number[]): Percentiles {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (q: number) => {
    if (sorted.length === 0) return NaN;
    const v = sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
    return Math.round(v * 100) / 100;
  };
  return { p50: at(0.5), p95: at(0.95), p99: at(0.99) };
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
