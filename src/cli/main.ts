/**
 * `dray <command>`: worker, scheduler, cron, dlq, queues, workers, dashboard, bench. Each command lives in its own file
 * and owns its usage (`dray <command> --help`); this one only dispatches and reports bad usage.
 */
import "../runtime/supported.mjs";
import { argv, setExitCode } from "../runtime/mod.ts";
import { DrayError } from "../errors.ts";
import { usageProblem } from "./usage.ts";

const commands: Record<string, () => Promise<{ run(args: string[]): Promise<void> }>> = {
  worker: () => import("./worker.ts"),
  scheduler: () => import("./scheduler.ts"),
  cron: () => import("./cron.ts"),
  dlq: () => import("./dlq.ts"),
  queues: () => import("./queues.ts"),
  workers: () => import("./workers.ts"),
  dashboard: () => import("./dashboard.ts"),
  bench: () => import("./bench.ts"),
};

const usage = `usage: dray <command> [options]

commands:
  worker <module...>     run the actors these modules define
  scheduler <module...>  only the cron ticker: enqueues each tick of the modules' crons once
  cron list|history      each cron's schedule, next and last run; the runs of one cron
  dlq list|requeue|purge inspect, requeue or remove dead letters
  queues [--watch]       ready / running / delayed / dead / paused per queue
  queues pause|resume <queue>
                         stop or restart every worker reading a queue (within a second)
  workers [--json]       the live workers: host, pid, queues, jobs running and processed
  dashboard              a web page for queues, jobs, dead letters, crons, workers and actors
  bench                  throughput, latency and cost per job; recommends --threads/--concurrency

run 'dray <command> --help' for its options.

environment:
  REDIS_URL          default redis://127.0.0.1:6379
  DRAY_PREFIX        key namespace, default dray
  DRAY_LOG_LEVEL     default info
  DRAY_LOG_FORMAT    pretty or json; default pretty when stdout is a terminal, else json
  DRAY_HEARTBEAT_MS  ms between a worker's reports that it is live (dray workers), default 5000
  DRAY_HISTORY_MS    ms between a worker's writes of its job counts (dashboard charts), default 5000; 0: off
  DRAY_REDIS_CA      a PEM file: the CA to trust for a rediss:// URL
  DRAY_METRICS_PORT  serve /metrics and /healthz from worker and scheduler (see their --help)
  DRAY_DASHBOARD_TOKEN  allows the dashboard's pause, resume, requeue and purge (see its --help)`;

async function main(): Promise<void> {
  const [name, ...rest] = argv();
  if (!name || name === "--help" || name === "-h" || (name === "help" && !rest[0])) {
    console.log(usage);
    return;
  }
  // `dray help worker` is `dray worker --help`.
  const [command, args] = name === "help" ? [rest[0]!, ["--help"]] : [name, rest];
  const load = commands[command];
  if (!load) {
    console.error(`dray: unknown command "${command}"\n\n${usage}`);
    setExitCode(2);
    return;
  }
  try {
    await (await load()).run(args);
  } catch (error) {
    // A mistake on the command line (a flag unknown, missing its value, out of range) is the user's,
    // not a bug: one line naming the command, and where the right flags are.
    const problem = usageProblem(error);
    if (problem !== undefined) {
      console.error(`dray ${command}: ${problem}\nrun 'dray ${command} --help' for its options`);
      setExitCode(2);
      return;
    }
    // The user's too (no crons in the modules, a bad actor option), but no flag would fix these.
    if (error instanceof DrayError) {
      console.error(`dray ${command}: ${error.message}`);
      setExitCode(2);
      return;
    }
    throw error;
  }
}

await main();
