/**
 * What a process tree costs, read from /proc (Linux): resident memory of the pid and all its live
 * descendants, and CPU time (user + system, including reaped children). Where there is no /proc
 * the figures are null rather than wrong.
 */
import { readdirSync, readFileSync } from "node:fs";
import { spawnSync } from "node:child_process";

interface Stat {
  ppid: number;
  /** utime + stime + cutime + cstime, in clock ticks. */
  ticks: number;
  rssPages: number;
}

let ticksPerSecond: number | undefined;
let pageSize: number | undefined;

function sysconf(name: string, fallback: number): number {
  try {
    const out = spawnSync("getconf", [name], { encoding: "utf8", timeout: 2_000 });
    const n = Number(String(out.stdout).trim());
    return Number.isFinite(n) && n > 0 ? n : fallback;
  } catch {
    return fallback;
  }
}

function readStat(pid: number): Stat | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return undefined;
  }
  // The command name may hold spaces and parentheses: the fields start after the last ")".
  const f = text.slice(text.lastIndexOf(")") + 2).split(" ");
  // f[0] is field 3 (state): ppid is field 4, utime..cstime 14..17, rss 24.
  const n = (field: number) => Number(f[field - 3] ?? 0);
  return { ppid: n(4), ticks: n(14) + n(15) + n(16) + n(17), rssPages: n(24) };
}

/** The pid and every live descendant. */
export function processTree(root: number): number[] {
  const children = new Map<number, number[]>();
  let entries: string[];
  try {
    entries = readdirSync("/proc");
  } catch {
    return [root];
  }
  for (const name of entries) {
    if (!/^\d+$/.test(name)) continue;
    const s = readStat(Number(name));
    if (!s) continue;
    const list = children.get(s.ppid) ?? [];
    list.push(Number(name));
    children.set(s.ppid, list);
  }
  const tree: number[] = [];
  const todo = [root];
  while (todo.length > 0) {
    const pid = todo.pop()!;
    tree.push(pid);
    todo.push(...(children.get(pid) ?? []));
  }
  return tree;
}

export interface TreeSample {
  rssBytes: number;
  cpuMs: number;
}

/** RSS and CPU of a process tree now; undefined when the root is gone or there is no /proc. */
export function sampleTree(root: number): TreeSample | undefined {
  ticksPerSecond ??= sysconf("CLK_TCK", 100);
  pageSize ??= sysconf("PAGESIZE", 4096);
  if (!readStat(root)) return undefined;
  let rss = 0;
  let ticks = 0;
  for (const pid of processTree(root)) {
    const s = readStat(pid);
    if (!s) continue;
    rss += s.rssPages * pageSize;
    ticks += s.ticks;
  }
  return { rssBytes: rss, cpuMs: (ticks * 1000) / ticksPerSecond };
}

/** Samples a tree's RSS every `everyMs` and keeps the peak, until stopped. */
export class PeakRss {
  #peak = 0;
  readonly #timer: ReturnType<typeof setInterval>;

  constructor(readonly root: number, everyMs = 100) {
    this.#sample();
    this.#timer = setInterval(() => this.#sample(), everyMs);
  }

  #sample(): void {
    const s = sampleTree(this.root);
    if (s) this.#peak = Math.max(this.#peak, s.rssBytes);
  }

  /** Peak in bytes, or null when nothing could be read. */
  stop(): number | null {
    this.#sample();
    clearInterval(this.#timer);
    return this.#peak > 0 ? this.#peak : null;
  }
}
