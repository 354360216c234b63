/**
 * A real Redis Cluster on this machine, for tests and developers: 3 masters with a replica each (by
 * default), every node its own `redis-server --cluster-enabled yes` on free 127.0.0.1 ports, in a
 * temp directory of its own, with no persistence and a short node timeout so that a failover takes
 * seconds. Runs on Bun, Node (with tsx) and Deno. `test/cluster/cli.mjs` starts one for a developer.
 *
 * Nothing outlives the test process, unless `detached` asks for exactly that: the servers die with
 * it (setpriv --pdeathsig, even on SIGKILL; a SIGKILL on "exit", SIGINT and SIGTERM from
 * bench/chaos/live.ts, which removes the temp directory too), and they do not keep it alive: a
 * test that forgets stop() ends anyway.
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { z } from "zod";
import { removeDir, trackDir } from "../../bench/chaos/live.ts";
import {
  alive, answering, answers, createCluster, exit, freeNodePorts, missingBinaries, signal, sleep, spawnNode, terminate,
  type NodeProcess,
} from "./nodes.ts";
import { HOST, ask, report, shapeTroubles, troubles, type NodeLine, type NodeReport } from "./topology.ts";

export { missingBinaries };

export interface ClusterOptions {
  /** Masters; `redis-cli --cluster create` wants at least 3. @default 3 */
  masters?: number;
  /** Replicas of each master. @default 1 */
  replicas?: number;
  /** `cluster-node-timeout`: how long a silent node takes to be suspected; a failover takes about 2-3 times this. @default 1000 */
  nodeTimeoutMs?: number;
  /** Until every node answers, the cluster is created and every node sees it whole. @default 30_000 */
  startTimeoutMs?: number;
  /** Let the servers outlive this process (the CLI's `start`); stop them with {@link stopDetachedCluster}. @default false */
  detached?: boolean;
}

const optionsSchema = z.object({
  masters: z.number().int().min(3).default(3),
  replicas: z.number().int().min(0).max(5).default(1),
  nodeTimeoutMs: z.number().int().min(100).default(1000),
  startTimeoutMs: z.number().int().positive().default(30_000),
  detached: z.boolean().default(false),
});

export interface ClusterNode {
  host: string;
  port: number;
  pid: number;
}
export interface MasterNode extends ClusterNode {
  id: string;
  /** Inclusive slot ranges. */
  slots: Array<[number, number]>;
  /** Ports of its replicas. */
  replicas: number[];
}
export interface ReplicaNode extends ClusterNode {
  id: string;
  masterPort: number;
}
export interface NodeStatus extends ClusterNode {
  /** Absent when the node does not answer. */
  role?: "master" | "replica";
  state?: string;
  slotsOk?: number;
}
export interface Failover {
  /** The master killed. */
  killed: number;
  /** Its replica, now master. */
  promoted: number;
  /** From the kill until the replica called itself master. */
  promotedMs: number;
  /** From the kill until every live node said cluster_state:ok and gave the dead master's slots to the new one. */
  ms: number;
}

export interface RedisCluster {
  /** Every node started, killed ones included, in port order of creation. */
  readonly nodes: readonly ClusterNode[];
  /** `redis+cluster://127.0.0.1:p1,127.0.0.1:p2,…` (every node, for a client to pick seeds from). */
  readonly url: string;
  /** The temp directory; each node has `<port>/` in it (nodes.conf, redis.log). */
  readonly dir: string;
  /** From the first spawn until the cluster was whole. */
  readonly startMs: number;
  /** The masters serving slots, as a live node sees them now. */
  masters(): Promise<MasterNode[]>;
  replicas(): Promise<ReplicaNode[]>;
  status(): Promise<NodeStatus[]>;
  /** Sends `signal` to one node and resolves once it has exited. @default signal "SIGKILL" */
  killNode(port: number, signal?: NodeJS.Signals): Promise<void>;
  /** After {@link killNode} of a master: waits until its replica is promoted and the cluster is ok again. */
  waitForFailover(port: number, timeoutMs?: number): Promise<Failover>;
  /** SIGKILLs a master (default: the one serving slot 0) and waits for the failover. */
  failover(port?: number): Promise<Failover>;
  /** SIGTERM, SIGKILL after 2 s, then the temp directory goes. Safe to call twice. */
  stop(): Promise<void>;
}

