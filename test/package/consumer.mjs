#!/usr/bin/env node
// The package as a user gets it: `npm pack` this checkout, install the tarball into a fresh project
// outside the repo, and there, on each of Node (plain .mjs, no tsx), Bun and Deno, start
// `dray worker app.mjs` through the package's bin, send a job to the real Redis under a prefix of its
// own, and read its result. Also: `dray/testing` in a user's unit test, `dray/extend`, a `.ts` app on
// Node with and without tsx. Plain JS so that Node runs it without a loader. Ends with one line
// `N passed, N failed, N skipped`, like the smoke suites.
//
// PACKAGE_DIR packs another checkout (to see this fail on a tree that ships TypeScript to npm).
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import process from "node:process";

const root = process.env.PACKAGE_DIR ?? join(dirname(fileURLToPath(import.meta.url)), "../..");
const bun = process.env.BUN_BIN ?? "bun";
const deno = process.env.DENO_BIN ?? "deno";
const denoPermissions = ["--allow-env", "--allow-net", "--allow-read", "--allow-sys=hostname,osRelease,cpus", "--allow-run"];
const prefix = `pkg-${process.pid}-${Date.now().toString(36)}`;
const results = { passed: 0, failed: 0, skipped: 0 };
// A user's shell, not `npm test`'s: npm's variables (npm_config_user_agent above all) would tell the
// launcher that npm, not Bun, asked for it, and Bun's `bun x` keeps them as it finds them.
const shell = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("npm_")));
const started = performance.now();

async function check(name, fn) {
  try {
    const detail = await fn();
    results.passed++;
    console.log(`ok - ${name}${detail ? ` (${detail})` : ""}`);
  } catch (error) {
    results.failed++;
    console.log(`not ok - ${name}\n  ${String(error?.stack ?? error).split("\n").join("\n  ")}`);
  }
}

function assert(condition, message) {
  if (!condition) throw new Error(message);
}

/** Runs a command to its end; returns { code, out } (stdout and stderr together). */
function run(cmd, args, options = {}) {
  const r = spawnSync(cmd, args, { encoding: "utf8", timeout: 120_000, ...options, env: { ...shell, DRAY_PREFIX: prefix, ...options.env } });
  return { code: r.status, out: `${r.stdout ?? ""}${r.stderr ?? ""}${r.error ? String(r.error) : ""}` };
}

/**
 * Starts a long-running command; `stop()` sends SIGTERM and resolves with its exit code and output.
 * `group`: to its whole process group, for `npx`, which does not pass SIGTERM on to the command.
 */
function start(cmd, args, cwd, group = false) {
  const child = spawn(cmd, args, {
    cwd, env: { ...shell, DRAY_PREFIX: prefix, DRAY_LOG_FORMAT: "json" }, stdio: ["ignore", "pipe", "pipe"], detached: group,
  });
  const signal = (name) => {
    try {
      if (group) process.kill(-child.pid, name);
      else child.kill(name);
    } catch {
      // already gone
    }
  };
  let out = "";
  child.stdout.on("data", (d) => (out += d));
  child.stderr.on("data", (d) => (out += d));
  const exited = new Promise((resolve) => child.on("close", (code) => resolve(code)));
  return {
    output: () => out,
    async stop() {
      signal("SIGTERM");
      const timer = setTimeout(() => signal("SIGKILL"), 15_000);
      const code = await exited;
      clearTimeout(timer);
      return { code, out };
    },
  };
}

const APP = `import { actor } from "dray";
export const add = actor("add", { queue: QUEUE }, async ({ a, b }) => ({ sum: a + b, runtime: typeof Bun !== "undefined" ? "bun" : typeof Deno !== "undefined" ? "deno" : "node" }));
`;
const SEND = `import { closeBroker } from "dray";
import { add } from "./APP";
const job = await add.send({ a: 2, b: 3 });
const result = await job.result({ timeout: 30_000 });
console.log(JSON.stringify({ id: job.id, result, status: await job.status() }));
await closeBroker();
`;

