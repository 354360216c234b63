/**
 * The fault scheduler: a seeded PRNG picks when the next fault comes, which kind and which worker,
 * so a run that found a violation can be replayed with its seed (the system's own timing still
 * varies, so a replay is the same storm, not the same interleaving). Every fault goes into the
 * harness's own record with its time and target.
 */
import type { Redis } from "ioredis";
import { nowMs } from "../scenarios.ts";
import type { Fault, FaultKind } from "./history.ts";
import type { RedisServer } from "./redis_server.ts";
import type { WorkerPool } from "./workers.ts";

/** mulberry32: small, fast, and the same sequence on every runtime for a seed. */
export class Rng {
  #s: number;

  constructor(seed: number) {
    this.#s = seed >>> 0;
  }

  next(): number {
    let t = (this.#s = (this.#s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  }

  between(min: number, max: number): number {
    return min + this.next() * (max - min);
  }

  int(min: number, max: number): number {
    return Math.floor(this.between(min, max + 1));
  }

  pick<T>(items: readonly T[]): T {
    return items[Math.min(items.length - 1, Math.floor(this.next() * items.length))]!;
  }

  weighted<K extends string>(weights: Record<K, number>): K {
    const entries = Object.entries(weights) as Array<[K, number]>;
    let x = this.next() * entries.reduce((sum, [, w]) => sum + w, 0);
    for (const [k, w] of entries) if ((x -= w) < 0) return k;
    return entries.at(-1)![0];
  }
}

export interface FaultOptions {
  durationMs: number;
  rng: Rng;
  pool: WorkerPool;
  server: RedisServer;
  /** The harness's connection (never killed): CLIENT LIST and CLIENT KILL go through it. */
  admin: Redis;
  /** Ids of the harness's own connections (admin, sender), which CLIENT KILL spares. */
  ownClientIds: () => Promise<string[]>;
  visibilityTimeout: number;
  /** Pause between faults, ms. @default [1_500, 4_500] */
  gap?: [number, number];
  weights?: Record<FaultKind, number>;
  /** Called with each fault as it happens. */
  onFault: (f: Fault) => void;
}

export const FAULT_KINDS: readonly FaultKind[] = ["kill9", "stall", "clientKill", "redisRestart"];
const defaultWeights: Record<FaultKind, number> = { kill9: 3, stall: 3, clientKill: 2.5, redisRestart: 1.5 };

/** The default weights of the kinds given (all when none), e.g. to look at one kind of fault alone. */
export function faultWeights(kinds: readonly FaultKind[] = FAULT_KINDS): Record<FaultKind, number> {
  return Object.fromEntries(FAULT_KINDS.map((k) => [k, kinds.includes(k) ? defaultWeights[k] : 0])) as Record<FaultKind, number>;
}

/** Injects faults until `durationMs` has passed; resolves once every stalled worker is continued. */
export async function injectFaults(o: FaultOptions): Promise<Fault[]> {
  const faults: Fault[] = [];
  const stalls: Promise<void>[] = [];
  const end = Date.now() + o.durationMs;
  const [minGap, maxGap] = o.gap ?? [1_500, 4_500];
  const record = (f: Fault) => {
    faults.push(f);
    o.onFault(f);
  };
  while (Date.now() < end) {
    await sleep(Math.min(o.rng.between(minGap, maxGap), Math.max(0, end - Date.now())));
    if (Date.now() >= end) break;
    const kind = o.rng.weighted(o.weights ?? defaultWeights);
    const targets = o.pool.candidates();
    const at = o.rng.next(); // drawn whatever the kind, so later draws do not depend on the targets' count
    if (kind === "kill9" && targets.length > 0) {
      const w = targets[Math.floor(at * targets.length)]!;
      record({ kind, t: o.pool.kill9(w), pid: w.pid });
    } else if (kind === "stall" && targets.length > 1) {
      // Stopped for 1.5-2.5 visibility timeouts: the others reclaim its jobs meanwhile.
      const w = targets[Math.floor(at * targets.length)]!;
      const ms = Math.round(o.rng.between(1.5, 2.5) * o.visibilityTimeout);
      const f: Fault = { kind, t: nowMs(), pid: w.pid, detail: `SIGSTOP for ${ms} ms` };
      stalls.push(o.pool.stall(w, ms).then(({ from, to }) => {
        f.t = from;
        f.until = to;
      }));
      record(f);
    } else if (kind === "clientKill") {
      record(await clientKill(o, at));
    } else if (kind === "redisRestart") {
      record(await restartRedis(o));
    }
  }
  await Promise.all(stalls);
  return faults;
}

interface Client {
  id: string;
  name: string;
}

/** CLIENT KILL of dray's own connections (named dray, dray-block, dray-sub, ...): all of them, or some. */
async function clientKill(o: FaultOptions, draw: number): Promise<Fault> {
  const own = new Set(await o.ownClientIds());
  const list = String(await o.admin.client("LIST"));
  const clients = list.split("\n").map(parseClient).filter((c): c is Client => !!c && c.name.startsWith("dray") && !own.has(c.id));
  const chosen = draw < 0.4 ? clients : clients.filter(() => o.rng.next() < 0.5);
  if (chosen.length === 0 && clients.length > 0) chosen.push(o.rng.pick(clients));
  const t = nowMs();
  let killed = 0;
  for (const c of chosen) killed += Number(await o.admin.client("KILL", "ID", c.id).catch(() => 0));
  const names = [...new Set(chosen.map((c) => c.name))].sort().join(",");
  return { kind: "clientKill", t, detail: `${killed} of ${clients.length} dray connections (${names || "none"})` };
}

function parseClient(line: string): Client | undefined {
  const id = /(?:^|\s)id=(\d+)/.exec(line)?.[1];
  const name = /(?:^|\s)name=(\S*)/.exec(line)?.[1];
  return id ? { id, name: name ?? "" } : undefined;
}

/** kill -9 of redis-server, then the same port and directory again; its AOF brings everything back. */
async function restartRedis(o: FaultOptions): Promise<Fault> {
  const t = nowMs();
  await o.server.kill9();
  await sleep(o.rng.between(200, 1_500));
  for (let attempt = 1; ; attempt++) {
    try {
      await o.server.start();
      break;
    } catch (error) {
      // The port may linger a moment after the kill; a few tries, then the run fails loudly.
      if (attempt >= 5) throw error;
      await sleep(200);
    }
  }
  return { kind: "redisRestart", t, until: nowMs(), detail: "kill -9, restart on the same port and AOF" };
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
