/**
 * Redis-side cost of a run, from INFO deltas (never CONFIG RESETSTAT: the bench did not start this
 * Redis). Both figures are server-wide, so traffic of other clients on the same server counts too:
 * take final numbers on a quiet server. On a Redis Cluster they are read on every master and summed
 * (replicas are not counted: see topology.ts).
 */
import type { Redis } from "ioredis";
import type { RedisClient } from "../src/broker/connection.ts";
import { masterNodes } from "./topology.ts";

export interface RedisSnapshot {
  /** used_cpu_sys + used_cpu_user, ms. */
  cpuMs: number;
  /** Calls per command (lower-case name, e.g. "xadd", "evalsha"); commands run by scripts count too. */
  calls: Map<string, number>;
}

export async function snapshot(redis: Redis): Promise<RedisSnapshot> {
  const text = String(await redis.call("INFO", "cpu", "commandstats"));
  let cpu = 0;
  const calls = new Map<string, number>();
  for (const line of text.split(/\r?\n/)) {
    const cpuMatch = /^used_cpu_(sys|user):([\d.]+)$/.exec(line);
    if (cpuMatch) cpu += Number(cpuMatch[2]) * 1000;
    const cmd = /^cmdstat_([^:]+):calls=(\d+)/.exec(line);
    if (cmd) calls.set(cmd[1]!, Number(cmd[2]));
  }
  return { cpuMs: cpu, calls };
}

export interface RedisCost {
  cpuMs: number;
  /** Commands per name in the window, the bench's own INFO and polling subtracted. */
  calls: Record<string, number>;
  total: number;
}

/**
 * What happened between two snapshots. `own` lists commands the bench itself sent in the window
 * (its completion polls), which are not the system's cost; INFO is always the bench's.
 */
export function delta(before: RedisSnapshot, after: RedisSnapshot, own: Record<string, number> = {}): RedisCost {
  const calls: Record<string, number> = {};
  let total = 0;
  for (const [name, n] of after.calls) {
    if (name === "info") continue;
    const d = n - (before.calls.get(name) ?? 0) - (own[name] ?? 0);
    if (d > 0) {
      calls[name] = d;
      total += d;
    }
  }
  return { cpuMs: after.cpuMs - before.cpuMs, calls, total };
}

/** A snapshot of every server of the run ({@link masterNodes}), by "host:port". */
export async function snapshotNodes(redis: RedisClient): Promise<Map<string, RedisSnapshot>> {
  const nodes = masterNodes(redis);
  const snaps = await Promise.all(nodes.map((n) => snapshot(n.client)));
  return new Map(nodes.map((n, i) => [n.name, snaps[i]!]));
}

/**
 * {@link delta} on each server, `own` being the bench's commands by server, and their sum. A server
 * missing from either snapshot (a failover replaced it) is left out of both.
 */
export function deltaNodes(before: Map<string, RedisSnapshot>, after: Map<string, RedisSnapshot>,
  own: Record<string, Record<string, number>> = {}): { total: RedisCost; nodes: Map<string, RedisCost> } {
  const nodes = new Map<string, RedisCost>();
  const total: RedisCost = { cpuMs: 0, calls: {}, total: 0 };
  for (const [name, b] of before) {
    const a = after.get(name);
    if (!a) continue;
    const cost = delta(b, a, own[name]);
    nodes.set(name, cost);
    total.cpuMs += cost.cpuMs;
    total.total += cost.total;
    for (const [cmd, n] of Object.entries(cost.calls)) total.calls[cmd] = (total.calls[cmd] ?? 0) + n;
  }
  return { total, nodes };
}
