/**
 * What a chaos run recorded, as plain data: the sends, the run log the handlers wrote outside Redis,
 * the worker processes and their notable log lines, the faults, and what Redis held at the end. The
 * checker (checker.ts) is pure functions over this, so it can be tested on small hand-made histories.
 */
import type { RunLine } from "./app.ts";

export type FaultKind = "kill9" | "stall" | "clientKill" | "redisRestart";

export interface Fault {
  kind: FaultKind;
  /** When it began (epoch ms): the SIGKILL, the SIGSTOP, the CLIENT KILL, the redis-server SIGKILL. */
  t: number;
  /** When it ended: the SIGCONT of a stall, redis answering again after a restart. */
  until?: number;
  /** The worker it hit (kill9, stall). */
  pid?: number;
  detail?: string;
}

export interface Send {
  id: string;
  actor: string;
  /** When send() was called. */
  t: number;
  /** resolved: the job exists; rejected or pending (never settled): it may or may not. */
  outcome: "resolved" | "rejected" | "pending";
  duplicate?: boolean;
  error?: string;
}

/** A worker process as the harness saw it. */
export interface WorkerProc {
  pid: number;
  startedAt: number;
  /** When the harness sent it SIGKILL. */
  killedAt?: number;
  /** When the harness saw it exit (however it died). */
  exitedAt?: number;
  /** Exits the harness did not cause (not SIGKILL by a fault, not the final SIGTERM). */
  unexpected?: boolean;
}

/**
 * A worker's own log lines that the checker needs: `lease:lost` and `outcome:discarded` (a run that
 * lost its claim, and an outcome not applied because of it), and `host:stopped` (a thread or process
 * stopped or dead, with the jobs it ran: those runs end there without an `end` line).
 */
export interface WorkerEvent {
  pid: number;
  t: number;
  event: "lease:lost" | "outcome:discarded" | "host:stopped";
  ids: string[];
  /** The attempt a lease:lost or outcome:discarded line names (dray logs it), so it finds its run. */
  attempt?: number;
}

export interface Letter {
  /** The dead-letter entry's id. */
  letterId: string;
  job: string;
  actor: string;
  error: { name: string; message?: string };
  /** When it was dead-lettered (Redis clock, ms). */
  at: number;
}

export interface FinalRecord {
  id: string;
  status: string;
  result?: unknown;
  error?: { name?: string; message?: string };
}

export interface LimitSlot {
  member: string;
  /** When the lease runs out (ms). */
  expires: number;
}

export interface History {
  sends: Send[];
  runLines: RunLine[];
  workers: WorkerProc[];
  workerEvents: WorkerEvent[];
  faults: Fault[];
  /** Records of sent jobs (live status), by id; absent: no record. */
  records: Map<string, FinalRecord>;
  /** Ids of every record key found in Redis (to find jobs nobody sent). */
  recordIds: string[];
  letters: Letter[];
  /** The rate-limited actor: its name, its limit and its slot zset at the end. */
  limited: { actor: string; limit: number; slots: LimitSlot[] };
  /** The actor whose runs are busy loops (dead only as TimeLimitExceeded or WorkerCrashed). */
  busyActor: string;
  /** When the run ended: runs still open then count as open until here. */
  horizon: number;
}

export type RunEnd = "self" | "kill" | "host-stopped" | "exit" | "open";

export interface Run {
  job: string;
  run: string;
  pid: number;
  actor: string;
  attempt: number;
  start: number;
  end: number;
  /** What ended it: its own `end` line, a kill -9 of its worker, its thread stopped, its worker's exit, nothing. */
  endedBy: RunEnd;
  /** Set when it ended by itself. */
  ok?: boolean;
  error?: string;
  /** Its worker logged `lease:lost` for it. */
  lostLease?: boolean;
  /** Its worker logged `outcome:discarded` for it: its outcome was not applied. */
  discarded?: boolean;
}

/**
 * Pairs start and end lines into runs. A run without an end line ends where its thread was stopped
 * (a busy loop, or a neighbour of one), where its worker was killed or exited, else at the horizon.
 */
