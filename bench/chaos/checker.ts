/**
 * The chaos run's checker, in the manner of Jepsen's queue checkers: from the history a run recorded
 * outside the system under test (history.ts), a verdict per delivery promise, with the offending job
 * ids and the evidence. Pure functions: test/chaos.test.ts runs them on small hand-made histories.
 */
import { buildRuns, describeRun, peakOverlap, type History, type Letter, type Run } from "./history.ts";

export interface Verdict {
  /** 1-6, as numbered in bench/README.md ("Chaos"). */
  n: number;
  name: string;
  held: boolean;
  /** Offending job ids (or slot members, for a rate limit's leftovers). */
  offenders: string[];
  /** One line per finding. */
  evidence: string[];
  /** What was counted, also when it held. */
  note: string;
}

export interface CheckResult {
  verdicts: Verdict[];
  runs: Run[];
  statuses: Record<string, number>;
}

/** Lines of evidence kept per verdict; the offenders list is always whole. */
const maxEvidence = 200;
/** A message is dead-lettered as WorkerCrashed after this many lost claims; each needs a death or stall. */
export const LOST_CLAIMS_TO_DIE = 3;

export function check(h: History): CheckResult {
  const runs = buildRuns(h);
  const origin = originOf(h);
  const ctx: Ctx = { h, runs, origin, byJob: group(runs, (r) => r.job), letters: group(h.letters, (l) => l.job) };
  const statuses: Record<string, number> = {};
  for (const r of h.records.values()) statuses[r.status] = (statuses[r.status] ?? 0) + 1;
  return {
    verdicts: [everyJobFinal(ctx), noOverlapWithoutLostLease(ctx), crashLettersHaveDeaths(ctx), rateLimitHeld(ctx),
      statusMatchesLastRun(ctx), workersKeptWorking(ctx)],
    runs,
    statuses,
  };
}

interface Ctx {
  h: History;
  runs: Run[];
  origin: number;
  byJob: Map<string, Run[]>;
  letters: Map<string, Letter[]>;
}

/** 1. Every resolved send reached completed or dead (and then is in the DLQ); no job was invented. */
export function everyJobFinal({ h, runs, letters }: Ctx): Verdict {
  const v = verdict(1, "every resolved job is completed or dead-lettered; none vanished, none invented");
  const sent = new Set(h.sends.map((s) => s.id));
  for (const s of h.sends) {
    const rec = h.records.get(s.id);
    const uncertain = s.outcome !== "resolved";
    if (!rec) {
      if (!uncertain) flag(v, s.id, `${s.id}: send resolved, but Redis has no record of it (vanished)`);
      continue;
    }
    const tag = uncertain ? ` (send ${s.outcome}, but the job exists)` : "";
    if (rec.status !== "completed" && rec.status !== "dead") flag(v, s.id, `${s.id}: status ${rec.status}${tag}, not final`);
    else if (rec.status === "dead" && !letters.has(s.id)) flag(v, s.id, `${s.id}: dead${tag}, but not in the dead-letter queue`);
  }
  const seen = new Set([...h.recordIds, ...h.letters.map((l) => l.job), ...runs.map((r) => r.job)]);
  for (const id of seen) if (!sent.has(id)) flag(v, id, `${id}: in Redis or the run log, but never sent`);
  const resolved = h.sends.filter((s) => s.outcome === "resolved").length;
  v.note = `${resolved} resolved, ${h.sends.length - resolved} uncertain sends; ${h.records.size} records`;
  return done(v);
}

/**
 * 2. No two runs of a job overlapped, unless one of them is the loser of a lost lease: its worker
 * logged `lease:lost` or `outcome:discarded` for that run. The loser may be the later one to start:
 * a worker that stalled with the job handed to a thread starts it on waking, before its renewal
 * learns that the lease is gone. Either way no record may name a discarded run.
 */