interface Killed {
  id: string;
  at: number;
  replicaPorts: number[];
}

export async function startCluster(options: ClusterOptions = {}): Promise<RedisCluster> {
  const parsed = optionsSchema.safeParse(options);
  if (!parsed.success) throw new Error(`startCluster options: ${z.prettifyError(parsed.error)}`);
  const o = parsed.data;
  const missing = missingBinaries();
  if (missing.length > 0) throw new Error(`a local Redis Cluster needs ${missing.join(" and ")} on PATH`);
  const began = performance.now();
  const deadline = Date.now() + o.startTimeoutMs;
  const dir = mkdtempSync(join(tmpdir(), "dray-cluster-"));
  if (!o.detached) trackDir(dir);
  const ports = await freeNodePorts(o.masters * (1 + o.replicas));
  const cluster = new LocalCluster(ports.map((port) => spawnNode(port, dir, o.nodeTimeoutMs, o.detached)), dir);
  try {
    await Promise.all(cluster.processes.map((p) => answering(p, dir, deadline)));
    await createCluster(ports, o.replicas, deadline);
    await until(async () => {
      const reports = await reportsOf(ports);
      return [...reports.troubles, ...troubles(reports.ok), ...shapeTroubles(reports.ok, o.masters, o.replicas)];
    }, deadline, "the cluster to be whole");
  } catch (error) {
    await cluster.stop();
    throw error;
  }
  cluster.startMs = Math.round(performance.now() - began);
  return cluster;
}

class LocalCluster implements RedisCluster {
  readonly nodes: readonly ClusterNode[];
  readonly url: string;
  startMs = 0;
  #killed = new Map<number, Killed>();
  #stopping: Promise<void> | undefined;

  constructor(readonly processes: NodeProcess[], readonly dir: string) {
    this.nodes = processes.map((p) => ({ host: HOST, port: p.port, pid: p.child.pid ?? 0 }));
    this.url = `redis+cluster://${this.nodes.map((n) => `${n.host}:${n.port}`).join(",")}`;
  }

  async masters(): Promise<MasterNode[]> {
    const lines = await this.#view();
    return lines.filter((n) => n.flags.includes("master") && n.slots.length > 0).map((m) => ({
      ...this.#node(m.port), id: m.id, slots: m.slots,
      replicas: lines.filter((n) => n.masterId === m.id && !failed(n)).map((n) => n.port),
    }));
  }

  async replicas(): Promise<ReplicaNode[]> {
    const lines = await this.#view();
    return lines.filter((n) => n.flags.includes("slave") && !failed(n)).map((r) => ({
      ...this.#node(r.port), id: r.id, masterPort: lines.find((m) => m.id === r.masterId)?.port ?? 0,
    }));
  }

  status(): Promise<NodeStatus[]> {
    return clusterStatus(this.nodes);
  }

  async killNode(port: number, signal: NodeJS.Signals = "SIGKILL"): Promise<void> {
    const p = this.processes.find((n) => n.port === port);
    if (!p) throw new Error(`no node of this cluster on port ${port}`);
    if (!alive(p)) return;
    // Its id and replicas, from itself while it can still tell: waitForFailover needs them.
    const own = await report(port);
    const id = own?.nodes.find((n) => n.flags.includes("myself"))?.id ?? "";
    const replicaPorts = own?.nodes.filter((n) => n.masterId === id && id !== "").map((n) => n.port) ?? [];
    this.#killed.set(port, { id, at: performance.now(), replicaPorts });
    p.child.kill(signal);
    await exit(p);
  }

