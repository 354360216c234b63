#!/usr/bin/env -S npx tsx
/**
 * `dray <command>`: worker, scheduler, dlq, queues, bench. Each command lives in its own file.
 */
import { argv, setExitCode } from "../runtime/mod.ts";
import { DrayError } from "../errors.ts";

const commands: Record<string, () => Promise<{ run(args: string[]): Promise<void> }>> = {
  worker: () => import("./worker.ts"),
  scheduler: () => import("./scheduler.ts"),
  cron: () => import("./cron.ts"),
  dlq: () => import("./dlq.ts"),
  queues: () => import("./queues.ts"),
  bench: () => import("./bench.ts"),
};

const usage = `usage: dray <command> [options]

commands:
  worker <module...>   run a worker on the actors these modules define
                       [--queues a,b] [--concurrency N] [--threads N] [--isolation thread|process|inline]
                       [--max-memory MB] (per thread or process; over it, recycled)
                       [--prefetch N] (jobs handed to threads ahead of free slots; default: concurrency)
                       [--no-cron] (no cron ticker in this worker; its cron jobs still run)
  scheduler <module...>
                       only the cron ticker: enqueues each tick of the modules' crons once
  cron list [module...]
                       each cron's schedule, next run and last run status
  cron history <name> [module...] [--limit N] [--json]
                       the runs of one cron: RUNNING, COMPLETED, FAILED, SKIPPED
  dlq list|requeue [--queue q] [--id ID] [--limit N]
                       inspect and requeue dead letters
  dlq purge --queue q | --all
                       remove dead letters for good; says how many
  queues [--watch]     ready / running / delayed / dead per queue
  bench                throughput, latency and cost per job; recommends --threads/--concurrency
                       [--scenario noop|cpu|io|mixed] [--jobs N] [--threads 1,2,4] [--concurrency 1,16,64,256]
                       [--runtime bun|deno|node] [--isolation thread|process|inline] [--compare bullmq]
                       [--json FILE] [--chart FILE] (see bench/README.md)

environment: REDIS_URL (default redis://127.0.0.1:6379), DRAY_PREFIX (default dray), DRAY_LOG_LEVEL (default info)`;

async function main(): Promise<void> {
  const [name, ...rest] = argv();
  if (!name || name === "help" || name === "--help" || name === "-h") {
    console.log(usage);
    return;
  }
  const load = commands[name];
  if (!load) {
    console.error(`dray: unknown command "${name}"\n\n${usage}`);
    setExitCode(2);
    return;
  }
  try {
    await (await load()).run(rest);
  } catch (error) {
    // A bad flag (unknown, missing its value, a value that looks like a flag) is the user's, not a bug.
    if (error instanceof DrayError || String((error as { code?: string }).code).startsWith("ERR_PARSE_ARGS_")) {
      console.error(`dray ${name}: ${(error as Error).message}`);
      setExitCode(2);
      return;
    }
    throw error;
  }
}

await main();
