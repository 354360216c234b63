/**
 * Where the bench's keys live: the servers whose INFO it reads and whose keys it removes (the single
 * Redis, or every master of a Redis Cluster), and the queues it sends to, picked so that on a cluster
 * their hash tags `{<prefix>:<queue>}` land on different masters.
 */
import type { Redis } from "ioredis";
import { isCluster, keySlot } from "../src/broker/cluster.ts";
import type { RedisClient } from "../src/broker/connection.ts";
import { queueKeys } from "../src/broker/keys.ts";
import { BENCH_QUEUE } from "./fixture.ts";

/** A queue of the run and the server ("host:port") that holds its keys. */
export interface BenchQueue {
  name: string;
  node: string;
}

/** "host:port" of one server, as ioredis' slot table names it. */
export const nodeName = (client: Redis): string => `${client.options.host}:${client.options.port}`;

/**
 * The servers a run is measured and cleaned on: the Redis itself, or the cluster's masters as
 * ioredis knows them (call after a first command, when it has loaded the slots). Replicas are left
 * out: they hold no slot of their own, and their CPU (replaying what their master wrote) is not part
 * of what a job costs the servers that answer it.
 */
export function masterNodes(redis: RedisClient): Array<{ name: string; client: Redis }> {
  const clients = isCluster(redis) ? redis.nodes("master") : [redis];
  return clients.map((client) => ({ name: nodeName(client), client })).sort((a, b) => a.name.localeCompare(b.name));
}

/** The server that holds `key`: on a cluster, the master of its slot. */
export function nodeOf(redis: RedisClient, key: string): string | undefined {
  return isCluster(redis) ? redis.slots[keySlot(key)]?.[0] : nodeName(redis);
}

const SEARCH = 10_000;

/**
 * `n` queue names whose keys go round-robin over the masters: queue i on master i mod M, so that
 * up to M queues are on M different masters. The names are "bench", "bench-1", "bench-2" ...: which
 * of them land where depends on the run's prefix, so they are searched for. On a single Redis (one
 * "master") that is "bench", "bench-1", ... in order.
 */
export function spreadQueues(redis: RedisClient, prefix: string, n: number): BenchQueue[] {
  const masters = masterNodes(redis).map((m) => m.name);
  if (masters.length === 0) throw new Error("the bench's Redis client knows no master yet");
  const picked: BenchQueue[] = [];
  const used = new Set<string>();
  for (let i = 0; i < n; i++) {
    const want = masters[i % masters.length]!;
    for (let k = 0; ; k++) {
      if (k === SEARCH) throw new Error(`found no queue name on ${want} among ${SEARCH}`);
      const name = k === 0 ? BENCH_QUEUE : `${BENCH_QUEUE}-${k}`;
      if (used.has(name) || nodeOf(redis, queueKeys(prefix, name).stream(0)) !== want) continue;
      used.add(name);
      picked.push({ name, node: want });
      break;
    }
  }
  return picked;
}

/** Where the jobs go, for the log: the queues, and on a cluster (`masters` given) the master of each. */
export function queuesLine(queues: BenchQueue[], masters?: string[]): string {
  return `${masters ? `Redis Cluster, ${masters.length} masters · ` : ""}jobs round-robin over ${queues.length} queue(s): ` +
    queues.map((q) => (masters ? `${q.name} on ${q.node}` : q.name)).join(", ");
}
