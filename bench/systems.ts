/**
 * The systems a run can measure, behind one shape: how to enqueue for it, how to start its worker
 * process, and how to tell how many jobs are left. dray and the bare Streams loop share dray's
 * enqueue path and stream; BullMQ has its own (bullmq_system.ts, loaded only to compare with it).
 */
import type { Redis } from "ioredis";
import { queueKeys } from "../src/broker/keys.ts";
import type { Isolation } from "../src/executor/mod.ts";
import type { RuntimeName } from "../src/runtime/mod.ts";
import { BENCH_QUEUE, benchActors } from "./fixture.ts";
import type { BenchPayload, Scenario } from "./scenarios.ts";
import { drayReady, launchEnv, ownPath, runtimeCommand, scriptReady, spawnChild, type Child } from "./spawn.ts";

export interface BenchContext {
  /** The bench's own connection (stats, polls, cleanup). */
  redis: Redis;
  redisUrl: string;
  /** Key prefix of this bench run; every key it makes contains it. */
  prefix: string;
  scenario: Scenario;
  runtime: RuntimeName;
  /** Whether dray jobs keep a result record (dray's default) or not (`resultTtl: 0`). */
  results: boolean;
  /** dray workers' `--prefetch`; undefined: their default. */
  prefetch?: number | undefined;
  /** dray workers serve metrics on this port (`--metrics-port`); undefined: metrics off. */
  metricsPort?: number | undefined;
  /** The workers' DRAY_HISTORY_MS; undefined: their default. */
  historyMs?: number | undefined;
}

export interface Remaining {
  /** Jobs not yet finished (waiting or running). */
  left: number;
  /** Jobs that failed or were dead-lettered: a run with failures is not a valid measurement. */
  failed: number;
}

export interface System {
  readonly label: string;
  /** "hop": the bare loop with its handlers in a thread (baseline_streams.ts, BENCH_HOP=thread). */
  readonly kind: "dray" | "baseline" | "hop" | "bullmq";
  readonly threads?: number;
  readonly concurrency?: number;
  readonly processes?: number;
  enqueueBulk(payloads: BenchPayload[]): Promise<unknown>;
  enqueueOne(payload: BenchPayload): Promise<unknown>;
  remaining(): Promise<Remaining>;
  /** Commands one `remaining()` sends, subtracted from the Redis command counts. */
  readonly pollCommands: Record<string, number>;
  start(): Child;
  close(): Promise<void>;
}

export interface DrayConfig {
  threads: number;
  concurrency: number;
  isolation: Isolation;
  /** `dray worker --processes`: worker processes, each with these threads and concurrency. @default 1 */
  processes?: number;
}

/** The stream the bench's actors use (priority 0 of queue "bench"). */
const benchStream = (prefix: string) => queueKeys(prefix, BENCH_QUEUE).stream(0);

abstract class DrayStream {
  constructor(protected readonly ctx: BenchContext) {}
  readonly pollCommands = { xlen: 2 };

  enqueueBulk(payloads: BenchPayload[]) {
    return this.#actor().sendMany(payloads);
  }

  enqueueOne(payload: BenchPayload) {
    return this.#actor().send(payload);
  }

  #actor() {
    return benchActors[this.ctx.results ? "on" : "off"][this.ctx.scenario];
  }

  async remaining(): Promise<Remaining> {
    // Entries are deleted when acked, so the stream's length is what is waiting or running.
    const res = await this.ctx.redis.pipeline()
      .xlen(benchStream(this.ctx.prefix))
      .xlen(queueKeys(this.ctx.prefix, BENCH_QUEUE).dlq)
      .exec();
    return { left: Number(res?.[0]?.[1] ?? 0), failed: Number(res?.[1]?.[1] ?? 0) };
  }

  async close(): Promise<void> {}
}

export class DraySystem extends DrayStream implements System {
  readonly kind = "dray";
  readonly label: string;
  readonly threads: number;
  readonly concurrency: number;
  readonly processes: number;

  constructor(ctx: BenchContext, readonly config: DrayConfig) {
    super(ctx);
    this.threads = config.threads;
    this.processes = config.processes ?? 1;
    this.concurrency = config.concurrency;
    const prefetch = ctx.prefetch === undefined ? "" : ` p${ctx.prefetch}`;
    const processes = (config.processes ?? 1) > 1 ? ` x${config.processes}` : "";
    this.label = `dray ${config.isolation}${processes} t${config.threads} c${config.concurrency}${prefetch}${ctx.results ? "" : " no-results"}${ctx.metricsPort ? " metrics" : ""}${ctx.historyMs === 0 ? " no-history" : ctx.historyMs ? ` history${ctx.historyMs}` : ""}`;
  }

  start(): Child {
    const { threads, concurrency, isolation } = this.config;
    return spawnChild([...runtimeCommand(this.ctx.runtime), ownPath("../src/cli/main"), "worker", ownPath("./fixture"),
      "--threads", String(threads), "--concurrency", String(concurrency), "--isolation", isolation,
      ...(this.ctx.prefetch === undefined ? [] : ["--prefetch", String(this.ctx.prefetch)]),
      ...(this.ctx.metricsPort === undefined ? [] : ["--metrics-port", String(this.ctx.metricsPort)]),
      ...((this.config.processes ?? 1) > 1 ? ["--processes", String(this.config.processes)] : [])], {
      ...launchEnv(this.ctx.runtime), REDIS_URL: this.ctx.redisUrl, DRAY_PREFIX: this.ctx.prefix, DRAY_LOG_LEVEL: "info",
      ...(this.ctx.historyMs === undefined ? {} : { DRAY_HISTORY_MS: String(this.ctx.historyMs) }),
    }, drayReady(this.config.processes ?? 1));
  }
}

/** The bare Streams loop, or with `hop` the same loop running its handlers in one thread. */
export class BaselineSystem extends DrayStream implements System {
  readonly kind: "baseline" | "hop";
  readonly label: string;

  constructor(ctx: BenchContext, readonly hop = false) {
    super(ctx);
    this.kind = hop ? "hop" : "baseline";
    this.label = hop ? "streams loop, thread hop" : "bare streams loop";
  }

  start(): Child {
    return spawnChild([...runtimeCommand(this.ctx.runtime, true), ownPath("./baseline_streams")], {
      ...launchEnv(this.ctx.runtime), REDIS_URL: this.ctx.redisUrl, BENCH_STREAM: benchStream(this.ctx.prefix),
      BENCH_SCENARIO: this.ctx.scenario, ...(this.hop ? { BENCH_HOP: "thread" } : {}),
    }, scriptReady);
  }
}
