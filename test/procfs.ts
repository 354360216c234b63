/**
 * CPU time and memory of a process and its descendants from Linux /proc, for the isolation tests and
 * the smoke suite: "the CPU returns to idle after a kill" must see a thread or child still spinning.
 * Plain node:fs, so it runs on Bun, Deno and Node alike.
 */
import { spawnSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import process from "node:process";

const ticksPerSecond = 100; // USER_HZ on Linux

/** Deno reads /proc only with --allow-all; with --allow-run, `cat` and `ls` read it for us. */
function readText(path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (error) {
    if ((error as Error).name !== "NotCapable") throw error;
    const out = spawnSync("cat", [path], { encoding: "utf8" });
    if (out.status !== 0) throw new Error(`cannot read ${path}`);
    return out.stdout;
  }
}

function listDir(path: string): string[] {
  try {
    return readdirSync(path);
  } catch (error) {
    if ((error as Error).name !== "NotCapable") throw error;
    const out = spawnSync("ls", [path], { encoding: "utf8" });
    if (out.status !== 0) throw new Error(`cannot list ${path}`);
    return out.stdout.split("\n").filter(Boolean);
  }
}

export function procfsAvailable(): boolean {
  try {
    readText(`/proc/${process.pid}/stat`);
    return true;
  } catch {
    return false;
  }
}

/** The pid and every live descendant's pid. */
export function processTree(pid: number): number[] {
  const out = [pid];
  for (let i = 0; i < out.length; i++) {
    let tasks: string[] = [];
    try {
      tasks = listDir(`/proc/${out[i]}/task`);
    } catch {
      continue; // exited meanwhile
    }
    for (const tid of tasks) {
      try {
        const children = readText(`/proc/${out[i]}/task/${tid}/children`).trim();
        if (children) out.push(...children.split(/\s+/).map(Number));
      } catch {
        // exited meanwhile
      }
    }
  }
  return out;
}

/** The process's command line, arguments joined by spaces ("" once it is gone). */
export function commandLine(pid: number): string {
  try {
    return readText(`/proc/${pid}/cmdline`).split("\0").join(" ").trim();
  } catch {
    return "";
  }
}

/** Whether the process exists and has not exited (a zombie nobody reaped counts as exited). */
export function isRunning(pid: number): boolean {
  let stat: string;
  try {
    stat = readText(`/proc/${pid}/stat`);
  } catch {
    return false;
  }
  const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
  return state !== "Z" && state !== "X";
}

/** CPU seconds (user + system) used so far by the process and its live descendants. */
export function treeCpuSeconds(pid: number): number {
  let ticks = 0;
  for (const p of processTree(pid)) {
    try {
      // Fields after the command (which may hold spaces) start after the last ")".
      const stat = readText(`/proc/${p}/stat`);
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      ticks += Number(fields[11]) + Number(fields[12]); // utime, stime (fields 14 and 15)
    } catch {
      // exited meanwhile
    }
  }
  return ticks / ticksPerSecond;
}

/** CPU seconds the process tree uses during the next `ms`. */
export async function cpuDuring(pid: number, ms: number): Promise<number> {
  const before = treeCpuSeconds(pid);
  await new Promise((r) => setTimeout(r, ms));
  return treeCpuSeconds(pid) - before;
}

/** Resident memory of one process, bytes. */
export function rssOf(pid: number): number {
  const status = readText(`/proc/${pid}/status`);
  const kb = /^VmRSS:\s+(\d+) kB/m.exec(status)?.[1];
  return Number(kb ?? 0) * 1024;
}
