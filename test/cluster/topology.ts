/**
 * What the nodes of a local Redis Cluster say about it (CLUSTER INFO, CLUSTER NODES, INFO
 * replication) and whether that adds up to a healthy cluster. Every node is asked, not one: right
 * after a change the nodes disagree, and a test that trusts the first node to answer races the gossip.
 */
import { Redis } from "ioredis";

export const HOST = "127.0.0.1";
export const SLOTS = 16384;

/** One line of CLUSTER NODES: a node as the asked node sees it. */
export interface NodeLine {
  id: string;
  port: number;
  /** e.g. `myself`, `master`, `slave`, `fail?` (PFAIL), `fail`, `handshake`, `noaddr` */
  flags: string[];
  /** The id of its master, for a replica. */
  masterId: string | undefined;
  /** Inclusive slot ranges it serves. */
  slots: Array<[number, number]>;
}

export interface NodeReport {
  port: number;
  info: Record<string, string>;
  replication: Record<string, string>;
  nodes: NodeLine[];
}

/** Runs `fn` on a fresh connection to the node at `port`; rejects when the node does not answer. */
export async function ask<T>(port: number, fn: (redis: Redis) => Promise<T>): Promise<T> {
  const redis = new Redis({
    host: HOST, port, lazyConnect: true, connectTimeout: 1000, maxRetriesPerRequest: 0, retryStrategy: () => null,
    // A stopped (SIGSTOP) or wedged node accepts and never answers: a poll must not wait for it forever.
    commandTimeout: 2000,
  });
  redis.on("error", () => undefined);
  try {
    await redis.connect();
    return await fn(redis);
  } finally {
    // Not after a refused connection: ioredis would arm a 2 s timer for a socket already closed,
    // which holds a Node process (the CLI) open that long.
    if (redis.status !== "end") redis.disconnect();
  }
}

/** What the node at `port` says about the cluster; undefined when it does not answer. */
export async function report(port: number): Promise<NodeReport | undefined> {
  try {
    return await ask(port, async (redis) => {
      const [info, nodes, replication] = await Promise.all([
        redis.call("CLUSTER", "INFO"), redis.call("CLUSTER", "NODES"), redis.call("INFO", "replication"),
      ]);
      return { port, info: parseInfo(String(info)), nodes: parseNodes(String(nodes)), replication: parseInfo(String(replication)) };
    });
  } catch {
    return undefined;
  }
}

export function parseInfo(text: string): Record<string, string> {
  const fields: Record<string, string> = {};
  for (const line of text.split(/\r?\n/)) {
    const colon = line.indexOf(":");
    if (colon > 0 && !line.startsWith("#")) fields[line.slice(0, colon)] = line.slice(colon + 1).trim();
  }
  return fields;
}

export function parseNodes(text: string): NodeLine[] {
  return text.split("\n").filter((line) => line.trim()).map((line) => {
    const [id = "", address = "", flags = "", master = "-", , , , , ...slots] = line.trim().split(" ");
    return {
      id,
      // `ip:port@busport[,hostname]`
      port: Number(/:(\d+)@/.exec(address)?.[1] ?? 0),
      flags: flags.split(","),
      masterId: master === "-" ? undefined : master,
      // `[slot->-id]` / `[slot-<-id]` are slots being migrated: not served, not ours to count.
      slots: slots.filter((s) => !s.startsWith("[")).map((s) => {
        const [from, to = from] = s.split("-").map(Number);
        return [from!, to!] as [number, number];
      }),
    };
  });
}

const UNHEALTHY = ["fail", "fail?", "handshake", "noaddr"];

/**
 * Why the cluster is not healthy as these nodes see it ([] when it is): every node says
 * `cluster_state:ok` with all slots served, sees every live node without a failure flag, gives no
 * slot to a node in `dead`, and every replica's link to its master is up.
 */
export function troubles(reports: NodeReport[], dead: ReadonlySet<string> = new Set()): string[] {
  const found: string[] = [];
  for (const r of reports) {
    if (r.info.cluster_state !== "ok") found.push(`${r.port}: cluster_state ${r.info.cluster_state}`);
    if (r.info.cluster_slots_ok !== String(SLOTS)) found.push(`${r.port}: cluster_slots_ok ${r.info.cluster_slots_ok}`);
    for (const line of r.nodes) {
      if (dead.has(line.id)) {
        if (line.slots.length > 0) found.push(`${r.port}: still gives slots to dead ${line.port}`);
      } else if (line.flags.some((f) => UNHEALTHY.includes(f))) {
        found.push(`${r.port}: sees ${line.port} as ${line.flags.join(",")}`);
      }
    }
    if (r.replication.role === "slave" && r.replication.master_link_status !== "up") {
      found.push(`${r.port}: replica link ${r.replication.master_link_status}`);
    }
  }
  return found;
}

/** Why the cluster does not yet have its full shape: `masters` masters with `replicas` replicas each, seen by every node. */
export function shapeTroubles(reports: NodeReport[], masters: number, replicas: number): string[] {
  const found: string[] = [];
  for (const r of reports) {
    const known = Number(r.info.cluster_known_nodes);
    if (known !== masters * (1 + replicas)) found.push(`${r.port}: knows ${known} nodes`);
    const serving = r.nodes.filter((n) => n.flags.includes("master") && n.slots.length > 0);
    if (serving.length !== masters) found.push(`${r.port}: sees ${serving.length} masters with slots`);
    for (const master of serving) {
      const attached = r.nodes.filter((n) => n.masterId === master.id).length;
      if (attached !== replicas) found.push(`${r.port}: sees ${attached} replicas of ${master.port}`);
    }
    if (r.replication.role === "master" && Number(r.replication.connected_slaves) !== replicas) {
      found.push(`${r.port}: ${r.replication.connected_slaves} connected replicas`);
    }
  }
  return found;
}
