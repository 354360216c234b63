import { parseArgs } from "node:util";
import { ConfigError } from "../errors.ts";
import { startWorker } from "../worker.ts";
import { exit } from "../runtime/mod.ts";
import type { Isolation } from "../executor/mod.ts";

export async function run(args: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      queues: { type: "string" },
      concurrency: { type: "string" },
      threads: { type: "string" },
      prefetch: { type: "string" },
      isolation: { type: "string" },
      "max-memory": { type: "string" },
      "shutdown-grace": { type: "string" },
      "visibility-timeout": { type: "string" },
      "no-cron": { type: "boolean" },
    },
  });
  const isolation = values.isolation as Isolation | undefined;
  if (isolation && !["thread", "process", "inline"].includes(isolation)) {
    throw new ConfigError(`--isolation must be thread, process or inline, not "${isolation}"`);
  }
  const worker = await startWorker({
    modules: positionals,
    ...(values.queues ? { queues: values.queues.split(",").map((q) => q.trim()).filter(Boolean) } : {}),
    ...(values.concurrency ? { concurrency: positiveInt("--concurrency", values.concurrency) } : {}),
    ...(values.threads ? { threads: positiveInt("--threads", values.threads) } : {}),
    ...(values.prefetch !== undefined ? { prefetch: nonNegativeInt("--prefetch", values.prefetch) } : {}),
    ...(isolation ? { isolation } : {}),
    ...(values["max-memory"] ? { maxMemoryMb: positiveInt("--max-memory", values["max-memory"]) } : {}),
    ...(values["shutdown-grace"] ? { shutdownGrace: positiveInt("--shutdown-grace", values["shutdown-grace"]) } : {}),
    ...(values["visibility-timeout"] ? { visibilityTimeout: positiveInt("--visibility-timeout", values["visibility-timeout"]) } : {}),
    ...(values["no-cron"] ? { cron: false } : {}),
  });
  const report = await worker.stopped;
  // App modules may hold handles (pools, timers) that would keep the process up after a clean stop.
  // Jobs left unsettled (Redis away) are not lost, but the stop was not clean: say so to the supervisor.
  exit(report.unsettled > 0 ? 1 : 0);
}

export function nonNegativeInt(flag: string, raw: string): number {
  const n = Number(raw);
  if (raw.trim() === "" || !Number.isInteger(n) || n < 0) throw new ConfigError(`${flag} must be a whole number >= 0, not "${raw}"`);
  return n;
}

export function positiveInt(flag: string, raw: string): number {
  const n = Number(raw);
  if (!Number.isInteger(n) || n <= 0) throw new ConfigError(`${flag} must be a positive integer, not "${raw}"`);
  return n;
}
