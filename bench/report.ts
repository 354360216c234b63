/** Text output: progress lines, the results table, the reference table with ratios, the targets. */
import type { RunResult } from "./runner.ts";
import { fmt, type Reference, type TargetResult } from "./summary.ts";

const num = (n: number | null | undefined, digits = 0) =>
  n == null || !Number.isFinite(n) ? "-" : digits === 0 ? fmt(n) : n.toFixed(digits);
const us = (ms: number | null) => (ms == null ? "-" : (ms * 1000).toFixed(1));
const pcts = (p: { p50: number; p95: number; p99: number } | undefined) =>
  p ? `${p.p50.toFixed(1)}/${p.p95.toFixed(1)}/${p.p99.toFixed(1)}` : "-";

/** One line per finished run, while the bench goes. */
export function progressLine(r: RunResult): string {
  if (r.status !== "ok") return `${r.label}: ${r.status}${r.note ? ` (${r.note})` : ""}`;
  const lat = r.latency ? ` · start p99 ${r.latency.start.p99.toFixed(1)} ms` +
    (r.latency.warmup.jobs > 0 ? ` (warm-up ${r.latency.warmup.jobs} jobs, worst ${r.latency.warmup.startMax.toFixed(1)} ms)` : "") : "";
  return `${r.label}: processed ${fmt(r.processing.jobs)} in ${r.processing.seconds.toFixed(2)} s = ${fmt(r.processing.jobsPerSec)} jobs/s` +
    ` · enqueue bulk ${fmt(r.enqueue.bulkJobsPerSec)}/s, single ${fmt(r.enqueue.singleJobsPerSec)}/s${lat}` +
    ` · ${num(r.redisCommandsPerJob, 2)} cmds/job · RSS ${num(r.peakRssMb, 1)} MB`;
}

const HEAD = ["enq bulk/s", "enq 1x64/s", "proc jobs/s", "start p50/95/99 ms", "done p50/95/99 ms",
  "RSS MB", "wCPU us/job", "rCPU us/job", "cmds/job enq+proc"];

function metrics(r: RunResult): string[] {
  if (r.status !== "ok") return [r.status, "", "", "", "", "", "", "", ""];
  return [
    num(r.enqueue.bulkJobsPerSec), num(r.enqueue.singleJobsPerSec),
    num(r.processing.jobsPerSec) + (r.processing.complete ? "" : "*"),
    pcts(r.latency?.start), pcts(r.latency?.complete), num(r.peakRssMb, 1),
    us(r.workerCpuMsPerJob), us(r.redisCpuMsPerJob),
    r.enqueueCommandsPerJob == null ? "-" : `${num(r.enqueueCommandsPerJob, 2)}+${num(r.processCommandsPerJob, 2)}`,
  ];
}

export function table(head: string[], rows: string[][]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ");
  return [line(head), widths.map((w) => "-".repeat(w)).join("  "), ...rows.map(line)].join("\n");
}

export function sweepTable(cells: RunResult[]): string {
  // A processes column only when the sweep had more than one process per worker.
  const procs = cells.some((c) => (c.processes ?? 1) > 1);
  return table([...(procs ? ["procs"] : []), "threads", "conc", ...HEAD], cells.map((c) =>
    [...(procs ? [String(c.processes ?? 1)] : []), String(c.threads ?? "-"), String(c.concurrency ?? "-"), ...metrics(c)]));
}

/** The interleaved reference runs (medians), each with dray's throughput ratio to it. */
export function referenceTable(refs: Reference[], dray: RunResult | undefined): string {
  const ratio = (r: RunResult) => dray && dray.status === "ok" && r.status === "ok" && r.processing.jobsPerSec > 0
    ? `${(dray.processing.jobsPerSec / r.processing.jobsPerSec).toFixed(2)}x` : "-";
  return table(["system (median of rounds)", "rounds", ...HEAD, "dray/this"],
    refs.map((ref) => [ref.label, String(ref.runs.length), ...metrics(ref.median), ref.median === dray ? "1.00x" : ratio(ref.median)]));
}

/**
 * On a Redis Cluster: each run's Redis cost per master (the table's rCPU and cmds/job are their sums),
 * with the run's queues on that master.
 */
export function mastersTable(runs: Array<{ label: string; run: RunResult }>): string {
  const rows = runs.flatMap(({ label, run }) => (run.status === "ok" ? run.redisMasters ?? [] : []).map((m) => [
    label, m.node, m.queues.join(",") || "-", us(m.cpuMsPerJob),
    `${num(m.enqueueCommandsPerJob, 2)}+${num(m.processCommandsPerJob, 2)}`,
  ]));
  return `Redis cost per master (the rCPU and cmds/job above are the masters' sums; replicas are not counted):\n` +
    table(["run", "master", "queues", "rCPU us/job", "cmds/job enq+proc"], rows);
}

export function targetLines(targets: TargetResult[]): string {
  return targets.map((t) => `${t.status.padEnd(4)}  ${t.name}: ${t.detail}`).join("\n");
}

export const LEGEND = `columns: enq bulk/s = sendMany/addBulk in chunks of 1000; enq 1x64/s = single sends, 64 in flight;
proc jobs/s = pre-filled queue drained from worker ready to empty (* = cut off at --max-seconds);
start/done = enqueue->handler start / handler return at the offered --rate; RSS = peak of the worker's
process tree; wCPU / rCPU = worker tree / Redis CPU per processed job; cmds/job = Redis commands per
job for enqueueing + processing it (INFO commandstats deltas, commands inside Lua scripts included,
server-wide: other clients of the same Redis add to it).`;
