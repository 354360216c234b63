/**
 * A chaos run end to end: a private redis-server, three `dray worker` processes on Bun, a producer
 * sending jobs with known ids, faults for `durationSec`, a bounded drain, a graceful stop, then the
 * history collected (run log, worker events, Redis) and checked (checker.ts). Everything it starts
 * is torn down on every path, a failed check included (live.ts covers the paths that skip `finally`).
 */
import { appendFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { pino } from "pino";
import { RedisBroker } from "../../src/broker/redis.ts";
import { ConfigError } from "../../src/errors.ts";
import { limitKey } from "../../src/broker/keys.ts";
import { closeBroker, useBroker } from "../../src/client.ts";
import { configure, settings } from "../../src/config.ts";
import { getJob } from "../../src/job.ts";
import { FINISHED, type JobStatus } from "../../src/results/types.ts";
import { machineInfo } from "../machine.ts";
import { nowMs } from "../scenarios.ts";
import { ownPath } from "../spawn.ts";
import { ACTOR_OF, CHAOS_QUEUE, LIMIT, type RunLine } from "./app.ts";
import { check, type Verdict } from "./checker.ts";
import { FAULT_KINDS, faultWeights, injectFaults, Rng } from "./faults.ts";
import type { Fault, FaultKind, FinalRecord, History, Letter, Send } from "./history.ts";
import { forgetDir, removeDir, trackDir } from "./live.ts";
import { produce } from "./producer.ts";
import { RedisServer, freePort } from "./redis_server.ts";
import { WorkerPool } from "./workers.ts";
import { formatReport, type ChaosReport } from "./report.ts";

/** The short run's seed (test/chaos.test.ts); CHAOS_SEED or --seed replays another. */
export const DEFAULT_SEED = 20_260_601;

export interface ChaosOptions {
  seed: number;
  /** Seconds of faults (and of sending). */
  durationSec: number;
  /** @default 3 */
  workers?: number;
  /** @default 2 */
  threads?: number;
  /** @default 8 */
  concurrency?: number;
  /** ms. @default 2_000 */
  visibilityTimeout?: number;
  /** Jobs sent per second. @default 10 */
  rate?: number;
  /** The most the drain may take, seconds: a killed worker's rate-limit slot alone takes 33 s to free. @default 90 */
  drainSec?: number;
  /** Which faults to inject. @default all four kinds */
  faults?: FaultKind[];
  /** Leave the temp directory (run log, worker logs, AOF) for a post-mortem. @default false */
  keep?: boolean;
  command?: string;
  log?: (line: string) => void;
}

interface Setup {
  dir: string;
  server: RedisServer;
  admin: Redis;
  pool: WorkerPool;
  prefix: string;
}

export async function runChaos(o: ChaosOptions): Promise<ChaosReport> {
  const log = o.log ?? ((line: string) => console.log(line));
  const started = nowMs();
  const previous = settings();
  const dir = mkdtempSync(join(tmpdir(), "dray-chaos-"));
  trackDir(dir);
  let setup: Setup | undefined;
  try {
    setup = await startSystem(o, dir, log);
    return await exercise(o, setup, started, log);
  } finally {
    await setup?.pool.stop(5_000).catch(() => undefined);
    setup?.admin.disconnect();
    await closeBroker().catch(() => undefined);
    configure({ redisUrl: previous.redisUrl, prefix: previous.prefix, logger: previous.logger });
    await setup?.server.stop().catch(() => undefined);
    if (o.keep) {
      forgetDir(dir);
      log(`kept ${dir} (run log, worker logs, AOF)`);
    } else removeDir(dir);
  }
}

async function startSystem(o: ChaosOptions, dir: string, log: (l: string) => void): Promise<Setup> {
  for (const sub of ["redis", "runs", "workers"]) mkdirSync(join(dir, sub));
  const server = new RedisServer(await freePort(), join(dir, "redis"));
  await server.start();
  const prefix = `chaos-${crypto.randomUUID().slice(0, 8)}`;
  // The senders' reconnect warnings during a Redis restart are expected: they would drown the report.
  configure({ redisUrl: server.url, prefix, logger: pino({ level: "error" }) });
  // Named apart from dray's connections, and patient: it must outlive every restart.
  const admin = new Redis(server.url, { connectionName: "chaos-harness", maxRetriesPerRequest: null, retryStrategy: () => 100 });
  admin.on("error", () => undefined);
  const pool = new WorkerPool({
    size: o.workers ?? 3,
    app: ownPath("./chaos/app"),
    args: ["--threads", String(o.threads ?? 2), "--concurrency", String(o.concurrency ?? 8),
      "--visibility-timeout", String(o.visibilityTimeout ?? 2_000), "--shutdown-grace", "5000"],
    env: { REDIS_URL: server.url, DRAY_PREFIX: prefix, CHAOS_LOG_DIR: join(dir, "runs") },
    outDir: join(dir, "workers"),
    log,
  });
  const setup = { dir, server, admin, pool, prefix };
  try {
    await pool.start();
  } catch (error) {
    await pool.stop(1_000);
    admin.disconnect();
    await server.stop();
    throw error;
  }
  return setup;
}

async function exercise(o: ChaosOptions, s: Setup, started: number, log: (l: string) => void): Promise<ChaosReport> {
  const meta = await metaOf(o, s);
  log(`chaos: seed ${o.seed} (replay: CHAOS_SEED=${o.seed}) · ${o.durationSec} s of faults · ${meta.workers} workers ` +
    `--threads ${meta.threads} --concurrency ${meta.concurrency} --visibility-timeout ${meta.visibilityTimeout} · ` +
    `${meta.rate} jobs/s · faults ${meta.faultKinds.join(",")} · redis-server :${s.server.port} (appendfsync always) · prefix ${s.prefix}`);
  const faultStart = nowMs();
  const at = (t: number) => `+${((t - faultStart) / 1000).toFixed(1)}s`;
  const [faults, sends] = await Promise.all([
    injectFaults({
      durationMs: o.durationSec * 1000, rng: new Rng(o.seed), pool: s.pool, server: s.server, admin: s.admin,
      ownClientIds: () => ownClientIds(s.admin), visibilityTimeout: meta.visibilityTimeout, weights: faultWeights(o.faults),
      onFault: (f) => {
        log(`${at(f.t)} fault ${f.kind}${f.pid ? ` pid ${f.pid}` : ""}${f.detail ? `: ${f.detail}` : ""}`);
        // The harness's own record, on disk as it happens: a run that dies midway still has it.
        appendFileSync(join(s.dir, "faults.jsonl"), JSON.stringify(f) + "\n");
      },
    }),
    produce({ rate: meta.rate, durationMs: o.durationSec * 1000, rng: new Rng(o.seed ^ 0x9e3779b9) }),
  ]);
  const faultsEnd = nowMs();
  log(`${at(faultsEnd)} faults over: ${faults.length} injected, ${sends.length} jobs sent; draining (at most ${o.drainSec ?? 90} s)`);
  const drained = await drain(sends, (o.drainSec ?? 90) * 1000, (l) => log(`${at(nowMs())} ${l}`));
  const drainEnd = nowMs();
  const stuckClients = drained ? undefined : await drayClients(s.admin);
  await s.pool.stop(15_000);
  const { history, badLines } = await collect(s, sends, faults, nowMs());
  writeFileSync(join(s.dir, "history.json"), JSON.stringify({ ...history, records: [...history.records.values()], runLines: undefined }));
  const result = check(history);
  const q = await useBroker().stats(CHAOS_QUEUE);
  const report: ChaosReport = {
    meta, sends: tally(sends), runs: result.runs.length, badLines,
    faults: { byKind: byKind(faults), list: faults },
    statuses: result.statuses,
    leftover: { ready: q.ready, running: q.running, delayed: q.delayed, dead: q.dead },
    durations: { faultsSec: secs(faultsEnd - faultStart), drainSec: secs(drainEnd - faultsEnd), totalSec: secs(nowMs() - started), drained },
    verdicts: result.verdicts,
    held: result.verdicts.every((v) => v.held),
    ...(stuckClients ? { stuckClients } : {}),
    ...(o.keep ? { dir: s.dir } : {}),
  };
  for (const line of formatReport(report)) log(line);
  return report;
}

async function metaOf(o: ChaosOptions, s: Setup): Promise<ChaosReport["meta"]> {
  return {
    ...(await machineInfo(s.admin)), command: o.command ?? "bun test test/chaos.test.ts", date: new Date().toISOString(),
    seed: o.seed, durationSec: o.durationSec, workers: o.workers ?? 3, threads: o.threads ?? 2, concurrency: o.concurrency ?? 8,
    visibilityTimeout: o.visibilityTimeout ?? 2_000, rate: o.rate ?? 10, faultKinds: o.faults ?? [...FAULT_KINDS],
    redisPort: s.server.port,
  };
}

/** The harness's own connections, which CLIENT KILL must spare: its admin and the senders' one. */
async function ownClientIds(admin: Redis): Promise<string[]> {
  const ids = [String(await admin.client("ID"))];
  const sender = useBroker();
  if (sender instanceof RedisBroker) {
    const id = await sender.redis.client("ID").catch(() => undefined);
    if (id !== undefined) ids.push(String(id));
  }
  return ids;
}

/** What dray's connections were doing: for a drain that made no progress, where the workers wait. */
async function drayClients(admin: Redis): Promise<string[]> {
  const list = String(await admin.client("LIST"));
  return list.split("\n").filter((l) => / name=dray/.test(l))
    .map((l) => ["name", "cmd", "idle", "flags"].map((k) => `${k}=${new RegExp(`(?:^| )${k}=(\\S*)`).exec(l)?.[1] ?? "?"}`).join(" "));
}

/**
 * Waits until every job that exists is final and the queue is empty (nothing ready, pending or
 * delayed: a stray copy would run again after the check), or the deadline passes, or nothing has
 * moved for 45 s (longer than a killed worker's rate-limit slot takes to free: 33 s).
 */
async function drain(sends: Send[], deadlineMs: number, log: (l: string) => void): Promise<boolean> {
  const deadline = Date.now() + deadlineMs;
  let waiting = sends.map((s) => s.id);
  let lastLog = 0;
  let last = { state: "", since: Date.now() };
  for (;;) {
    const statuses = await Promise.all(waiting.map(async (id) => [id, (await recordOf(id))?.status] as const));
    waiting = statuses.filter(([, status]) => status !== undefined && !FINISHED.has(status as JobStatus)).map(([id]) => id);
    const q = await useBroker().stats(CHAOS_QUEUE).catch(() => undefined);
    const quiet = q !== undefined && q.ready + q.running + q.delayed === 0;
    if (waiting.length === 0 && quiet) return true;
    const state = `${waiting.length} jobs not final; queue ready ${q?.ready} running ${q?.running} delayed ${q?.delayed} dead ${q?.dead}`;
    if (state !== last.state) last = { state, since: Date.now() };
    if (Date.now() > deadline || Date.now() - last.since > 45_000) {
      log(`drain cut off (${Date.now() > deadline ? "deadline" : "nothing moved for 45 s"}): ${state}`);
      return false;
    }
    if (Date.now() - lastLog > 5_000) {
      lastLog = Date.now();
      log(`draining: ${state}`);
    }
    await new Promise((r) => setTimeout(r, 500));
  }
}

/** A job's record through the public handle (live status: a held job reads "running"); undefined when none. */
async function recordOf(id: string): Promise<FinalRecord | undefined> {
  try {
    const r = await getJob(id, { queue: CHAOS_QUEUE }).info();
    return { id, status: r.status, ...(r.result !== undefined ? { result: r.result } : {}), ...(r.error ? { error: r.error } : {}) };
  } catch (error) {
    if ((error as Error)?.name === "UnknownJobError") return undefined;
    throw error;
  }
}

async function collect(s: Setup, sends: Send[], faults: Fault[], horizon: number): Promise<{ history: History; badLines: number }> {
  const records = new Map<string, FinalRecord>();
  for (const send of sends) {
    const r = await recordOf(send.id);
    if (r) records.set(send.id, r);
  }
  const letters: Letter[] = (await useBroker().deadLetters(CHAOS_QUEUE, { limit: 1_000_000 })).map((l) => ({
    letterId: l.id,
    job: "raw" in l.message ? `(malformed ${l.id})` : l.message.id,
    actor: "raw" in l.message ? "" : l.message.actor,
    error: { name: String(l.error.name), message: String(l.error.message ?? "") },
    at: l.at,
  }));
  const slotKey = limitKey(s.prefix, `${ACTOR_OF.limited}:running`);
  const flat = await s.admin.zrange(slotKey, 0, -1, "WITHSCORES");
  const slots = [];
  for (let i = 0; i + 1 < flat.length; i += 2) slots.push({ member: flat[i]!, expires: Number(flat[i + 1]) });
  const { lines, bad } = readRunLog(join(s.dir, "runs"));
  const history: History = {
    sends, runLines: lines, workers: s.pool.procs, workerEvents: s.pool.events, faults,
    records, recordIds: await recordIds(s), letters, limited: { actor: ACTOR_OF.limited, limit: LIMIT, slots },
    busyActor: ACTOR_OF.busy, horizon,
  };
  return { history, badLines: bad };
}

async function recordIds(s: Setup): Promise<string[]> {
  const head = `{${s.prefix}:${CHAOS_QUEUE}}:job:`;
  const ids: string[] = [];
  let cursor = "0";
  do {
    const [next, keys] = await s.admin.scan(cursor, "MATCH", `${head}*`, "COUNT", 1000);
    cursor = next;
    for (const k of keys) ids.push(k.slice(head.length));
  } while (cursor !== "0");
  return ids;
}

function readRunLog(dir: string): { lines: RunLine[]; bad: number } {
  const lines: RunLine[] = [];
  let bad = 0;
  for (const file of readdirSync(dir).filter((f) => f.startsWith("runs-"))) {
    for (const text of readFileSync(join(dir, file), "utf8").split("\n")) {
      if (!text) continue;
      try {
        lines.push(JSON.parse(text) as RunLine);
      } catch {
        bad++;
      }
    }
  }
  return { lines, bad };
}

function tally(sends: Send[]): ChaosReport["sends"] {
  const n = (o: Send["outcome"]) => sends.filter((s) => s.outcome === o).length;
  return { total: sends.length, resolved: n("resolved"), rejected: n("rejected"), pending: n("pending"),
    duplicates: sends.filter((s) => s.duplicate).length };
}

function byKind(faults: Fault[]): Record<FaultKind, number> {
  const out: Record<FaultKind, number> = { kill9: 0, stall: 0, clientKill: 0, redisRestart: 0 };
  for (const f of faults) out[f.kind]++;
  return out;
}

function secs(ms: number): number {
  return Math.round(ms / 100) / 10;
}

/** "kill9,stall" (CHAOS_FAULTS, --faults) as fault kinds; an unknown name is an error. */
export function parseFaultKinds(text: string): FaultKind[] {
  const kinds = text.split(",").map((k) => k.trim()).filter(Boolean);
  const unknown = kinds.filter((k) => !FAULT_KINDS.includes(k as FaultKind));
  if (unknown.length > 0 || kinds.length === 0) {
    throw new ConfigError(`faults must be some of ${FAULT_KINDS.join(",")}, not "${text}"`);
  }
  return kinds as FaultKind[];
}
