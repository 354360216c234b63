import { parseArgs } from "node:util";
import { UsageError } from "../errors.ts";
import { defaultIsolation, type Isolation } from "../executor/mod.ts";
import { runtime, type RuntimeName } from "../runtime/mod.ts";
import { nonNegativeInt, positiveInt } from "./worker.ts";
import { helpRequested } from "./usage.ts";
import { runBench, type BenchOptions } from "../../bench/mod.ts";
import { SCENARIOS, type Scenario } from "../../bench/scenarios.ts";

export const usage = `usage: dray bench [options]

Throughput, latency and cost per job of a real worker process on Redis: sweeps --threads x
--concurrency, runs reference loops beside it, and recommends a setting. See bench/README.md.

options:
  --scenario S          what a job does: ${SCENARIOS.join(", ")} (default noop);
                        chaos is a fault-injection run: 'dray bench --scenario chaos --help';
                        hung times jobs that hang their thread: 'dray bench --scenario hung --help'
  --jobs N              jobs per run (default 50000)
  --threads 1,2,4       thread (or process) counts to sweep (default 1,2,4)
  --processes 1,2       worker processes (dray worker --processes) to sweep, each with
                        those threads and concurrency (default 1)
  --concurrency LIST    concurrency values to sweep (default 1,16,64,256)
  --runtime R           the worker's runtime: bun, deno or node (default: the bench's own)
  --isolation MODE      thread, process or inline (default: the worker's on that runtime)
  --prefetch N          passed to the worker (default: its concurrency)
  --results on|off      off: no result record per job (default on)
  --metrics on|off      on: dray's workers serve Prometheus metrics (--metrics-port), to measure
                        what counting costs (default off)
  --history-ms N        the workers' DRAY_HISTORY_MS: how often they write the dashboard's
                        per-minute history; 0 turns it off (default: the worker's, 5000)
  --compare bullmq      add BullMQ's workers to the reference runs
  --redis URL           the Redis to measure (default: REDIS_URL); redis+cluster://host:port,...
                        (from either) measures a Redis Cluster: Redis CPU and commands are read
                        on every master, summed and shown per master (replicas not counted);
                        no bare loops and no --compare bullmq there
  --queues N            send the jobs round-robin over N queues, all read by the worker; on a
                        cluster they are put on different masters (default 1; on a cluster,
                        the number of masters)
  --rounds N            interleaved rounds of the reference runs (default 2)
  --no-baseline         skip the bare Streams loop and the thread-hop loop
  --rate N              jobs/s offered in the latency run; 0: no latency run (default 500)
  --latency-seconds S   length of the latency run (default 3)
  --latency-warmup S    seconds sent first and left out of the percentiles (default 0.5)
  --max-seconds S       a drain is cut off after this long (default 10)
  --start-timeout MS    no finished job this long after "ready": did not start (default 15000)
  --json FILE           the whole report as JSON
  --chart FILE          SVG chart of jobs/s against concurrency
  -h, --help            this help

environment: REDIS_URL (see 'dray --help')`;

export const chaosUsage = `usage: dray bench --scenario chaos [options]

A fault-injection run, not a sweep: its own redis-server and workers; jobs are sent while workers
are killed, stalled and cut off and Redis restarts, then the delivery promises are checked against
a record kept outside Redis. Needs redis-server on the PATH. Exits 1 when a check fails.
See bench/README.md, "Chaos".

options:
  --duration S             seconds of faults and sending (default 120, or CHAOS_DURATION)
  --seed N                 the PRNG seed: the same seed replays the same faults (default: random,
                           or CHAOS_SEED)
  --faults LIST            among kill9,stall,clientKill,redisRestart (default: all, or CHAOS_FAULTS)
  --workers N              workers under test (default 3)
  --threads N              threads per worker (default 2)
  --concurrency N          concurrency per worker (default 8)
  --visibility-timeout MS  the workers' visibility timeout (default 2000)
  --rate N                 jobs sent per second (default 10)
  --drain S                the longest drain at the end (default 120)
  --keep                   keep the temp directory: run log, worker output, faults, the AOF
  --json FILE              the whole report as JSON
  -h, --help               this help`;

/** `dray bench ...`: parses the flags; the bench itself lives in bench/. */
export async function run(args: string[]): Promise<void> {
  // Like chaos, not a sweep: one setting, flags and help of its own (bench/hung.ts).
  if (isScenario(args, "hung")) return await (await import("../../bench/hung.ts")).runHungCli(args);
  const chaos = isScenario(args, "chaos");
  if (helpRequested(args, chaos ? chaosUsage : usage)) return;
  // The chaos scenario is a fault-injection run, not a sweep: its own flags (bench/chaos/cli.ts).
  if (chaos) return await (await import("../../bench/chaos/cli.ts")).runChaosCli(args);
  await runBench(parseBenchArgs(args));
}

function isScenario(args: string[], name: string): boolean {
  return args.some((a, i) => a === `--scenario=${name}` || (a === "--scenario" && args[i + 1] === name));
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
      redis: { type: "string" },
      queues: { type: "string" },
      results: { type: "string", default: "on" },
      metrics: { type: "string", default: "off" },
      "history-ms": { type: "string" },
      processes: { type: "string" },
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
    ...(values.processes !== undefined ? { processes: list("--processes", values.processes) } : {}),
    concurrency: list("--concurrency", values.concurrency),
    compareBullmq: values.compare === "bullmq",
    results: oneOf("--results", values.results, ["on", "off"]) === "on",
    metrics: oneOf("--metrics", values.metrics, ["on", "off"]) === "on",
    ...(values["history-ms"] !== undefined ? { historyMs: nonNegativeInt("--history-ms", values["history-ms"]) } : {}),
    ...(values.prefetch !== undefined ? { prefetch: nonNegativeInt("--prefetch", values.prefetch) } : {}),
    rounds: positiveInt("--rounds", values.rounds),
    ...(values.redis !== undefined ? { redisUrl: values.redis } : {}),
    ...(values.queues !== undefined ? { queues: positiveInt("--queues", values.queues) } : {}),
    baseline: !values["no-baseline"],
    rate: nonNegative("--rate", values.rate),
    latencySeconds: nonNegative("--latency-seconds", values["latency-seconds"]),
    warmupSeconds: nonNegative("--latency-warmup", values["latency-warmup"]),
    maxSeconds: nonNegative("--max-seconds", values["max-seconds"]),
    startTimeoutMs: positiveInt("--start-timeout", values["start-timeout"]),
    ...(values.json ? { json: values.json } : {}),
    ...(values.chart ? { chart: values.chart } : {}),
    // The report keeps the command line: not a password a --redis URL may hold.
    command: ["dray bench", ...args.map((a) => a.replace(/(\/\/[^:@/]*:)[^@/]*@/, "$1***@"))].join(" "),
  };
}

function oneOf(flag: string, value: string, allowed: readonly string[]): string {
  if (!allowed.includes(value)) throw new UsageError(`${flag} must be one of ${allowed.join(", ")}, not "${value}"`);
  return value;
}

function list(flag: string, raw: string): number[] {
  const out = raw.split(",").map((s) => s.trim()).filter(Boolean).map((s) => positiveInt(flag, s));
  if (out.length === 0) throw new UsageError(`${flag} needs at least one value`);
  return out;
}

function nonNegative(flag: string, raw: string): number {
  const n = Number(raw);
  if (!Number.isFinite(n) || n < 0) throw new UsageError(`${flag} must be a number >= 0, not "${raw}"`);
  return n;
}