  async waitForFailover(port: number, timeoutMs = 30_000): Promise<Failover> {
    const killed = this.#killed.get(port);
    if (!killed) throw new Error(`node ${port} was not killed with killNode`);
    if (killed.replicaPorts.length === 0) throw new Error(`node ${port} was not a master with replicas`);
    const dead = new Set([...this.#killed.values()].map((k) => k.id));
    let promoted: { port: number; ms: number } | undefined;
    await until(async () => {
      const reports = await reportsOf(this.processes.filter((p) => alive(p)).map((p) => p.port));
      const heir = reports.ok.find((r) => killed.replicaPorts.includes(r.port) && r.replication.role === "master");
      if (heir && !promoted) promoted = { port: heir.port, ms: performance.now() - killed.at };
      if (!promoted) return [`no replica of ${port} promoted yet`];
      return [...reports.troubles, ...troubles(reports.ok, dead)];
    }, Date.now() + timeoutMs, `the failover of ${port}`);
    const ms = performance.now() - killed.at;
    return { killed: port, promoted: promoted!.port, promotedMs: Math.round(promoted!.ms), ms: Math.round(ms) };
  }

  async failover(port?: number): Promise<Failover> {
    const target = port ?? (await this.masters()).find((m) => m.slots.some(([from]) => from === 0))?.port;
    if (target === undefined) throw new Error("no master serves slot 0");
    await this.killNode(target, "SIGKILL");
    return await this.waitForFailover(target);
  }

  stop(): Promise<void> {
    return (this.#stopping ??= (async () => {
      await Promise.all(this.processes.map((p) => terminate(p, 2000)));
      removeDir(this.dir);
    })());
  }

  /** CLUSTER NODES from the first live node that answers. */
  async #view(): Promise<NodeLine[]> {
    for (const p of this.processes.filter((n) => alive(n))) {
      const r = await report(p.port);
      if (r) return r.nodes;
    }
    throw new Error("no node of the cluster answers");
  }

  #node(port: number): ClusterNode {
    return this.nodes.find((n) => n.port === port) ?? { host: HOST, port, pid: 0 };
  }
}

/** Role and state of each node, by asking it (no process handle needed: the CLI's `status`). */
export function clusterStatus(nodes: readonly ClusterNode[]): Promise<NodeStatus[]> {
  return Promise.all(nodes.map(async (node) => {
    const r = await report(node.port);
    if (!r) return { ...node };
    const role = r.replication.role === "slave" ? "replica" as const : "master" as const;
    return { ...node, role, state: r.info.cluster_state ?? "?", slotsOk: Number(r.info.cluster_slots_ok) };
  }));
}

/**
 * Stops a cluster that {@link startCluster} left running with `detached`. A node is signalled only
 * when the server on its port reports the pid we started there, so a stale record cannot kill a
 * stranger that reused the pid or the port.
 */
export async function stopDetachedCluster(record: { dir: string; nodes: readonly ClusterNode[] }): Promise<void> {
  await Promise.all(record.nodes.map(async (node) => {
    const pid = await ask(node.port, async (r) => Number(/process_id:(\d+)/.exec(String(await r.call("INFO", "server")))?.[1]))
      .catch(() => undefined);
    if (pid !== node.pid) return;
    signal(pid, "SIGTERM");
    // Gone once its port is closed (an orphan's pid can linger as a zombie until init reaps it); one
    // that neither closes it nor answers within 2 s gets the SIGKILL, a no-op on a zombie.
    for (const stop = Date.now() + 2000; (await answers(node.port)) && Date.now() < stop;) await sleep(50);
    signal(pid, "SIGKILL");
  }));
  removeDir(record.dir);
}

async function reportsOf(ports: number[]): Promise<{ ok: NodeReport[]; troubles: string[] }> {
  const reports = await Promise.all(ports.map(report));
  return {
    ok: reports.filter((r): r is NodeReport => r !== undefined),
    troubles: ports.filter((_, i) => !reports[i]).map((p) => `${p}: does not answer`),
  };
}

/** Polls `check` until it finds no trouble; fails with the last troubles after the deadline. */
async function until(check: () => Promise<string[]>, deadline: number, what: string): Promise<void> {
  for (;;) {
    const found = await check();
    if (found.length === 0) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${found.slice(0, 6).join("; ")}`);
    await sleep(50);
  }
}

const failed = (line: NodeLine): boolean => line.flags.includes("fail") || line.flags.includes("fail?");

