#!/usr/bin/env node
// `npm test`: the whole suite, as CI runs it. Plain JS so that Node can start it before anything is
// installed. It (1) makes sure Bun (a devDependency) and Deno (installed outside the project: a
// `deno` in node_modules/.bin breaks `deno task`) are there, (2) typechecks, (3) runs the core suite
// on Bun (two files at a time, then the chaos run alone), (4) runs the smoke suite on each of Bun,
// Deno and Node, (5) drives the dashboard in headless Chromium (test/browser/dashboard.ts), (6) packs
// the package and uses it from a fresh project on each runtime (test/package/consumer.mjs), (7)
// checks that JSR would take it (`deno publish --dry-run`), and ends with one line
// `N passed, N failed, N skipped` over all of them. Skipped are what cannot run here (tests that need
// Redis or Chromium when it is absent outside CI), counted apart so that they are not mistaken for
// passes.
import { spawn, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { homedir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import process from "node:process";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const DENO_VERSION = "2.9.6";
const denoPermissions = ["--allow-env", "--allow-net", "--allow-read", "--allow-sys=hostname,osRelease,cpus", "--allow-run"];

function which(cmd, args = ["--version"]) {
  return spawnSync(cmd, args, { stdio: "ignore" }).status === 0;
}

function ensureBun() {
  const local = join(root, "node_modules/.bin/bun");
  if (existsSync(local) && which(local)) return local;
  if (which("bun")) return "bun";
  console.log("# installing npm packages (bun is a devDependency)");
  spawnSync("npm", ["ci", "--no-audit", "--no-fund"], { cwd: root, stdio: "inherit" });
  return local;
}

function ensureDeno() {
  if (process.env.DENO_BIN && which(process.env.DENO_BIN)) return process.env.DENO_BIN;
  if (which("deno")) return "deno";
  const tools = join(homedir(), ".cache", "dray-tools");
  const bin = join(tools, "node_modules/.bin/deno");
  if (!existsSync(bin) || !which(bin)) {
    console.log(`# installing deno ${DENO_VERSION} into ${tools} (outside the project)`);
    spawnSync("npm", ["install", "--no-audit", "--no-fund", "--prefix", tools, `deno@${DENO_VERSION}`], { stdio: "inherit" });
  }
  return bin;
}

/** Runs a command, streaming its output, and returns [exit code, output]. */
function run(cmd, args, env = {}) {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { cwd: root, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    const pass = (stream, sink) => stream.on("data", (d) => {
      out += d.toString();
      sink.write(d);
    });
    pass(child.stdout, process.stdout);
    // Both to stdout: bun reports tests on stderr, and CI logs must show it in order with the rest.
    pass(child.stderr, process.stdout);
    // "close", not "exit": the pipes may still hold the summary when the process has exited.
    child.on("close", (code) => resolve([code ?? 1, out]));
  });
}

const bun = ensureBun();
const deno = ensureDeno();
const env = { BUN_BIN: bun, DENO_BIN: deno };
const suites = [];

console.log("\n# typecheck (tsc)");
{
  const [code] = await run(process.execPath, [join(root, "node_modules/typescript/bin/tsc"), "-p", "."]);
  suites.push({ name: "typecheck", passed: code === 0 ? 1 : 0, failed: code === 0 ? 0 : 1, skipped: 0 });
}

/** One `bun test` run: its counts from bun's summary. */
async function bunTest(args) {
  const [code, out] = await run(bun, ["test", "--timeout", "60000", ...args], env);
  const passed = Number(/^\s*(\d+) pass$/m.exec(out)?.[1] ?? 0);
  let failed = Number(/^\s*(\d+) fail$/m.exec(out)?.[1] ?? 0);
  const skipped = Number(/^\s*(\d+) skip$/m.exec(out)?.[1] ?? 0);
  if (code !== 0 && failed === 0) failed = 1; // the runner itself failed (crash, no tests found)
  return { passed, failed, skipped };
}

// Two files at a time (most of the suite waits on processes, ticks and Redis), which halves it on
// two cores. The chaos run goes alone afterwards: its invariants are about timing under faults, not
// under a neighbour's load. Arguments (a file, -t) run as given, one file at a time.
console.log("\n# core suite (bun test)");
{
  const chaos = "test/chaos.test.ts";
  const args = process.argv.slice(2);
  const runs = args.length > 0
    ? [await bunTest(args)]
    : [await bunTest(["--parallel=2", `--path-ignore-patterns=${chaos}`]), await bunTest([chaos])];
  const sum = (k) => runs.reduce((n, r) => n + r[k], 0);
  suites.push({ name: "core (bun)", passed: sum("passed"), failed: sum("failed"), skipped: sum("skipped") });
}

const smoke = join(root, "test/smoke/smoke.ts");
const runtimes = {
  bun: [bun, [smoke]],
  deno: [deno, ["run", ...denoPermissions, smoke]],
  node: [process.execPath, ["--import", "tsx", smoke]],
};
for (const [name, [cmd, args]] of Object.entries(runtimes)) {
  console.log(`\n# smoke suite on ${name}`);
  const [code, out] = await run(cmd, args, { ...env, DRAY_TEST_RUNTIME: name });
  // `, N skipped` is optional: a summary line without it still parses.
  const m = /^(\d+) passed, (\d+) failed(?:, (\d+) skipped)?$/m.exec(out);
  const passed = Number(m?.[1] ?? 0);
  let failed = Number(m?.[2] ?? 0);
  const skipped = Number(m?.[3] ?? 0);
  if (code !== 0 && failed === 0) failed = 1;
  suites.push({ name: `smoke (${name})`, passed, failed, skipped });
}

console.log("\n# browser: the dashboard in Chromium");
{
  // The test itself fails when CI lacks Chromium (.ci/run installs it) and skips without it elsewhere.
  const [code, out] = await run(process.execPath, ["--import", "tsx", join(root, "test/browser/dashboard.ts")], env);
  const m = /^(\d+) passed, (\d+) failed(?:, (\d+) skipped)?$/m.exec(out);
  let failed = Number(m?.[2] ?? 0);
  if (code !== 0 && failed === 0) failed = 1;
  suites.push({ name: "browser", passed: Number(m?.[1] ?? 0), failed, skipped: Number(m?.[3] ?? 0) });
}

console.log("\n# package: npm pack, installed in a fresh project, used on Node, Bun and Deno");
{
  const [code, out] = await run(process.execPath, [join(root, "test/package/consumer.mjs")], env);
  const m = /^(\d+) passed, (\d+) failed(?:, (\d+) skipped)?$/m.exec(out);
  let failed = Number(m?.[2] ?? 0);
  if (code !== 0 && failed === 0) failed = 1;
  suites.push({ name: "package", passed: Number(m?.[1] ?? 0), failed, skipped: Number(m?.[3] ?? 0) });
}

console.log("\n# jsr: deno publish --dry-run");
{
  // Slow types fail it; so does a module JSR could not resolve.
  const [code] = await run(deno, ["publish", "--dry-run", "--allow-dirty"], { NO_COLOR: "1" });
  suites.push({ name: "jsr", passed: code === 0 ? 1 : 0, failed: code === 0 ? 0 : 1, skipped: 0 });
}

console.log("\n# summary");
for (const s of suites) console.log(`${s.name.padEnd(14)} ${s.passed} passed, ${s.failed} failed, ${s.skipped} skipped`);
const passed = suites.reduce((n, s) => n + s.passed, 0);
const failed = suites.reduce((n, s) => n + s.failed, 0);
const skipped = suites.reduce((n, s) => n + s.skipped, 0);
console.log(`${passed} passed, ${failed} failed, ${skipped} skipped`);
process.exit(failed > 0 ? 1 : 0);
