/**
 * What the test files that run on the local cluster share: whether they can run (redis-server and
 * redis-cli on PATH; their absence fails CI), the cluster they start once per file, and which master
 * serves a key.
 */
import process from "node:process";
import { Cluster } from "ioredis";
import { keySlot } from "../../src/broker/cluster.ts";
import { missingBinaries, startCluster, type MasterNode, type ClusterOptions, type RedisCluster } from "./cluster.ts";

/** True when the cluster can be started here; in CI a missing binary throws instead. */
export function clusterEnabled(): boolean {
  const missing = missingBinaries();
  if (missing.length > 0 && process.env.CI) throw new Error(`CI needs ${missing.join(" and ")} on PATH for the cluster tests`);
  return missing.length === 0;
}

export interface OpenCluster {
  cluster: RedisCluster;
  masters: MasterNode[];
  /** A plain ioredis Cluster client, for what a test adds or checks by hand. */
  raw: Cluster;
}

export async function openCluster(options?: ClusterOptions): Promise<OpenCluster> {
  const cluster = await startCluster(options);
  const raw = new Cluster([{ host: cluster.nodes[0]!.host, port: cluster.nodes[0]!.port }]);
  raw.on("error", () => undefined);
  return { cluster, masters: await cluster.masters(), raw };
}

export async function closeCluster(open: Partial<OpenCluster>): Promise<void> {
  open.raw?.disconnect();
  await open.cluster?.stop();
}

/** The master serving `key`'s slot. */
export function masterFor(masters: MasterNode[], key: string): MasterNode {
  const slot = keySlot(key);
  return masters.find((m) => m.slots.some(([from, to]) => slot >= from && slot <= to))!;
}

/** Every key of `prefix` on every master; a master that is gone (a failover test's) is skipped. */
export async function cleanClusterPrefix(raw: Cluster, prefix: string): Promise<void> {
  await Promise.all(raw.nodes("master").map(async (node) => {
    let cursor = "0";
    do {
      const [next, keys] = await node.scan(cursor, "MATCH", `*${prefix}*`, "COUNT", 1000);
      cursor = next;
      // One by one: the keys of a prefix are in many slots.
      await Promise.all(keys.map((key) => node.unlink(key)));
    } while (cursor !== "0");
  }).map((p) => p.catch(() => undefined)));
}
