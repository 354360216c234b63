// What goes before a child's command so that the kernel kills the child when its parent dies, a
// SIGKILL included. Plain JS so that the Node launcher (src/cli/launch.mjs) can load it without a
// loader; the process executor gets it through src/runtime/mod.ts.
//
// Why: a child stuck in a CPU loop cannot notice that its parent is gone, and a worker whose
// launcher was killed with SIGKILL (a process manager's last resort) would otherwise go on
// consuming jobs that nobody stops. On Linux, util-linux's `setpriv --pdeathsig KILL --` (on every
// Debian and most Linux systems) sets the parent-death signal and then execs the command in the same
// process, with its stdio and IPC channel. The kernel sends the signal when the *thread* that spawned
// the child ends: dray spawns from the main thread, which ends only with the process. Where there is
// no setpriv (macOS, images without util-linux) the prefix is empty and nothing changes.
import { statSync } from "node:fs";
import { delimiter, join } from "node:path";
import process from "node:process";

/** @type {string[] | undefined} */
let prefix;

/** @returns {string[]} `["setpriv", "--pdeathsig", "KILL", "--"]`, or `[]` where it cannot be had. */
export function dieWithParent() {
  return (prefix ??= process.platform === "linux" && onPath("setpriv") ? ["setpriv", "--pdeathsig", "KILL", "--"] : []);
}

/**
 * Whether PATH has an executable file `name`, by its mode bits (Deno's access() needs a permission
 * dray does not ask for).
 * @param {string} name
 */
function onPath(name) {
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    if (!dir) continue;
    try {
      const stat = statSync(join(dir, name));
      if (stat.isFile() && (stat.mode & 0o111) !== 0) return true;
    } catch {
      // not in this directory
    }
  }
  return false;
}
