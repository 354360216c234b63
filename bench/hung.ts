/**
 * `dray bench --scenario hung`: how long a worker takes to get through jobs that hang their thread
 * (half spin, half block in Atomics.wait; time limit 500 ms, no retries), all sent at once with
 * ordinary jobs among them. Not a sweep: one setting, `--repeat` runs, each with a fresh worker.
 * A run's time is from the send until every hung job is dead-lettered and every ordinary job has
 * completed; it also counts what happened to the ordinary jobs, which must all complete on their
 * first attempt (a neighbour's kill gives them back uncharged). See bench/README.md, "Hung jobs".
 */
import { writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { Redis } from "ioredis";
import { queueKeys } from "../src/broker/keys.ts";
import { RedisBroker } from "../src/broker/redis.ts";
import { closeBroker } from "../src/client.ts";
import { configure, settings } from "../src/config.ts";
import { UsageError } from "../src/errors.ts";
import { defaultIsolation, type Isolation } from "../src/executor/mod.ts";
import { group, type MessageSpec } from "../src/mod.ts";
import { exit, onShutdownSignal, runtime, setExitCode, type RuntimeName } from "../src/runtime/mod.ts";
import { nonNegativeInt, positiveInt } from "../src/cli/worker.ts";
import { helpRequested } from "../src/cli/usage.ts";
import { HUNG_LIMIT_MS, HUNG_QUEUE, ordinary, spin, wait } from "./hung_app.ts";
import { machineInfo, machineLine } from "./machine.ts";
import { cleanPrefix } from "./runner.ts";
import { drayReady, killChildren, launchEnv, ownPath, runtimeCommand, spawnChild, type Child } from "./spawn.ts";

export const hungUsage = `usage: dray bench --scenario hung [options]

Jobs that hang their thread (half a CPU loop, half Atomics.wait; time limit ${HUNG_LIMIT_MS} ms, no
retries) sent at once with ordinary jobs among them, to a real worker. Reports the time from the send
until every hung job is dead-lettered and every ordinary job completed, and how the ordinary jobs
fared (runs, attempts). Exits 1 when a run breaks a promise. See bench/README.md, "Hung jobs".

options:
  --runtime R        the worker's runtime: bun, deno or node (default: the bench's own)
  --isolation MODE   thread or process (default: the worker's on that runtime)
  --threads N        the worker's threads (or processes) (default 2)
  --concurrency N    the worker's concurrency (default 100)
  --spares N         the worker's spare threads or processes (default: the worker's)
  --jobs N           hung jobs per run (default 30)
  --ordinary N       ordinary jobs per run, sent among the hung ones (default 30)
  --repeat N         runs, each with a fresh worker (default 1)
  --max-seconds S    a run is cut off after this long (default 60)
  --json FILE        the whole report as JSON
  -h, --help         this help

environment: REDIS_URL (see 'dray --help')`;

export interface HungOptions {
  runtime: RuntimeName;
  isolation: Isolation;
  threads: number;
  concurrency: number;
  /** The worker's `--spares`; undefined: its default. */
  spares?: number;
  /** Hung jobs per run. */
  jobs: number;
  ordinary: number;
  repeat: number;
  maxSeconds: number;
  json?: string;
  command: string;
}

/** One run: what the send led to. */
export interface HungRun {
  /** From the send until the last hung job was dead-lettered and the last ordinary job completed. */
  seconds: number;
  /** False: cut off at --max-seconds. */
  complete: boolean;
  dead: number;
  /** Dead letters whose error is TimeLimitExceeded, after their one run (retries 0). */
  deadByTimeLimit: number;
  /** Ordinary jobs that completed (distinct), by the worker's log. */
  completed: number;
  /** Runs of ordinary jobs begun: more than `ordinary` when a neighbour's kill interrupted some. */
  ordinaryRuns: number;
  /** Ordinary jobs charged an attempt: a failure logged, or completed on an attempt after the first. */
  charged: number;
  /** Ordinary jobs that completed more than once. */
  twice: number;
  /** Every hung job dead by its time limit, every ordinary job completed once on attempt 1. */
  held: boolean;
}

export interface HungReport {
  options: HungOptions;
  machine: string;
  runs: HungRun[];
  medianSeconds: number;
}

export function parseHungArgs(args: string[]): HungOptions {
  const { values } = parseArgs({
    args,
    options: {
      scenario: { type: "string" },
      runtime: { type: "string", default: runtime() },
      isolation: { type: "string" },
      threads: { type: "string", default: "2" },
      concurrency: { type: "string", default: "100" },
      spares: { type: "string" },
      jobs: { type: "string", default: "30" },
      ordinary: { type: "string", default: "30" },
      repeat: { type: "string", default: "1" },
      "max-seconds": { type: "string", default: "60" },
      json: { type: "string" },
    },
  });
  if (values.scenario !== "hung") throw new UsageError(`--scenario must be hung here, not "${values.scenario}"`);
  const rt = values.runtime as RuntimeName;
  if (!["bun", "deno", "node"].includes(rt)) throw new UsageError(`--runtime must be one of bun, deno, node, not "${rt}"`);
  const isolation = (values.isolation ?? defaultIsolation(rt)) as Isolation;
  if (!["thread", "process"].includes(isolation)) throw new UsageError(`--isolation must be thread or process, not "${isolation}"`);
  return {
    runtime: rt, isolation,
    threads: positiveInt("--threads", values.threads),
    concurrency: positiveInt("--concurrency", values.concurrency),
    ...(values.spares !== undefined ? { spares: nonNegativeInt("--spares", values.spares) } : {}),
    jobs: positiveInt("--jobs", values.jobs),
    ordinary: nonNegativeInt("--ordinary", values.ordinary),
    repeat: positiveInt("--repeat", values.repeat),
    maxSeconds: positiveInt("--max-seconds", values["max-seconds"]),
    ...(values.json ? { json: values.json } : {}),
    command: ["dray bench", ...args].join(" "),
  };
}

export async function runHungCli(args: string[]): Promise<void> {
  if (helpRequested(args, hungUsage)) return;
  const options = parseHungArgs(args);
  const report = await runHung(options);
  if (options.json) {
    writeFileSync(options.json, JSON.stringify(report, null, 2) + "\n");
    console.log(`wrote ${options.json}`);
  }
  if (!report.runs.every((r) => r.held)) setExitCode(1);
}

/** `--repeat` runs, each under its own key prefix with a fresh worker; prints a line per run. */
export async function runHung(o: HungOptions, log: (line: string) => void = console.log): Promise<HungReport> {
  const redisUrl = settings().redisUrl;
  const redis = new Redis(redisUrl);
  const prefixes: string[] = [];
  const removeSignal = onShutdownSignal(() => {
    killChildren();
    void Promise.all(prefixes.map((p) => cleanPrefix(redis, p))).finally(() => exit(130));
  });
  try {
    const machine = machineLine(await machineInfo(redis));
    log(machine);
    log(`${o.command}: ${o.jobs} hung + ${o.ordinary} ordinary jobs · worker ${o.runtime}, isolation ${o.isolation}, ` +
      `threads ${o.threads}, concurrency ${o.concurrency}${o.spares !== undefined ? `, spares ${o.spares}` : ""}`);
    const runs: HungRun[] = [];
    for (let i = 0; i < o.repeat; i++) {
      const prefix = `dray-bench-hung-${crypto.randomUUID().slice(0, 8)}`;
      prefixes.push(prefix);
      try {
        const run = await hungRun(o, redis, redisUrl, prefix);
        runs.push(run);
        log(runLine(i + 1, o, run));
      } finally {
        await cleanPrefix(redis, prefix).catch(() => undefined);
      }
    }
    const sorted = runs.map((r) => r.seconds).sort((a, b) => a - b);
    const medianSeconds = sorted[Math.floor(sorted.length / 2)]!;
    if (runs.length > 1) log(`median ${medianSeconds.toFixed(2)} s over ${runs.length} runs (${sorted.map((s) => s.toFixed(2)).join(", ")})`);
    return { options: o, machine, runs, medianSeconds };
  } finally {
    removeSignal();
    redis.disconnect();
  }
}

function runLine(n: number, o: HungOptions, r: HungRun): string {
  return `run ${n}: ${r.complete ? "" : "cut off after "}${r.seconds.toFixed(2)} s · dead ${r.dead}/${o.jobs} ` +
    `(${r.deadByTimeLimit} by time limit) · ordinary completed ${r.completed}/${o.ordinary} in ${r.ordinaryRuns} runs, ` +
    `${r.charged} charged, ${r.twice} twice · ${r.held ? "held" : "BROKEN"}`;
}

/** One run: start a worker, send everything at once, poll until it is all through, stop the worker. */
export async function hungRun(o: HungOptions, redis: Redis, redisUrl: string, prefix: string): Promise<HungRun> {
  const previous = settings();
  configure({ prefix, redisUrl });
  const broker = new RedisBroker({ url: redisUrl, prefix });
  const log = new OrdinaryLog();
  const worker = startWorker(o, redisUrl, prefix, log);
  try {
    await within(worker.ready, 60_000, "the worker did not start");
    const key = `${prefix}:hung-runs`;
    const specs = mix(o.jobs, o.ordinary, key);
    const sentAt = performance.now();
    const handles = await group(specs).send();
    specs.forEach((spec, i) => spec.actor === ordinary.name && log.ids.add(handles.jobs[i]!.id));
    const dlq = queueKeys(prefix, HUNG_QUEUE).dlq;
    let dead = 0;
    const cutoff = sentAt + o.maxSeconds * 1000;
    for (;;) {
      dead = await redis.xlen(dlq);
      if ((dead >= o.jobs && log.completed() >= o.ordinary) || performance.now() > cutoff) break;
      await new Promise((r) => setTimeout(r, 10));
    }
    const seconds = (performance.now() - sentAt) / 1000;
    // The log lines of the last completions may trail the poll that saw them: give the pipe a moment.
    await new Promise((r) => setTimeout(r, 200));
    const seen = { ...log.tally(), ordinaryRuns: await redis.llen(key) };
    const letters = await broker.deadLetters(HUNG_QUEUE, { limit: o.jobs + o.ordinary });
    const deadByTimeLimit = letters.filter((l) => l.error.name === "TimeLimitExceeded" && l.retries === 0).length;
    const complete = dead >= o.jobs && seen.completed >= o.ordinary;
    return {
      seconds, complete, dead, deadByTimeLimit, ...seen,
      held: complete && dead === o.jobs && deadByTimeLimit === o.jobs && seen.completed === o.ordinary && seen.charged === 0 && seen.twice === 0,
    };
  } finally {
    await worker.stop(5_000);
    await closeBroker();
    await broker.close();
    configure({ prefix: previous.prefix, redisUrl: previous.redisUrl });
  }
}

/** The worker at debug level: its "job completed" lines (with the attempt) are what the run counts. */
function startWorker(o: HungOptions, redisUrl: string, prefix: string, log: OrdinaryLog): Child {
  const ready = drayReady();
  return spawnChild([...runtimeCommand(o.runtime), ownPath("../src/cli/main"), "worker", ownPath("./hung_app"),
    "--threads", String(o.threads), "--concurrency", String(o.concurrency), "--isolation", o.isolation,
    ...(o.spares !== undefined ? ["--spares", String(o.spares)] : [])], {
    ...launchEnv(o.runtime), REDIS_URL: redisUrl, DRAY_PREFIX: prefix, DRAY_LOG_LEVEL: "debug",
  }, (line) => {
    log.read(line);
    return ready(line);
  });
}

/**
 * Hung jobs, spin and wait alternating, with the ordinary ones spread evenly among them: the worker
 * reads them in one batch and splits it over its threads in order, so each thread gets both kinds.
 */
function mix(hung: number, plain: number, key: string): MessageSpec[] {
  const total = hung + plain;
  const specs: MessageSpec[] = [];
  for (let i = 0, h = 0; i < total; i++) {
    if (Math.floor(((i + 1) * hung) / total) > h) specs.push((h++ % 2 === 0 ? spin : wait).message());
    else specs.push(ordinary.message({ key }));
  }
  return specs;
}

/** What the worker's log says about the ordinary jobs: completions (with their attempt) and charges. */
class OrdinaryLog {
  /** The ordinary jobs' ids, known once sent. */
  readonly ids = new Set<string>();
  readonly #lines: Array<{ msg: string; id: string; attempt: number }> = [];

  read(line: string): void {
    if (!line.includes('"job completed"') && !line.includes('"job failed')) return;
    try {
      const l = JSON.parse(line) as { msg: string; id: string; attempt: number };
      this.#lines.push(l);
    } catch {
      // not a log line
    }
  }

  completed(): number {
    return new Set(this.#ours().filter((l) => l.msg === "job completed").map((l) => l.id)).size;
  }

  tally(): Pick<HungRun, "completed" | "charged" | "twice"> {
    const done = new Map<string, number>();
    const charged = new Set<string>();
    for (const l of this.#ours()) {
      if (l.msg !== "job completed" || l.attempt !== 1) charged.add(l.id);
      if (l.msg === "job completed") done.set(l.id, (done.get(l.id) ?? 0) + 1);
    }
    return { completed: done.size, charged: charged.size, twice: [...done.values()].filter((n) => n > 1).length };
  }

  #ours() {
    return this.#lines.filter((l) => this.ids.has(l.id));
  }
}

function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what} within ${ms} ms`)), ms)));
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}
