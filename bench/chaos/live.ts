/**
 * What a chaos run started and has not torn down yet: processes and temp directories. The harness
 * tears down in `finally`; this is the last line for the paths that skip it (a test that times out,
 * Ctrl-C, an exception while starting), so that no redis-server or worker outlives the run.
 */
import type { ChildProcess } from "node:child_process";
import { rmSync } from "node:fs";
import process from "node:process";

const children = new Set<ChildProcess>();
const dirs = new Set<string>();
let hooked = false;

function hook(): void {
  if (hooked) return;
  hooked = true;
  // "exit" handlers must be synchronous: kill and rm are. A signal ends the process without "exit":
  // the children die with it anyway (setpriv --pdeathsig), the temp directory would not.
  process.once("exit", () => killEverything());
  for (const [signal, code] of [["SIGINT", 130], ["SIGTERM", 143]] as const) {
    process.once(signal, () => {
      killEverything();
      process.exit(code);
    });
  }
}

export function trackChild(child: ChildProcess): void {
  hook();
  children.add(child);
  child.once("exit", () => children.delete(child));
}

export function trackDir(dir: string): void {
  hook();
  dirs.add(dir);
}

/** Kept for a post-mortem: no longer removed on exit. */
export function forgetDir(dir: string): void {
  dirs.delete(dir);
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
  dirs.delete(dir);
}

/** SIGKILLs every tracked process (stopped ones too) and removes every tracked directory. */
export function killEverything(): void {
  for (const child of children) {
    try {
      child.kill("SIGKILL");
    } catch {
      // already gone
    }
  }
  children.clear();
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  dirs.clear();
}

/** Whether anything is still tracked (the test checks that a run left nothing behind). */
export function leftovers(): { processes: number; dirs: string[] } {
  return { processes: [...children].filter((c) => c.exitCode === null && c.signalCode === null).length, dirs: [...dirs] };
}