/** A worker on `runtime` through the package's bin, and one job sent to it from that runtime. */
async function roundTrip(dir, name, workerCmd, sendCmd, app = "app.mjs") {
  const group = workerCmd[0] === "npx";
  const queue = `q-${name}`;
  writeFileSync(join(dir, app), APP.replace("QUEUE", JSON.stringify(queue)));
  writeFileSync(join(dir, `send-${name}.mjs`), SEND.replace("./APP", `./${app}`));
  const worker = start(workerCmd[0], [...workerCmd.slice(1), "worker", app, "--queues", queue], dir, group);
  try {
    const sent = run(sendCmd[0], [...sendCmd.slice(1), `send-${name}.mjs`], { cwd: dir, timeout: 45_000 });
    const line = sent.out.trim().split("\n").find((l) => l.startsWith("{\"id\""));
    assert(sent.code === 0 && line, `the sender failed (exit ${sent.code}):\n${sent.out}\nworker:\n${worker.output()}`);
    const { result, status } = JSON.parse(line);
    assert(result.sum === 5, `result ${JSON.stringify(result)}`);
    assert(result.runtime === name, `the job ran on ${result.runtime}, not ${name}`);
    assert(status === "completed", `status ${status}`);
  } finally {
    const { code, out } = await worker.stop();
    // npx itself dies of the signal (its exit code is null); the worker's own log tells how it ended.
    assert(code === 0 || (group && code === null), `the worker exited ${code} on SIGTERM:\n${out}`);
    assert(/"msg":"worker started"/.test(out), `no "worker started" in the worker's log:\n${out}`);
    assert(/"unsettled":0,"msg":"worker stopped"/.test(out), `no clean "worker stopped" in the worker's log:\n${out}`);
  }
  return `result read back, status completed`;
}

