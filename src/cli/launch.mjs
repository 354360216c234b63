#!/usr/bin/env node
// `dray <args>`: the package's bin, and what the repo's npm scripts run. Plain JS so that Node can
// start it without a loader. Where the CLI runs:
// - asked for by Bun (`bun run worker`, `bunx dray`: npm's user agent says bun) or run on Bun: in a
//   Bun process started with the GC budget (src/runtime/heap.mjs), which must be in its environment
//   from the start. Signals are forwarded so SIGTERM still means a graceful stop, and the CLI dies
//   with the launcher even when a process manager kills the launcher with SIGKILL
//   (src/runtime/parent_death.mjs).
// - on Node or Deno, from dist/ (installed from npm): in this process. tsx is loaded later, and only
//   when an app module is TypeScript (src/runtime/typescript.mjs).
// - on Node, from a checkout: in `node --import tsx`, so that pool threads inherit the loader that
//   dray's own `.ts` sources need.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath, pathToFileURL } from "node:url";
import process from "node:process";
import { bunHeapEnv } from "../runtime/heap.mjs";
import { dieWithParent } from "../runtime/parent_death.mjs";

try {
  await import("../runtime/supported.mjs");
} catch (error) {
  console.error(`dray: ${error.message}`);
  process.exit(2);
}

const compiled = existsSync(fileURLToPath(new URL("./main.js", import.meta.url)));
const main = fileURLToPath(new URL(compiled ? "./main.js" : "./main.ts", import.meta.url));
const args = process.argv.slice(2);
const onBun = typeof globalThis.Bun !== "undefined";
const onDeno = typeof globalThis.Deno !== "undefined";
const execPath = process.env.npm_execpath ?? "";
const bunAsked = onBun || (process.env.npm_config_user_agent ?? "").startsWith("bun/") || /(^|\/)bun(\.exe)?$/.test(execPath);

if (onDeno || (!bunAsked && compiled)) {
  await import(pathToFileURL(main).href);
} else {
  const [command, runArgs] = bunAsked
    ? [onBun ? process.execPath : /(^|\/)bun(\.exe)?$/.test(execPath) ? execPath : "bun", [main, ...args]]
    : [process.execPath, ["--import", "tsx", main, ...args]];
  let env = process.env;
  try {
    if (bunAsked) env = { ...process.env, ...bunHeapEnv(process.env) };
  } catch (error) {
    console.error(`dray: ${error.message}`);
    process.exit(2);
  }
  const [cmd, ...rest] = [...dieWithParent(), command, ...runArgs];
  const child = spawn(cmd, rest, { stdio: "inherit", env });
  for (const signal of ["SIGTERM", "SIGINT"]) process.on(signal, () => child.kill(signal));
  child.on("exit", (code, signal) => process.exit(code ?? (signal ? 128 : 1)));
}
