#!/usr/bin/env node
// Runs `dray <args>` on the runtime that invoked the package script: `bun run worker` runs it on
// Bun, `npm run worker` on Node (with tsx, since Node 20 cannot strip types). Plain JS so that Node
// can start it without a loader. Signals are forwarded so SIGTERM still means a graceful stop.
// On Bun it also sets the GC budget (src/runtime/heap.mjs). The worker dies with the launcher, even
// when a process manager kills the launcher with SIGKILL (src/runtime/parent_death.mjs).
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import process from "node:process";
import { bunHeapEnv } from "../runtime/heap.mjs";
import { dieWithParent } from "../runtime/parent_death.mjs";

const main = fileURLToPath(new URL("./main.ts", import.meta.url));
const agent = process.env.npm_config_user_agent ?? "";
const execPath = process.env.npm_execpath ?? "";
const onBun = agent.startsWith("bun/") || /(^|\/)bun(\.exe)?$/.test(execPath);
const [command, args] = onBun
  ? [/(^|\/)bun(\.exe)?$/.test(execPath) ? execPath : "bun", [main, ...process.argv.slice(2)]]
  : [process.execPath, ["--import", "tsx", main, ...process.argv.slice(2)]];

let env = process.env;
try {
  if (onBun) env = { ...process.env, ...bunHeapEnv(process.env) };
} catch (error) {
  console.error(`dray: ${error.message}`);
  process.exit(2);
}
const [cmd, ...rest] = [...dieWithParent(), command, ...args];
const child = spawn(cmd, rest, { stdio: "inherit", env });
for (const signal of ["SIGTERM", "SIGINT"]) process.on(signal, () => child.kill(signal));
child.on("exit", (code, signal) => process.exit(code ?? (signal ? 128 : 1)));
