/**
 * `dray bench --scenario chaos [--duration 120] [--seed N] [--json FILE] ...`: the long chaos run.
 * Not a throughput sweep, so it has flags of its own; src/cli/bench.ts hands it the arguments.
 */
import { writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { ConfigError } from "../../src/errors.ts";
import { env, exit, onShutdownSignal, setExitCode } from "../../src/runtime/mod.ts";
import { positiveInt } from "../../src/cli/worker.ts";
import { FAULT_KINDS } from "./faults.ts";
import { parseFaultKinds, runChaos, type ChaosOptions } from "./harness.ts";
import { killEverything } from "./live.ts";

export function parseChaosArgs(args: string[]): ChaosOptions & { json?: string } {
  const { values } = parseArgs({
    args,
    options: {
      scenario: { type: "string" },
      duration: { type: "string", default: env("CHAOS_DURATION") || "120" },
      seed: { type: "string", default: env("CHAOS_SEED") || String(Math.floor(Math.random() * 2 ** 31)) },
      workers: { type: "string", default: "3" },
      threads: { type: "string", default: "2" },
      concurrency: { type: "string", default: "8" },
      "visibility-timeout": { type: "string", default: "2000" },
      rate: { type: "string", default: "10" },
      drain: { type: "string", default: "120" },
      faults: { type: "string", default: env("CHAOS_FAULTS") || FAULT_KINDS.join(",") },
      json: { type: "string" },
      keep: { type: "boolean", default: false },
    },
  });
  if (values.scenario !== "chaos") throw new ConfigError(`--scenario must be chaos here, not "${values.scenario}"`);
  const seed = Number(values.seed);
  if (!Number.isInteger(seed) || seed < 0) throw new ConfigError(`--seed must be a whole number >= 0, not "${values.seed}"`);
  return {
    seed,
    durationSec: positiveInt("--duration", values.duration),
    workers: positiveInt("--workers", values.workers),
    threads: positiveInt("--threads", values.threads),
    concurrency: positiveInt("--concurrency", values.concurrency),
    visibilityTimeout: positiveInt("--visibility-timeout", values["visibility-timeout"]),
    rate: positiveInt("--rate", values.rate),
    drainSec: positiveInt("--drain", values.drain),
    faults: parseFaultKinds(values.faults),
    keep: values.keep,
    command: ["dray bench", ...args].join(" "),
    ...(values.json ? { json: values.json } : {}),
  };
}

export async function runChaosCli(args: string[]): Promise<void> {
  const options = parseChaosArgs(args);
  const removeSignal = onShutdownSignal(() => {
    console.log("interrupted: stopping the workers and redis-server, removing the temp directory");
    killEverything();
    exit(130);
  });
  try {
    const report = await runChaos(options);
    if (options.json) {
      writeFileSync(options.json, JSON.stringify(report, null, 2) + "\n");
      console.log(`wrote ${options.json}`);
    }
    if (!report.held) setExitCode(1);
  } finally {
    removeSignal();
  }
}