export function noOverlapWithoutLostLease({ h, byJob, origin }: Ctx): Verdict {
  const v = verdict(2, "no overlapping runs of one job unless one of them lost its lease and was discarded");
  let overlaps = 0;
  let excused = 0;
  for (const [job, rs] of byJob) {
    for (let i = 0; i < rs.length; i++) {
      for (let j = i + 1; j < rs.length; j++) {
        const [r1, r2] = [rs[i]!, rs[j]!];
        if (r2.start >= r1.end) continue;
        overlaps++;
        if (r1.lostLease || r1.discarded || r2.lostLease || r2.discarded) {
          excused++;
          continue;
        }
        flag(v, job, `${job}: ${describeRun(r1, origin)} overlaps ${describeRun(r2, origin)}; neither worker logged a lost lease`);
      }
    }
  }
  for (const [job, rec] of h.records) {
    const run = rec.status === "completed" ? resultRun(rec.result) : undefined;
    const winner = run ? byJob.get(job)?.find((r) => r.run === run) : undefined;
    if (winner?.discarded) {
      flag(v, job, `${job}: the record's result names run ${run}, whose worker (pid ${winner.pid}) discarded its outcome`);
    }
  }
  v.note = `${overlaps} overlapping pair(s), ${excused} excused by a lost lease`;
  return done(v);
}

/** 3. A WorkerCrashed letter needs a death or stall for each of its lost claims, between send and letter. */
export function crashLettersHaveDeaths({ h }: Ctx): Verdict {
  const v = verdict(3, `WorkerCrashed only after ${LOST_CLAIMS_TO_DIE}+ worker deaths or stalls while the job was pending`);
  const deaths = [
    ...h.faults.filter((f) => f.kind === "kill9" || f.kind === "stall").map((f) => f.t),
    ...h.workers.filter((w) => w.unexpected && w.exitedAt !== undefined).map((w) => w.exitedAt!),
  ];
  const sentAt = new Map(h.sends.map((s) => [s.id, s.t]));
  const counts: string[] = [];
  for (const l of h.letters) {
    if (l.error.name !== "WorkerCrashed") continue;
    const from = sentAt.get(l.job) ?? -Infinity;
    const n = deaths.filter((t) => t >= from && t <= l.at).length;
    counts.push(`${l.job}=${n}`);
    if (n < LOST_CLAIMS_TO_DIE) {
      flag(v, l.job, `${l.job}: dead-lettered as WorkerCrashed with only ${n} kill -9/SIGSTOP between its send and its letter` +
        ` (${l.error.message ?? ""})`);
    }
  }
  v.note = counts.length === 0 ? "no WorkerCrashed letters" : `${counts.length} WorkerCrashed letter(s); deaths+stalls in each window: ${counts.join(", ")}`;
  return done(v);
}

/**
 * 4. The rate-limited actor never ran more than its limit at once (stalled runs count as open, runs of
 * killed workers end at the kill), and at the end its slots hold nothing but leases of killed runs.
 */
export function rateLimitHeld({ h, runs, origin }: Ctx): Verdict {
  const { actor, limit, slots } = h.limited;
  const v = verdict(4, `rate limit ${actor} concurrency ${limit} never exceeded; every slot came back`);
  const limited = runs.filter((r) => r.actor === actor);
  for (const episode of excess(limited, limit)) {
    const line = `${episode.open.length} runs of ${actor} at once at ${((episode.at - origin) / 1000).toFixed(3)}s: ` +
      episode.open.map((r) => `${r.job} ${describeRun(r, origin)}`).join("; ");
    for (const r of episode.open) flag(v, r.job, line);
  }
  const held: string[] = [];
  for (const s of slots) {
    const job = jobOfToken(s.member);
    const its = runs.filter((r) => r.job === job);
    // The run of a killed worker, or a worker killed between taking the slot and starting the run.
    const holder = holderOfToken(s.member);
    const killed = its.some((r) => r.endedBy === "kill") || h.workers.some((w) => w.pid === holder && w.killedAt !== undefined);
    held.push(`${s.member}${killed ? " (a killed worker's)" : ""}`);
    if (!killed) {
      flag(v, s.member, `slot ${s.member} still taken at the end (lease until ${new Date(s.expires).toISOString()}); no run of ` +
        `${job} was on a killed worker: ${its.map((r) => describeRun(r, origin)).join("; ") || "it never ran"}`);
    }
  }
  const peak = peakOverlap(limited).most;
  v.note = `${limited.length} runs, at most ${peak} at once; slots at the end: ${held.length === 0 ? "none" : held.join(", ")}`;
  return done(v);
}

