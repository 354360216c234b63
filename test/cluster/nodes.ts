/**
 * The processes of a local Redis Cluster: redis-server nodes on free port pairs, `redis-cli
 * --cluster create`, and their ends.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdirSync, readFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import process from "node:process";
import { trackChild } from "../../bench/chaos/live.ts";
import { freePort, redisServerAvailable } from "../../bench/chaos/redis_server.ts";
import { dieWithParent } from "../../src/runtime/parent_death.mjs";
import { HOST, ask } from "./topology.ts";

export interface NodeProcess {
  port: number;
  child: ChildProcess;
  /** It exited (or never started). */
  ended: boolean;
  exited: Promise<void>;
}

const BUS_OFFSET = 10_000;

/** Which of redis-server and redis-cli are not on PATH. */
export function missingBinaries(): string[] {
  const cli = spawnSync("redis-cli", ["--version"], { stdio: "ignore" }).status === 0;
  return [...(redisServerAvailable() ? [] : ["redis-server"]), ...(cli ? [] : ["redis-cli"])];
}

export function spawnNode(port: number, dir: string, nodeTimeoutMs: number, detached: boolean): NodeProcess {
  const nodeDir = join(dir, String(port));
  mkdirSync(nodeDir);
  const args = [
    "--port", String(port), "--bind", HOST, "--dir", nodeDir, "--logfile", join(nodeDir, "redis.log"),
    "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", String(nodeTimeoutMs),
    "--save", "", "--appendonly", "no",
    // A master otherwise waits 5 s for more replicas before it sends the first one its data.
    "--repl-diskless-sync-delay", "0",
  ];
  // A detached server must outlive us: no parent-death signal, a process group of its own.
  const [cmd, ...rest] = [...(detached ? [] : dieWithParent()), "redis-server", ...args];
  const child = spawn(cmd!, rest, { cwd: nodeDir, stdio: "ignore", detached });
  const node: NodeProcess = { port, child, ended: false, exited: Promise.resolve() };
  // A failed spawn emits "error" and may never emit "exit": either one ends it.
  node.exited = new Promise<void>((resolve) => {
    const end = () => {
      node.ended = true;
      resolve();
    };
    child.once("exit", end);
    child.once("error", end);
  });
  // Unref'd either way: a test that forgets stop() must not hang its runner, and on exit the
  // servers it did not stop are SIGKILLed (trackChild) unless detached.
  child.unref();
  if (!detached) trackChild(child);
  return node;
}

/** Resolves once the node answers PING; fails with its log when it exits or the deadline passes. */
export async function answering(p: NodeProcess, dir: string, deadline: number): Promise<void> {
  for (;;) {
    if (!alive(p)) throw new Error(`redis-server on port ${p.port} exited:\n${logTail(dir, p.port)}`);
    if (await answers(p.port)) return;
    if (Date.now() > deadline) throw new Error(`redis-server on port ${p.port} did not answer:\n${logTail(dir, p.port)}`);
    await sleep(50);
  }
}

export async function createCluster(ports: number[], replicas: number, deadline: number): Promise<void> {
  const args = ["--cluster", "create", ...ports.map((p) => `${HOST}:${p}`), "--cluster-replicas", String(replicas), "--cluster-yes"];
  const [cmd, ...rest] = [...dieWithParent(), "redis-cli", ...args];
  const child = spawn(cmd!, rest, { stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  child.stdout!.on("data", (d: Buffer) => (output += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (output += d.toString()));
  const timer = setTimeout(() => child.kill("SIGKILL"), Math.max(0, deadline - Date.now()));
  const code = await new Promise<number | null>((resolve) => child.once("close", resolve));
  clearTimeout(timer);
  if (code === null) throw new Error(`redis-cli --cluster create did not finish before the start timeout:\n${output}`);
  if (code !== 0) throw new Error(`redis-cli --cluster create failed (exit ${code}):\n${output}`);
}

/**
 * `count` client ports, all different, each with its cluster bus port (port + 10000) free as well:
 * Redis opens both, and refuses a client port above 55535 for that reason.
 */
export async function freeNodePorts(count: number): Promise<number[]> {
  const taken = new Set<number>();
  const ports: number[] = [];
  for (let tries = 0; ports.length < count; tries++) {
    if (tries > count * 50) throw new Error("found no free port pairs for the cluster");
    const port = await freePort();
    const bus = port + BUS_OFFSET;
    if (bus > 65535 || taken.has(port) || taken.has(bus) || !(await portFree(bus))) continue;
    taken.add(port).add(bus);
    ports.push(port);
  }
  return ports;
}

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once("error", () => resolve(false));
    server.listen(port, HOST, () => server.close(() => resolve(true)));
  });
}

/** SIGTERM; SIGKILL when it is still there after `graceMs`. */
export async function terminate(p: NodeProcess, graceMs: number): Promise<void> {
  if (!alive(p)) return;
  p.child.kill("SIGTERM");
  const timer = setTimeout(() => alive(p) && p.child.kill("SIGKILL"), graceMs);
  await exit(p);
  clearTimeout(timer);
}

/** Waits for the node's exit, keeping the event loop up meanwhile: its process is unref'd. */
export async function exit(p: NodeProcess): Promise<void> {
  const keepAlive = setInterval(() => undefined, 1000);
  await p.exited;
  clearInterval(keepAlive);
}

function logTail(dir: string, port: number): string {
  try {
    return readFileSync(join(dir, String(port), "redis.log"), "utf8").split("\n").slice(-15).join("\n");
  } catch {
    return "(no redis.log)";
  }
}

/** Whether the node's process is still there (it exited or never started otherwise). */
export const alive = (p: NodeProcess): boolean => !p.ended;
export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
export const answers = (port: number): Promise<boolean> => ask(port, (r) => r.ping()).then(() => true, () => false);

export function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch {
    // already gone
  }
}
