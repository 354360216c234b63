/** What a result was measured on: machine, versions, command (for the README's results table). */
import { readFileSync } from "node:fs";
import process from "node:process";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import type { RedisClient } from "../src/broker/connection.ts";
import { cpuCount } from "../src/runtime/mod.ts";
import { launchEnv, root, runtimeCommand } from "./spawn.ts";

export interface MachineInfo {
  nproc: number;
  memoryGb: number | null;
  cpu: string | null;
  versions: Record<string, string | null>;
  gitCommit: string | null;
  /** BUN_JSC_forceRAMSize the bench gives Bun workers (dray's launcher does the same), MB; null: none. */
  bunHeapMb: number | null;
  /** BUN_JSC_largeHeapSize given with it (the heap filled before a first collection), MB; null: none. */
  bunFirstHeapMb: number | null;
  /** MIMALLOC_PURGE_DELAY the user set (how long freed memory stays resident; dray sets none), ms; null: unset. */
  bunPurgeDelayMs: number | null;
}

function read(path: string): string | null {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return null;
  }
}

function firstLine(cmd: string[]): string | null {
  try {
    const out = spawnSync(cmd[0]!, cmd.slice(1), { encoding: "utf8", timeout: 10_000, cwd: root });
    const line = String(out.stdout ?? "").trim().split("\n")[0];
    return out.status === 0 && line ? line : null;
  } catch {
    return null;
  }
}

const packageVersion = (dir: string) => {
  const text = read(join(dir, "package.json"));
  return text ? (JSON.parse(text) as { version?: string }).version ?? null : null;
};

export async function machineInfo(redis: RedisClient): Promise<MachineInfo> {
  const mem = /MemTotal:\s+(\d+) kB/.exec(read("/proc/meminfo") ?? "");
  const cpu = /model name\s*:\s*(.+)/.exec(read("/proc/cpuinfo") ?? "");
  const server = String(await redis.call("INFO", "server"));
  const version = (name: "bun" | "node" | "deno") =>
    firstLine([runtimeCommand(name)[0]!, "--version"])?.replace(/^deno /, "").replace(/^v/, "") ?? null;
  const bunEnv = launchEnv("bun");
  return {
    nproc: cpuCount(),
    memoryGb: mem ? Math.round(Number(mem[1]) / 2 ** 20 * 10) / 10 : null,
    cpu: cpu ? cpu[1]!.trim() : null,
    versions: {
      bun: version("bun"), node: version("node"), deno: version("deno"),
      redis: /redis_version:(\S+)/.exec(server)?.[1] ?? null,
      dray: packageVersion(root),
      bullmq: packageVersion(join(root, "node_modules", "bullmq")),
    },
    gitCommit: firstLine(["git", "rev-parse", "--short", "HEAD"]),
    bunHeapMb: heapMb(bunEnv.BUN_JSC_forceRAMSize ?? process.env.BUN_JSC_forceRAMSize),
    bunFirstHeapMb: heapMb(bunEnv.BUN_JSC_largeHeapSize ?? process.env.BUN_JSC_largeHeapSize),
    bunPurgeDelayMs: number(process.env.MIMALLOC_PURGE_DELAY),
  };
}

export function machineLine(m: MachineInfo): string {
  const v = Object.entries(m.versions).map(([k, x]) => `${k} ${x ?? "?"}`).join(", ");
  const extras = [
    m.bunFirstHeapMb === null ? "" : `, first heap ${m.bunFirstHeapMb} MB`,
    m.bunPurgeDelayMs === null ? "" : `, mimalloc purge delay ${m.bunPurgeDelayMs} ms`,
  ].join("");
  const heap = m.bunHeapMb === null ? "" : ` · bun GC budget ${m.bunHeapMb} MB${extras}`;
  return `machine: ${m.nproc} cpus (${m.cpu ?? "?"}), ${m.memoryGb ?? "?"} GB · ${v}${m.gitCommit ? ` · dray@${m.gitCommit}` : ""}${heap}`;
}

function number(text: string | undefined): number | null {
  return text === undefined || text === "" || !Number.isFinite(Number(text)) ? null : Number(text);
}

function heapMb(bytes: string | undefined): number | null {
  return bytes ? Math.round(Number(bytes) / 2 ** 20) : null;
}