const work = mkdtempSync(join(tmpdir(), "dray-consumer-"));
const project = join(work, "app");
let tarball;
try {
  await check("npm pack builds and packs the checkout", () => {
    const packed = run("npm", ["pack", "--json", "--pack-destination", work], { cwd: root, timeout: 300_000 });
    assert(packed.code === 0, packed.out);
    // The prepack build prints to the same stdout: the report is the JSON array on lines of its own.
    const json = /^\[\n[\s\S]*?^\]$/m.exec(packed.out);
    assert(json, `no JSON report from npm pack:\n${packed.out}`);
    const info = JSON.parse(json[0])[0];
    tarball = join(work, info.filename);
    const files = info.files.map((f) => f.path);
    for (const needed of ["dist/src/mod.js", "dist/src/mod.d.ts", "dist/src/testing.js", "dist/src/extend.js", "dist/src/cli/launch.mjs", "dist/workers/thread.js", "LICENSE", "README.md"]) {
      assert(files.includes(needed), `the tarball lacks ${needed}`);
    }
    const stray = files.filter((f) => /^(test|\.ci|examples)\//.test(f));
    assert(stray.length === 0, `the tarball ships ${stray.slice(0, 5).join(", ")}`);
    return `${info.entryCount} files, ${(info.size / 1024).toFixed(0)} kB packed`;
  });

  await check("the tarball installs into a fresh project with no install scripts", () => {
    run("mkdir", ["-p", project]);
    writeFileSync(join(project, "package.json"), JSON.stringify({ name: "consumer", private: true, type: "module" }));
    const installed = run("npm", ["install", "--no-audit", "--no-fund", "--prefer-offline", tarball, "zod"], { cwd: project, timeout: 300_000 });
    assert(installed.code === 0, installed.out);
    assert(!/install-scripts|postinstall/.test(installed.out), `npm warned about install scripts:\n${installed.out}`);
    const tree = run("npm", ["ls", "--all", "--parseable"], { cwd: project });
    assert(!/node_modules\/(tsx|esbuild|typescript)$/m.test(tree.out), "tsx, esbuild or typescript was installed with dray");
    return `${tree.out.trim().split("\n").length - 1} packages`;
  });

  await check("Node: `npx dray worker app.mjs` runs a job, no tsx", () =>
    roundTrip(project, "node", ["npx", "--no-install", "dray"], [process.execPath]));
  await check("Bun: `bun x dray worker app.mjs` runs a job", () =>
    roundTrip(project, "bun", [bun, "x", "dray"], [bun]));
  await check("Deno: `deno run npm:dray worker app.mjs` runs a job", () =>
    roundTrip(project, "deno", [deno, "run", ...denoPermissions, "npm:dray"], [deno, "run", ...denoPermissions]));

  await check("dray/testing: MemoryBroker and drain in a user's unit test, on Node, Bun and Deno", () => {
    writeFileSync(join(project, "unit.mjs"), `import { actor } from "dray";
import { MemoryBroker, drain, setBroker } from "dray/testing";
import { Supervisor, RedisBroker } from "dray/extend";
const double = actor("double", async (n) => n * 2);
const broker = new MemoryBroker();
setBroker(broker);
const job = await double.send(21);
const tally = await drain(broker);
console.log(JSON.stringify({ tally, result: await job.result(), extend: typeof Supervisor === "function" && typeof RedisBroker === "function" }));
`);
    for (const cmd of [[process.execPath], [bun], [deno, "run", ...denoPermissions]]) {
      const r = run(cmd[0], [...cmd.slice(1), "unit.mjs"], { cwd: project });
      assert(r.code === 0, `${cmd[0]}: exit ${r.code}\n${r.out}`);
      const out = JSON.parse(r.out.trim().split("\n").pop());
      assert(out.tally.completed === 1 && out.result === 42 && out.extend, `${cmd[0]}: ${r.out}`);
    }
  });

  await check("the entry exports the user's API only", () => {
    const r = run(process.execPath, ["-e", "import('dray').then((m) => console.log(Object.keys(m).join(',')))"], { cwd: project });
    const names = r.out.trim().split(",");
    for (const api of ["actor", "sendTask", "cron", "getJob", "group", "pipeline", "configure", "startWorker", "Retry", "DrayError"]) {
      assert(names.includes(api), `dray does not export ${api}: ${r.out}`);
    }
    for (const internal of ["MemoryBroker", "RedisBroker", "Supervisor", "ThreadExecutor", "registry"]) {
      assert(!names.includes(internal), `dray exports ${internal}`);
    }
    return `${names.length} names`;
  });

  await check("`npx dray dashboard` serves the page from the installed package, and dray/dashboard imports", async () => {
    const server = start("npx", ["--no-install", "dray", "dashboard", "--port", "0"], project, true);
    try {
      let url;
      for (let i = 0; i < 200 && !url; i++) {
        url = /dray dashboard on (http:\/\/\S+)/.exec(server.output())?.[1];
        if (!url) await new Promise((r) => setTimeout(r, 100));
      }
      assert(url, `no "dray dashboard on" line:\n${server.output()}`);
      for (const path of ["", "assets/dashboard.js", "workers"]) {
        const res = await fetch(`${url}${path}`);
        assert(res.status === 200, `GET /${path}: ${res.status}`);
        await res.text();
      }
      const mounted = run(process.execPath, ["-e", "import('dray/dashboard').then(async (m) => { const d = m.dashboard({ token: '' }); const r = await d.fetch(new Request('http://x/assets/dashboard.css')); console.log(r.status, d.readOnly); await d.close(); })"], { cwd: project });
      assert(mounted.out.trim().endsWith("200 true"), `dray/dashboard as a handler: ${mounted.out}`);
      return url;
    } finally {
      await server.stop();
    }
  });

  await check("Node: `dray worker app.ts` without tsx says how to fix it", () => {
    writeFileSync(join(project, "typed.ts"), APP.replace("QUEUE", "\"typed\"").replace("async ({ a, b })", "async ({ a, b }: { a: number; b: number })"));
    const r = run("npx", ["--no-install", "dray", "worker", "typed.ts"], { cwd: project, timeout: 30_000 });
    assert(r.code === 2, `exit ${r.code}:\n${r.out}`);
    assert(/typed\.ts is TypeScript/.test(r.out) && /npm install -D tsx/.test(r.out), r.out);
    assert(!/\n\s+at /.test(r.out), `a stack trace:\n${r.out}`);
  });

  await check("Node: with tsx installed, `dray worker app.ts` runs a job in the pool threads", async () => {
    const installed = run("npm", ["install", "--no-audit", "--no-fund", "--prefer-offline", "-D", "tsx"], { cwd: project, timeout: 300_000 });
    assert(installed.code === 0, installed.out);
    return await roundTrip(project, "node", ["npx", "--no-install", "dray"], [process.execPath, "--import", "tsx"], "app.ts");
  });
} finally {
  // What the jobs left under this run's prefix, then the temporary project.
  if (tarball) {
    const clean = `import { Redis } from "ioredis";
const r = new Redis(process.env.REDIS_URL ?? "redis://127.0.0.1:6379");
let cursor = "0";
do {
  const [next, keys] = await r.scan(cursor, "MATCH", ${JSON.stringify(`*${prefix}*`)}, "COUNT", 500);
  cursor = next;
  if (keys.length) await r.unlink(...keys);
} while (cursor !== "0");
await r.quit();
`;
    try {
      writeFileSync(join(project, "clean.mjs"), clean);
      run(process.execPath, ["clean.mjs"], { cwd: project });
    } catch {
      // the project was never made
    }
  }
  rmSync(work, { recursive: true, force: true });
}

console.log(`# package in ${((performance.now() - started) / 1000).toFixed(0)} s`);
console.log(`${results.passed} passed, ${results.failed} failed, ${results.skipped} skipped`);
process.exit(results.failed > 0 ? 1 : 0);
