/** The chaos run's report as text: what was done to the system, then a verdict per invariant. */
import { machineLine, type MachineInfo } from "../machine.ts";
import type { Verdict } from "./checker.ts";
import type { Fault, FaultKind } from "./history.ts";

/** What one chaos run did and found: printed by formatReport, written as JSON with --json. */
export interface ChaosReport {
  meta: MachineInfo & { command: string; date: string; seed: number; durationSec: number; workers: number; threads: number;
    concurrency: number; visibilityTimeout: number; rate: number; faultKinds: FaultKind[]; redisPort: number };
  sends: { total: number; resolved: number; rejected: number; pending: number; duplicates: number };
  runs: number;
  /** Run-log lines that were not JSON (a worker killed mid-write). */
  badLines: number;
  faults: { byKind: Record<FaultKind, number>; list: Fault[] };
  statuses: Record<string, number>;
  /** What the queue held after the drain: anything here ran, or would run, again. */
  leftover: { ready: number; running: number; delayed: number; dead: number };
  durations: { faultsSec: number; drainSec: number; totalSec: number; drained: boolean };
  /** When the drain was cut off: dray's connections then (CLIENT LIST: name, last command, idle s, flags). */
  stuckClients?: string[];
  verdicts: Verdict[];
  held: boolean;
  /** The temp directory, when kept. */
  dir?: string;
}

/** Evidence lines printed per verdict; the JSON report has them all (up to the checker's cap). */
const printedEvidence = 12;
const printedOffenders = 30;

export function formatReport(r: ChaosReport): string[] {
  const f = r.faults.byKind;
  const statuses = Object.entries(r.statuses).sort().map(([k, n]) => `${k} ${n}`).join(", ") || "none";
  const lines = [
    "",
    machineLine(r.meta),
    `faults: ${r.faults.list.length} injected: kill -9 ${f.kill9}, SIGSTOP ${f.stall}, CLIENT KILL ${f.clientKill}, redis restart ${f.redisRestart}`,
    `jobs: ${r.sends.total} sent (${r.sends.resolved} resolved, ${r.sends.rejected} rejected, ${r.sends.pending} never settled` +
      `${r.sends.duplicates > 0 ? `, ${r.sends.duplicates} answered "duplicate" on a fresh id` : ""}) · ${r.runs} runs` +
      `${r.badLines > 0 ? ` (${r.badLines} torn log lines)` : ""} · final status: ${statuses}`,
    `queue after the drain: ready ${r.leftover.ready}, running ${r.leftover.running}, delayed ${r.leftover.delayed}, dead ${r.leftover.dead}`,
    `duration: ${r.durations.faultsSec} s of faults, ${r.durations.drainSec} s drain` +
      `${r.durations.drained ? "" : " (cut off: see above)"}, ${r.durations.totalSec} s in all`,
    ...(r.stuckClients ? [`dray's connections when the drain was cut off:`, ...r.stuckClients.map((c) => `  ${c}`)] : []),
    "invariants:",
  ];
  for (const v of r.verdicts) {
    const head = `  ${v.held ? "held    " : "VIOLATED"} ${v.n}. ${v.name}`;
    lines.push(v.held ? `${head} (${v.note})` : `${head}: ${v.offenders.length} offender(s)`);
    if (v.held) continue;
    lines.push(`      ${v.note}`);
    const shown = v.offenders.slice(0, printedOffenders).join(", ");
    lines.push(`      offenders: ${shown}${v.offenders.length > printedOffenders ? `, ... (${v.offenders.length - printedOffenders} more)` : ""}`);
    for (const e of v.evidence.slice(0, printedEvidence)) lines.push(`      - ${e}`);
    if (v.evidence.length > printedEvidence) lines.push(`      ... ${v.evidence.length - printedEvidence} more lines in the JSON report`);
  }
  const bad = r.verdicts.filter((v) => !v.held).map((v) => v.n);
  lines.push(bad.length === 0
    ? `verdict: all ${r.verdicts.length} invariants held (seed ${r.meta.seed})`
    : `verdict: invariant(s) ${bad.join(", ")} violated (seed ${r.meta.seed}; replay with CHAOS_SEED=${r.meta.seed})`);
  return lines;
}
