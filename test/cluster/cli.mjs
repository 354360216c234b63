#!/usr/bin/env node
// `node test/cluster/cli.mjs start|status|stop`: a local Redis Cluster (test/cluster/cluster.ts) for
// a developer, left running between commands. `start` leaves the servers detached and writes what it
// started to a state file ($DRAY_CLUSTER_STATE, default <tmpdir>/dray-cluster.json), which `status`
// and `stop` read. Plain JS so that Node runs it without a loader; tsx is loaded for cluster.ts (Bun
// and Deno import it as is).
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { parseArgs } from "node:util";
import { enableTypeScriptImports } from "../../src/runtime/typescript.mjs";

const usage = `usage: node test/cluster/cli.mjs start [--masters 3] [--replicas 1] [--node-timeout 1000]
       node test/cluster/cli.mjs status
       node test/cluster/cli.mjs stop
state file: $DRAY_CLUSTER_STATE, default ${join(tmpdir(), "dray-cluster.json")}`;

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: { masters: { type: "string" }, replicas: { type: "string" }, "node-timeout": { type: "string" }, help: { type: "boolean" } },
});
const command = positionals[0];
if (values.help || !["start", "status", "stop"].includes(command ?? "")) {
  console.log(usage);
  process.exit(values.help ? 0 : 2);
}

await enableTypeScriptImports("test/cluster/cluster.ts");
const { clusterStatus, startCluster, stopDetachedCluster } = await import("./cluster.ts");
const stateFile = process.env.DRAY_CLUSTER_STATE || join(tmpdir(), "dray-cluster.json");
const state = existsSync(stateFile) ? JSON.parse(readFileSync(stateFile, "utf8")) : undefined;

/** @param {Array<{ port: number, pid: number, role?: string, state?: string, slotsOk?: number }>} nodes */
function printNodes(nodes) {
  for (const n of nodes) {
    const role = n.role ?? "down";
    console.log(`  127.0.0.1:${n.port}  pid ${String(n.pid).padEnd(7)} ${role.padEnd(8)} ${n.state ? `cluster_state:${n.state} slots_ok:${n.slotsOk}` : ""}`);
  }
}

if (command === "start") {
  if (state) {
    const nodes = await clusterStatus(state.nodes);
    if (nodes.every((n) => n.state === "ok")) {
      console.log(`already running (${stateFile}):`);
      printNodes(nodes);
      console.log(state.url);
      process.exit(0);
    }
    // What is left of an earlier cluster (a reboot, a crash): cleared before a new one starts.
    await stopDetachedCluster(state);
  }
  const number = (/** @type {string | undefined} */ v) => (v === undefined ? undefined : Number(v));
  const cluster = await startCluster({
    detached: true, masters: number(values.masters), replicas: number(values.replicas), nodeTimeoutMs: number(values["node-timeout"]),
  }).catch((error) => {
    console.error(error instanceof Error ? error.message : error);
    process.exit(1);
  });
  writeFileSync(stateFile, JSON.stringify({ url: cluster.url, dir: cluster.dir, nodes: cluster.nodes }, null, 2));
  console.log(`started in ${cluster.startMs} ms (${cluster.dir}):`);
  printNodes(await cluster.status());
  console.log(cluster.url);
  process.exit(0);
}

if (!state) {
  console.log(`no cluster started (${stateFile} is absent)`);
  process.exit(command === "stop" ? 0 : 1);
}
if (command === "status") {
  const nodes = await clusterStatus(state.nodes);
  printNodes(nodes);
  console.log(state.url);
  process.exit(nodes.every((n) => n.state === "ok") ? 0 : 1);
}
await stopDetachedCluster(state);
rmSync(stateFile, { force: true });
console.log(`stopped ${state.nodes.length} nodes, removed ${state.dir}`);