/**
 * 5. The record's status is the last real outcome: completed names a run that ended ok and was not
 * discarded; dead is in the DLQ with the error its last run had.
 */
export function statusMatchesLastRun({ h, byJob, letters, origin }: Ctx): Verdict {
  const v = verdict(5, "the final status matches the last real outcome");
  for (const [job, rec] of h.records) {
    const rs = byJob.get(job) ?? [];
    const ls = letters.get(job) ?? [];
    if (rec.status === "completed") {
      const run = resultRun(rec.result);
      const winner = rs.find((r) => r.run === run);
      if (!winner) flag(v, job, `${job}: completed, but its result ${JSON.stringify(rec.result)} names no logged run of it`);
      else if (winner.endedBy !== "self" || !winner.ok) flag(v, job, `${job}: completed with the result of ${describeRun(winner, origin)}`);
      else if (winner.discarded) flag(v, job, `${job}: completed with a discarded outcome (${describeRun(winner, origin)})`);
      if (ls.length > 0) flag(v, job, `${job}: completed, and also dead-lettered as ${ls.map((l) => l.error.name).join(", ")}`);
    } else if (rec.status === "dead") {
      const letter = ls.at(-1);
      if (!letter) continue; // invariant 1 reports it
      const why = deadMismatch(h, letter, rec.error?.name, rs.at(-1));
      if (why) flag(v, job, `${job}: dead as ${letter.error.name}, but ${why}`);
      if (ls.length > 1) flag(v, job, `${job}: dead-lettered ${ls.length} times`);
    }
  }
  const count = (status: string) => [...h.records.values()].filter((r) => r.status === status).length;
  const causes = [...new Set(h.letters.map((l) => l.error.name))].map((n) => `${n} ${h.letters.filter((l) => l.error.name === n).length}`);
  v.note = `${count("completed")} completed and ${count("dead")} dead records checked; letters: ${causes.join(", ") || "none"}`;
  return done(v);
}

/** A live, running worker that starts no job this long while jobs keep coming is stuck. */
export const IDLE_LIMIT_MS = 15_000;
/** Time a new worker may take to start (import, threads) before its idleness counts. */
const STARTUP_MS = 5_000;

/**
 * 6. (Liveness, beyond the five safety promises.) While the producer sends, every worker that is
 * alive and not stopped keeps starting jobs: at ~10 jobs/s over three workers, a gap of 15 s is a
 * worker that no longer reads (a dead read loop, a read that never returns), not bad luck.
 */
export function workersKeptWorking({ h, runs, origin }: Ctx): Verdict {
  const v = verdict(6, `every live worker kept taking jobs while they were sent (no gap of ${IDLE_LIMIT_MS / 1000} s)`);
  if (h.sends.length === 0) return done(v);
  const from = Math.min(...h.sends.map((s) => s.t));
  const to = Math.max(...h.sends.map((s) => s.t));
  const at = (t: number) => `+${((t - origin) / 1000).toFixed(1)}s`;
  let longest = 0;
  for (const w of h.workers) {
    const begin = Math.max(w.startedAt + STARTUP_MS, from);
    const end = Math.min(w.killedAt ?? w.exitedAt ?? h.horizon, to);
    if (end <= begin) continue;
    const stalls = h.faults.filter((f) => f.kind === "stall" && f.pid === w.pid);
    const points = [begin, ...runs.filter((r) => r.pid === w.pid && r.start > begin && r.start < end).map((r) => r.start), end];
    for (let i = 1; i < points.length; i++) {
      const [a, b] = [points[i - 1]!, points[i]!];
      const stopped = stalls.reduce((sum, f) => sum + Math.max(0, Math.min(b, f.until ?? f.t) - Math.max(a, f.t)), 0);
      const idle = b - a - stopped;
      longest = Math.max(longest, idle);
      if (idle >= IDLE_LIMIT_MS) {
        flag(v, `pid ${w.pid}`, `worker ${w.pid} started no job from ${at(a)} to ${at(b)} (${(idle / 1000).toFixed(1)} s not stopped) while jobs were being sent`);
      }
    }
  }
  v.note = `longest time a live worker started nothing while jobs were sent: ${(longest / 1000).toFixed(1)} s`;
  return done(v);
}

