import { parseArgs } from "node:util";
import { ConfigError } from "../errors.ts";
import { defaultIsolation, type Isolation } from "../executor/mod.ts";
import { runtime, type RuntimeName } from "../runtime/mod.ts";
import { nonNegativeInt, positiveInt } from "./worker.ts";
import { runBench, type BenchOptions } from "../../bench/mod.ts";
import { SCENARIOS, type Scenario } from "../../bench/scenarios.ts";


/** `dray bench ...`: parses the flags; the bench itself lives in bench/. */
export async function run(args: string[]): Promise<void> {
  // The chaos scenario is a fault-injection run, not a sweep: its own flags (bench/chaos/cli.ts).
  if (isChaos(args)) return await (await import("../../bench/chaos/cli.ts")).runChaosCli(args);
  await runBench(parseBenchArgs(args));
}

function isChaos(args: string[]): boolean {
  return args.some((a, i) => a === "--scenario=chaos" || (a === "--scenario" && args[i + 1] === "chaos"));
}

export function parseBenchArgs(args: string[]): BenchOptions {
  const { values } = parseArgs({
    args,
    options: {
      scenario: { type: "string", default: "noop" },
      jobs: { type: "string", default: "50000" },
      threads: { type: "string", default: "1,2,4" },
      concurrency: { type: "string", default: "1,16,64,256" },
      runtime: { type: "string", default: runtime() },
      isolation: { type: "string" },
      compare: { type: "string" },
      json: { type: "string" },
      chart: { type: "string" },
      rate: { type: "string", default: "500" },
      "latency-seconds": { type: "string", default: "3" },
      "latency-warmup": { type: "string", default: "0.5" },
      "max-seconds": { type: "string", default: "10" },
      "start-timeout": { type: "string", default: "15000" },
      rounds: { type: "string", default: "2" },
      results: { type: "string", default: "on" },
      prefetch: { type: "string" },
      "no-baseline": { type: "boolean", default: false },
    },
  });
  const scenario = oneOf("--scenario", values.scenario, SCENARIOS) as Scenario;
  const rt = oneOf("--runtime", values.runtime, ["bun", "deno", "node"]) as RuntimeName;
  // By default the worker isolates as `dray worker` does on its runtime (processes on Deno).
  const isolation = oneOf("--isolation", values.isolation ?? defaultIsolation(rt), ["thread", "process", "inline"]) as Isolation;
  if (values.compare !== undefined) oneOf("--compare", values.compare, ["bullmq"]);
  return {
    scenario, isolation, runtime: rt,
    jobs: positiveInt("--jobs", values.jobs),
    threads: list("--threads", values.threads),
    concurrency: list("--concurrency", values.concurrency),
    compareBullmq: values.compare === "bullmq",
    results: oneOf("--results", values.results, ["on", "off"]) === "on",
    ...(values.prefetch !== undefined ? { prefetch: nonNegativeInt("--prefetch", values.prefetch) } : {}),
    rounds: positiveInt("--rounds", values.rounds),
    baseline: !values["no-baseline"],
    rate: nonNegative("--rate", values.rate),
    latencySeconds: nonNegative("--latency-seconds", values["latency-seconds"]),
    warmupSeconds: nonNegative("--latency-warmup", values["latency-warmup"]),
    maxSeconds: nonNegative("--max-seconds", values["max-seconds"]),
    startTimeoutMs: positiveInt("--start-timeout", values["start-timeout"]),
    ...(values.json ? { json: values.json } : {}),
    ...(values.chart ? { chart: values.chart } : {}),
    command: ["dray bench", ...args].join(" "),
  };
}

function oneOf(flag: string, value: string, allowed: readonly string[]): string {
  if (!allowed.includes(value)) throw new ConfigError(`${flag} must be one of ${allowed.join(", ")}, not "${value}"`);
  return value;
}

function list(flag: string, raw: string): number[] {
  const out = raw.split(",").map((s) => s.trim()).filter(Boolean).map((s) => positiveInt(flag, s));
  if (out.length === 0) throw new ConfigError(`${flag} needs at least one value`);
  return out;
}

function nonNegative(flag: string, raw: string): number {
  const n = Number(raw);
  if (!Number.isFinite(n) || n < 0) throw new ConfigError(`${flag} must be a number >= 0, not "${raw}"`);
  return n;
}