export function buildRuns(h: Pick<History, "runLines" | "workers" | "workerEvents" | "horizon">): Run[] {
  const ends = new Map<string, Extract<RunLine, { ev: "end" }>>();
  for (const l of h.runLines) if (l.ev === "end") ends.set(l.run, l);
  const workers = new Map(h.workers.map((w) => [w.pid, w]));
  const stops = h.workerEvents.filter((e) => e.event === "host:stopped");
  const runs: Run[] = [];
  for (const l of h.runLines) {
    if (l.ev !== "start") continue;
    const base = { job: l.job, run: l.run, pid: l.pid, actor: l.actor, attempt: l.attempt, start: l.t };
    const end = ends.get(l.run);
    if (end) {
      runs.push({ ...base, end: end.t, endedBy: "self", ok: end.ok, ...(end.error ? { error: end.error } : {}) });
      continue;
    }
    // Pino stamps whole ms; the run log, fractions of one.
    const stop = stops.filter((e) => e.pid === l.pid && e.t >= Math.floor(l.t) && e.ids.includes(l.job)).sort((a, b) => a.t - b.t)[0];
    const w = workers.get(l.pid);
    const death = w?.killedAt ?? w?.exitedAt;
    if (stop && (death === undefined || stop.t <= death)) runs.push({ ...base, end: Math.max(stop.t, l.t), endedBy: "host-stopped" });
    else if (death !== undefined) runs.push({ ...base, end: death, endedBy: w?.killedAt !== undefined ? "kill" : "exit" });
    else runs.push({ ...base, end: h.horizon, endedBy: "open" });
  }
  runs.sort((a, b) => a.start - b.start);
  attribute(runs, h.workerEvents);
  return runs;
}

/**
 * A worker logs lease:lost and outcome:discarded by job id and attempt, and may run one job more than
 * once: each event belongs to the latest run of that job and attempt on that worker that had started
 * by then. (An outcome discarded for attempt 1, say a retry whose settle found the job already moved
 * on, is not attempt 2's, which may have run on the same worker since.)
 */
function attribute(runs: Run[], events: WorkerEvent[]): void {
  const byWorkerJob = new Map<string, Run[]>();
  for (const r of runs) {
    const key = `${r.pid} ${r.job}`;
    const list = byWorkerJob.get(key);
    if (list) list.push(r);
    else byWorkerJob.set(key, [r]);
  }
  for (const e of events) {
    if (e.event === "host:stopped") continue;
    for (const job of e.ids) {
      // Runs are sorted by start; pino stamps whole ms.
      const run = byWorkerJob.get(`${e.pid} ${job}`)
        ?.filter((r) => Math.floor(r.start) <= e.t && (e.attempt === undefined || r.attempt === e.attempt)).at(-1);
      if (!run) continue;
      if (e.event === "lease:lost") run.lostLease = true;
      else run.discarded = true;
    }
  }
}

/** Most runs open at one instant, and the runs open then (evidence). Touching ends do not overlap. */
export function peakOverlap(runs: Run[]): { most: number; at: number; open: Run[] } {
  const edges = runs.flatMap((r) => [{ t: r.start, d: 1, r }, { t: r.end, d: -1, r }])
    .sort((a, b) => a.t - b.t || a.d - b.d);
  const open = new Set<Run>();
  let best = { most: 0, at: 0, open: [] as Run[] };
  for (const e of edges) {
    if (e.d > 0) open.add(e.r);
    else open.delete(e.r);
    if (open.size > best.most) best = { most: open.size, at: e.t, open: [...open] };
  }
  return best;
}

export function describeRun(r: Run, origin = 0): string {
  const how = r.endedBy === "self" ? (r.ok ? "ok" : `threw ${r.error ?? "?"}`) : r.endedBy;
  const marks = `${r.lostLease ? ", lease lost" : ""}${r.discarded ? ", discarded" : ""}`;
  return `run ${r.run} (attempt ${r.attempt}, pid ${r.pid}) ${fmt(r.start - origin)}-${fmt(r.end - origin)} ${how}${marks}`;
}

function fmt(ms: number): string {
  return `${(ms / 1000).toFixed(3)}s`;
}
