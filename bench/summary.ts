/**
 * From runs to conclusions: the median of repeated runs, the recommended cell, and the
 * targets as PASS / MISS lines.
 */
import type { Latency, Percentiles } from "./latency.ts";
import type { MasterCost, RunResult } from "./runner.ts";
import type { Scenario } from "./scenarios.ts";

/** Runs of one system in the interleaved rounds, and their median. */
export interface Reference {
  label: string;
  kind: RunResult["kind"];
  runs: RunResult[];
  median: RunResult;
}

export function median(values: number[]): number {
  const s = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

const nullableMedian = (xs: Array<number | null>) => {
  const m = median(xs.filter((x): x is number => x !== null));
  return Number.isNaN(m) ? null : m;
};

/** The median run: every metric is the median over the rounds that worked (the first failure otherwise). */
export function medianRun(runs: RunResult[]): RunResult {
  const ok = runs.filter((r) => r.status === "ok");
  if (ok.length === 0) return runs[0]!;
  const m = (pick: (r: RunResult) => number) => median(ok.map(pick));
  const lat = ok.map((r) => r.latency).filter((l): l is Latency => l !== null);
  const pct = (pick: (l: Latency) => Percentiles): Percentiles => ({
    p50: median(lat.map((l) => pick(l).p50)), p95: median(lat.map((l) => pick(l).p95)), p99: median(lat.map((l) => pick(l).p99)),
  });
  return {
    ...ok[0]!,
    enqueue: { bulkJobsPerSec: m((r) => r.enqueue.bulkJobsPerSec), singleJobsPerSec: m((r) => r.enqueue.singleJobsPerSec) },
    processing: {
      jobs: m((r) => r.processing.jobs), seconds: m((r) => r.processing.seconds),
      jobsPerSec: Math.round(m((r) => r.processing.jobsPerSec)), complete: ok.every((r) => r.processing.complete),
    },
    latency: lat.length === 0 ? null : {
      rate: lat[0]!.rate, jobs: lat[0]!.jobs, start: pct((l) => l.start), complete: pct((l) => l.complete),
      warmup: { jobs: lat[0]!.warmup.jobs, startMax: Math.max(...lat.map((l) => l.warmup.startMax)) },
    },
    peakRssMb: nullableMedian(ok.map((r) => r.peakRssMb)),
    workerCpuMsPerJob: nullableMedian(ok.map((r) => r.workerCpuMsPerJob)),
    redisCpuMsPerJob: nullableMedian(ok.map((r) => r.redisCpuMsPerJob)),
    redisCommandsPerJob: nullableMedian(ok.map((r) => r.redisCommandsPerJob)),
    enqueueCommandsPerJob: nullableMedian(ok.map((r) => r.enqueueCommandsPerJob)),
    processCommandsPerJob: nullableMedian(ok.map((r) => r.processCommandsPerJob)),
    ...(ok[0]!.redisMasters ? { redisMasters: medianMasters(ok) } : {}),
  };
}

/** Each master's figures, each the median over the rounds: they need not add up to the median totals. */
function medianMasters(ok: RunResult[]): MasterCost[] {
  return ok[0]!.redisMasters!.map((first) => {
    const same = ok.map((r) => r.redisMasters?.find((m) => m.node === first.node)).filter((m): m is MasterCost => m !== undefined);
    const m = (pick: (c: MasterCost) => number) => median(same.map(pick));
    return { ...first, cpuMsPerJob: m((c) => c.cpuMsPerJob), redisCommandsPerJob: m((c) => c.redisCommandsPerJob),
      enqueueCommandsPerJob: m((c) => c.enqueueCommandsPerJob), processCommandsPerJob: m((c) => c.processCommandsPerJob) };
  });
}

export interface Recommendation {
  /** Worker processes (`--processes`), 1 unless the sweep had more. */
  processes: number;
  threads: number;
  concurrency: number;
  jobsPerSec: number;
  line: string;
}

/**
 * The cheapest cell within 5% of the best throughput: fewer processes, then fewer threads first (memory), then lower
 * concurrency (less work in flight to lose on a crash), then the lower p99.
 */
export function recommend(cells: RunResult[], scenario: Scenario): Recommendation | undefined {
  const ok = cells.filter((c) => c.status === "ok" && c.threads !== undefined && c.concurrency !== undefined);
  if (ok.length === 0) return undefined;
  const best = Math.max(...ok.map((c) => c.processing.jobsPerSec));
  const pick = ok.filter((c) => c.processing.jobsPerSec >= 0.95 * best).sort((a, b) =>
    (a.processes ?? 1) - (b.processes ?? 1) || a.threads! - b.threads! || a.concurrency! - b.concurrency! ||
    (a.latency?.start.p99 ?? Infinity) - (b.latency?.start.p99 ?? Infinity))[0]!;
  return {
    processes: pick.processes ?? 1, threads: pick.threads!, concurrency: pick.concurrency!, jobsPerSec: pick.processing.jobsPerSec,
    line: `for this scenario (${scenario}) use ${(pick.processes ?? 1) > 1 ? `--processes ${pick.processes} ` : ""}--threads ${pick.threads} --concurrency ${pick.concurrency} ` +
      `(${fmt(pick.processing.jobsPerSec)} jobs/s; best cell ${fmt(best)} jobs/s)`,
  };
}

/**
 * Splits dray's gap to the bare loop: what handing each batch to a thread and back costs the loop
 * (the thread-hop loop against the bare one), and what dray does beyond that.
 */
export function isolationLine(references: Reference[], dray: RunResult | undefined): string | undefined {
  const jps = (kind: RunResult["kind"]) => {
    const r = references.find((x) => x.kind === kind)?.median;
    return r?.status === "ok" ? r.processing.jobsPerSec : undefined;
  };
  const bare = jps("baseline");
  const hop = jps("hop");
  if (!bare || !hop) return undefined;
  const own = dray?.status === "ok" ? `; dray = ${(dray.processing.jobsPerSec / hop).toFixed(2)}x the thread-hop loop` : "";
  return `isolation alone: the thread-hop loop does ${(hop / bare).toFixed(2)}x the bare loop${own}`;
}

export interface TargetResult {
  name: string;
  status: "PASS" | "MISS" | "n/a";
  detail: string;
}

export interface TargetInputs {
  scenario: Scenario;
  isolation: string;
  dray: RunResult | undefined;
  baseline: RunResult | undefined;
  bullInProcess: RunResult | undefined;
  /** The better of BullMQ worker-threads at concurrency 2 and 10. */
  bullThreads: RunResult | undefined;
  /** dray and BullMQ worker-threads, both at concurrency 10: the memory target's pair. */
  drayAt10?: RunResult | undefined;
  bullThreadsAt10?: RunResult | undefined;
  /** io scenario only: dray at --threads 2 --concurrency 200, and noop at the same setting. */
  io?: { cell: RunResult; noopCeiling: number };
}

export function evaluateTargets(x: TargetInputs): TargetResult[] {
  const out: TargetResult[] = [];
  const noop = x.scenario === "noop";
  const ok = (r: RunResult | undefined): r is RunResult => r !== undefined && r.status === "ok";
  const ratio = (name: string, a: number | null | undefined, b: number | null | undefined, want: number,
    higherIsBetter: boolean, needs: string) => {
    if (!noop) return out.push({ name, status: "n/a", detail: `targets are for the noop scenario` });
    if (a == null || b == null || !Number.isFinite(a) || !Number.isFinite(b) || b === 0) {
      return out.push({ name, status: "n/a", detail: `needs ${needs}` });
    }
    const r = a / b;
    const pass = higherIsBetter ? r >= want : r <= want;
    // A ratio that rounds to the wanted one shows a third decimal, so that "MISS ... 0.50x (want <= 0.5x)"
    // cannot happen.
    const shown = r.toFixed(Number(r.toFixed(2)) === want ? 3 : 2);
    out.push({ name, status: pass ? "PASS" : "MISS", detail: `${fmtNum(a)} / ${fmtNum(b)} = ${shown}x (want ${higherIsBetter ? ">=" : "<="} ${want}x)` });
  };
  const d = ok(x.dray) ? x.dray : undefined;
  const isoNote = x.isolation === "inline" ? " [dray ran with --isolation inline: no hard limits, not the target's setting]" : "";
  ratio(`dray >= 4x BullMQ worker-threads${isoNote}`, d?.processing.jobsPerSec, ok(x.bullThreads) ? x.bullThreads.processing.jobsPerSec : null, 4, true,
    x.bullThreads?.status === "did not start" ? "a BullMQ worker-threads run (it did not start)" : "--compare bullmq");
  ratio(`dray >= 1.5x BullMQ in-process c50${isoNote}`, d?.processing.jobsPerSec, ok(x.bullInProcess) ? x.bullInProcess.processing.jobsPerSec : null, 1.5, true, "--compare bullmq");
  ratio(`dray >= 0.8x bare streams loop${isoNote}`, d?.processing.jobsPerSec, ok(x.baseline) ? x.baseline.processing.jobsPerSec : null, 0.8, true, "the baseline run");
  if (!noop) out.push({ name: "<= 5 Redis commands per job", status: "n/a", detail: "targets are for the noop scenario" });
  else if (d?.redisCommandsPerJob == null) out.push({ name: "<= 5 Redis commands per job", status: "n/a", detail: "needs a dray run" });
  else out.push({ name: "<= 5 Redis commands per job", status: d.redisCommandsPerJob <= 5 ? "PASS" : "MISS", detail: `${fmtNum(d.redisCommandsPerJob)} commands/job (enqueue ${fmtNum(d.enqueueCommandsPerJob ?? NaN)} + processing ${fmtNum(d.processCommandsPerJob ?? NaN)})` });
  ratio("bulk enqueue >= 2x BullMQ addBulk", d?.enqueue.bulkJobsPerSec, ok(x.bullInProcess) ? x.bullInProcess.enqueue.bulkJobsPerSec : null, 2, true, "--compare bullmq");
  ratio("enqueue->start p99 <= BullMQ in-process p99", d?.latency?.start.p99, ok(x.bullInProcess) ? x.bullInProcess.latency?.start.p99 : null, 1, false, "--compare bullmq and latency runs");
  ratio("worker RSS <= 0.5x BullMQ worker-threads, both at concurrency 10", ok(x.drayAt10) ? x.drayAt10.peakRssMb : null,
    ok(x.bullThreadsAt10) ? x.bullThreadsAt10.peakRssMb : null, 0.5, false, "dray and BullMQ worker-threads runs at concurrency 10");
  if (x.io) {
    const want = 0.9 * Math.min(20_000, x.io.noopCeiling);
    const got = x.io.cell.processing.jobsPerSec;
    out.push({ name: "io t2 c200 >= 90% of min(20k, noop ceiling)", status: got >= want ? "PASS" : "MISS",
      detail: `${fmt(got)} jobs/s vs ${fmt(want)} (noop ceiling ${fmt(x.io.noopCeiling)})` });
  } else if (x.scenario === "io") {
    out.push({ name: "io t2 c200 >= 90% of min(20k, noop ceiling)", status: "n/a", detail: "needs --threads 2 --concurrency 200 in the sweep" });
  }
  return out;
}

export const fmt = (n: number) => Math.round(n).toLocaleString("en-US");
const fmtNum = (n: number) => (Math.abs(n) >= 100 ? fmt(n) : String(Math.round(n * 100) / 100));