/** Why a dead record does not match its letter and last run, or undefined when it does. */
function deadMismatch(h: History, letter: Letter, recordError: string | undefined, last: Run | undefined): string | undefined {
  const name = letter.error.name;
  if (recordError !== undefined && recordError !== name) return `its record says ${recordError}`;
  if (name === "WorkerCrashed") return undefined; // invariant 3 counts the deaths
  if (name === "TimeLimitExceeded") {
    if (letter.actor !== h.busyActor) return `${letter.actor} is not the busy loop`;
    if (last?.endedBy === "self" && last.ok) return `its last run (${last.run}) ended ok`;
    return undefined;
  }
  if (letter.actor === h.busyActor) return "the busy loop can only die of its time limit or of crashes";
  if (!last) return "no run of it was logged";
  if (last.endedBy !== "self" || last.ok || last.error !== name) {
    return `its last run (${last.run}) ended ${last.endedBy === "self" ? (last.ok ? "ok" : `with ${last.error}`) : `by ${last.endedBy}`}`;
  }
  return undefined;
}

/** Instants where more than `limit` runs were open: one entry per time the count went over. */
function excess(runs: Run[], limit: number): Array<{ at: number; open: Run[] }> {
  const edges = runs.flatMap((r) => [{ t: r.start, d: 1, r }, { t: r.end, d: -1, r }]).sort((a, b) => a.t - b.t || a.d - b.d);
  const open = new Set<Run>();
  const out: Array<{ at: number; open: Run[] }> = [];
  for (const e of edges) {
    const before = open.size;
    if (e.d > 0) open.add(e.r);
    else open.delete(e.r);
    if (open.size > limit && open.size > before) out.push({ at: e.t, open: [...open] });
  }
  return out;
}

/** The pid of the worker that took a slot, from the consumer name in its token (see rate_limit.ts). */
export function holderOfToken(token: string): number | undefined {
  const pid = /-(\d+)-[^-/:]+\/[^/:]*$/.exec(token)?.[1];
  return pid === undefined ? undefined : Number(pid);
}

/**
 * A slot's token is "<jobId>:<entryId>" (today also ":<consumer>/<nonce>", older ones ":<nonce>");
 * the entry id is what tells them apart.
 */
export function jobOfToken(token: string): string {
  return /^(.*?):\d+-\d+(?::[^:]*)?$/.exec(token)?.[1] ?? token.slice(0, token.lastIndexOf(":"));
}

function resultRun(result: unknown): string | undefined {
  const run = (result as { run?: unknown } | null | undefined)?.run;
  return typeof run === "string" ? run : undefined;
}

/** Times in evidence count from the first send, when the faults begin too (as the harness prints them). */
function originOf(h: History): number {
  const ts = h.sends.length > 0 ? h.sends.map((s) => s.t) : h.workers.map((w) => w.startedAt);
  return ts.length > 0 ? Math.min(...ts) : 0;
}

function group<T>(items: T[], key: (t: T) => string): Map<string, T[]> {
  const m = new Map<string, T[]>();
  for (const item of items) {
    const k = key(item);
    const list = m.get(k);
    if (list) list.push(item);
    else m.set(k, [item]);
  }
  return m;
}

function verdict(n: number, name: string): Verdict {
  return { n, name, held: true, offenders: [], evidence: [], note: "" };
}

function flag(v: Verdict, id: string, line: string): void {
  if (!v.offenders.includes(id)) v.offenders.push(id);
  if (v.evidence.length < maxEvidence && v.evidence.at(-1) !== line) v.evidence.push(line);
}

function done(v: Verdict): Verdict {
  v.held = v.offenders.length === 0;
  return v;
}
