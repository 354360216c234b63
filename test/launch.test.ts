/**
 * The launcher (`bun run worker` → src/cli/launch.mjs → bun src/cli/main.ts): the GC budget it gives
 * a Bun worker, and that the worker dies with it. A stand-in "bun" takes the worker's place.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { spawn, spawnSync } from "node:child_process";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { bunHeapEnv, defaultHeapMb, firstHeapBytes } from "../src/runtime/heap.mjs";
import { dieWithParent } from "../src/runtime/parent_death.mjs";
import { until } from "./helpers.ts";
import { commandLine, isRunning, processTree, procfsAvailable } from "./procfs.ts";

const dir = mkdtempSync(join(tmpdir(), "dray-launch-"));
const fakeBun = join(dir, "bun");
writeFileSync(fakeBun, '#!/bin/sh\necho "budget=${BUN_JSC_forceRAMSize:-none} first=${BUN_JSC_largeHeapSize:-none} purge=${MIMALLOC_PURGE_DELAY:-none} args=$*"\n');
chmodSync(fakeBun, 0o755);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Runs the launcher as `bun run` would (npm_execpath = the bun binary), with `env` on top of a clean one. */
function launch(env: Record<string, string>) {
  const base = Object.fromEntries(Object.entries(process.env)
    .filter(([k]) => !["BUN_JSC_forceRAMSize", "BUN_JSC_largeHeapSize", "MIMALLOC_PURGE_DELAY", "DRAY_HEAP_MB", "npm_config_user_agent", "npm_execpath"].includes(k)));
  const out = spawnSync("node", ["src/cli/launch.mjs", "worker", "app.ts"], {
    cwd: join(import.meta.dir, ".."), encoding: "utf8",
    env: { ...base, npm_execpath: fakeBun, npm_config_user_agent: "bun/1.4.5", ...env },
  });
  return { status: out.status, stdout: out.stdout.trim(), stderr: out.stderr.trim() };
}

describe("launcher GC budget", () => {
  test("given no setting, when a Bun worker is launched, then it gets the default budget and its arguments, and mimalloc its own purge delay", () => {
    const r = launch({});
    expect(r.status).toBe(0);
    expect(r.stdout).toBe(`budget=${defaultHeapMb * 1024 * 1024} first=${firstHeapBytes} purge=none args=${join(import.meta.dir, "..", "src/cli/main.ts")} worker app.ts`);
  });

  test("given DRAY_HEAP_MB, when launched, then the budget follows it; 0 leaves Bun's own sizing", () => {
    expect(launch({ DRAY_HEAP_MB: "64" }).stdout).toStartWith(`budget=${64 * 1024 * 1024} first=${firstHeapBytes} purge=none `);
    expect(launch({ DRAY_HEAP_MB: "0" }).stdout).toStartWith("budget=none first=none purge=none ");
  });

  test("given the user's own BUN_JSC_forceRAMSize, BUN_JSC_largeHeapSize or MIMALLOC_PURGE_DELAY, when launched, then each is kept", () => {
    expect(launch({ BUN_JSC_forceRAMSize: "123456789", DRAY_HEAP_MB: "64" }).stdout)
      .toStartWith(`budget=123456789 first=${firstHeapBytes} purge=none `);
    expect(launch({ BUN_JSC_largeHeapSize: "2097152" }).stdout)
      .toStartWith(`budget=${defaultHeapMb * 1024 * 1024} first=2097152 purge=none `);
    expect(launch({ MIMALLOC_PURGE_DELAY: "100" }).stdout)
      .toStartWith(`budget=${defaultHeapMb * 1024 * 1024} first=${firstHeapBytes} purge=100 `);
  });

  test("given a DRAY_HEAP_MB that is not a size, when launched, then it exits 2 naming the variable and starts nothing", () => {
    const r = launch({ DRAY_HEAP_MB: "lots" });
    expect(r.status).toBe(2);
    expect(r.stdout).toBe("");
    expect(r.stderr).toContain('DRAY_HEAP_MB must be a size in MB (0 leaves Bun\'s own heap sizing), not "lots"');
  });

  test("given the helper, when asked for a negative size, then it throws rather than guessing", () => {
    expect(() => bunHeapEnv({ DRAY_HEAP_MB: "-1" })).toThrow(/DRAY_HEAP_MB/);
    expect(bunHeapEnv({ DRAY_HEAP_MB: "1.5" })).toEqual({
      BUN_JSC_forceRAMSize: String(Math.round(1.5 * 1024 * 1024)), BUN_JSC_largeHeapSize: String(firstHeapBytes),
    });
  });
});

describe("launcher and worker", () => {
  // The kernel's parent-death signal, through setpriv: Linux only.
  const it = dieWithParent().length > 0 && procfsAvailable() ? test : test.skip;

  it("given a process manager kills the launcher with SIGKILL, when that happens, then its worker dies too", async () => {
    // A stand-in "bun" (the launcher knows Bun by that name) that stays up until it is killed.
    const sleeper = join(mkdtempSync(join(dir, "sleepy-")), "bun");
    writeFileSync(sleeper, "#!/bin/sh\nexec sleep 30\n");
    chmodSync(sleeper, 0o755);
    const launcher = spawn("node", ["src/cli/launch.mjs", "worker", "app.ts"], {
      cwd: join(import.meta.dir, ".."), stdio: "ignore",
      env: { ...process.env, npm_execpath: sleeper, npm_config_user_agent: "bun/1.4.5" },
    });
    let worker: number | undefined;
    try {
      worker = await until(() => processTree(launcher.pid!).find((pid) => commandLine(pid).startsWith("sleep 30")), "the worker started", 5_000);
      launcher.kill("SIGKILL");
      await until(() => !isRunning(worker!), "the worker gone", 3_000);
    } finally {
      if (worker !== undefined && isRunning(worker)) process.kill(worker, "SIGKILL");
      launcher.kill("SIGKILL");
    }
  }, 15_000);
});
