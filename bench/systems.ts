/**
 * The systems a run can measure, behind one shape: how to enqueue for it, how to start its worker
 * process, and how to tell how many jobs are left. dray and the bare Streams loop share dray's
 * enqueue path and stream; BullMQ has its own (bullmq_system.ts, loaded only to compare with it).
 */
import { bySlotGroup, valuesOf, type RedisClient } from "../src/broker/connection.ts";
import { queueKeys } from "../src/broker/keys.ts";
import type { Isolation } from "../src/executor/mod.ts";
import type { RuntimeName } from "../src/runtime/mod.ts";
import { BENCH_QUEUE, queueActors } from "./fixture.ts";
import type { BenchPayload, Scenario } from "./scenarios.ts";
import type { BenchQueue } from "./topology.ts";
import { drayReady, launchEnv, ownPath, runtimeCommand, scriptReady, spawnChild, type Child } from "./spawn.ts";

export interface BenchContext {
  /** The bench's own connection (stats, polls, cleanup): a Cluster client for a `redis+cluster://` URL. */
  redis: RedisClient;
  redisUrl: string;
  /** The URL names a Redis Cluster: runs report their Redis cost per master too. */
  cluster: boolean;
  /** dray's jobs go round-robin over these queues (job i to queue i mod N); the worker reads them all. */
  queues: BenchQueue[];
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
  /** The same by server ("host:port"), when they go to more than one; unset: all to the one Redis. */
  readonly pollCommandsAt?: Record<string, Record<string, number>>;
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
  readonly pollCommands: Record<string, number>;
  readonly pollCommandsAt: Record<string, Record<string, number>>;

  constructor(protected readonly ctx: BenchContext) {
    // Two XLENs per queue, on the server that holds it.
    this.pollCommands = { xlen: 2 * ctx.queues.length };
    this.pollCommandsAt = {};
    for (const q of ctx.queues) {
      const at = (this.pollCommandsAt[q.node] ??= { xlen: 0 });
      at.xlen! += 2;
    }
  }

  enqueueBulk(payloads: BenchPayload[]) {
    const queues = this.ctx.queues;
    if (queues.length === 1) return this.#actor(0).sendMany(payloads);
    const parts: BenchPayload[][] = queues.map(() => []);
    for (const p of payloads) parts[p.i % queues.length]!.push(p);
    // One sendMany per queue, as an app with an actor per queue would send, all at once.
    return Promise.all(parts.map((part, q) => (part.length > 0 ? this.#actor(q).sendMany(part) : undefined)));
  }

  enqueueOne(payload: BenchPayload) {
    return this.#actor(payload.i % this.ctx.queues.length).send(payload);
  }

  #actor(queue: number) {
    return queueActors(this.ctx.queues[queue]!.name)[this.ctx.results ? "on" : "off"][this.ctx.scenario];
  }

  async remaining(): Promise<Remaining> {
    // Entries are deleted when acked, so the streams' length is what is waiting or running.
    const keys = this.ctx.queues.map((q) => queueKeys(this.ctx.prefix, q.name));
    const replies = await bySlotGroup(this.ctx.redis, keys, (k) => k.stream(0), (pipe, k) => void pipe.xlen(k.stream(0)).xlen(k.dlq));
    let left = 0;
    let failed = 0;
    for (const reply of replies) {
      const [waiting, dead] = valuesOf(reply);
      left += Number(waiting ?? 0);
      failed += Number(dead ?? 0);
    }
    return { left, failed };
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
      ...(this.#ownQueues() ? ["--queues", this.ctx.queues.map((q) => q.name).join(",")] : []),
      ...(this.ctx.metricsPort === undefined ? [] : ["--metrics-port", String(this.ctx.metricsPort)]),
      ...((this.config.processes ?? 1) > 1 ? ["--processes", String(this.config.processes)] : [])], {
      ...launchEnv(this.ctx.runtime), REDIS_URL: this.ctx.redisUrl, DRAY_PREFIX: this.ctx.prefix, DRAY_LOG_LEVEL: "info",
      ...(this.#ownQueues() ? { DRAY_BENCH_QUEUES: this.ctx.queues.map((q) => q.name).join(",") } : {}),
      ...(this.ctx.historyMs === undefined ? {} : { DRAY_HISTORY_MS: String(this.ctx.historyMs) }),
    }, drayReady(this.config.processes ?? 1));
  }

  /** Queues other than "bench" alone: the worker defines their actors and reads only them, not "bench" too. */
  #ownQueues(): boolean {
    return this.ctx.queues.length !== 1 || this.ctx.queues[0]!.name !== BENCH_QUEUE;
  }
}

/**
 * The bare Streams loop, or with `hop` the same loop running its handlers in one thread. It reads the
 * one stream of queue "bench" with a plain client: mod.ts runs it only on a single Redis and one queue.
 */
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
