/**
 * BullMQ as a system the bench measures (`--compare bullmq`). Apart from the other systems so that
 * bullmq, which dray does not depend on, is imported only when a comparison asks for it.
 */
import type { Redis } from "ioredis";
import { Queue } from "bullmq";
import type { RuntimeName } from "../src/runtime/mod.ts";
import { BENCH_QUEUE } from "./fixture.ts";
import type { BenchPayload } from "./scenarios.ts";
import { ownPath, runtimeCommand, scriptReady, spawnChild, type Child } from "./spawn.ts";
import type { BenchContext, Remaining, System } from "./systems.ts";

export type BullMode = "inprocess" | "threads";

export class BullSystem implements System {
  readonly kind = "bullmq";
  readonly label: string;
  readonly pollCommands = { llen: 2, zcard: 1 };
  readonly #queue: Queue;
  readonly #connection: Redis;
  readonly #prefix: string;

  constructor(private readonly ctx: BenchContext, readonly mode: BullMode, readonly concurrency: number,
    readonly runtime: RuntimeName = ctx.runtime) {
    this.label = `bullmq ${mode === "threads" ? "worker-threads" : "in-process"} c${concurrency}${runtime === ctx.runtime ? "" : ` (${runtime})`}`;
    this.#prefix = `${ctx.prefix}-bull`;
    // BullMQ does not close a connection it was given: this one is ours to close. A single Redis's:
    // mod.ts refuses --compare bullmq on a cluster.
    this.#connection = (ctx.redis as Redis).duplicate({ maxRetriesPerRequest: null });
    this.#queue = new Queue(BENCH_QUEUE, {
      connection: this.#connection,
      prefix: this.#prefix,
      defaultJobOptions: { removeOnComplete: true, removeOnFail: 1_000 },
    });
  }

  enqueueBulk(payloads: BenchPayload[]) {
    return this.#queue.addBulk(payloads.map((data) => ({ name: "bench", data })));
  }

  enqueueOne(payload: BenchPayload) {
    return this.#queue.add("bench", payload);
  }

  async remaining(): Promise<Remaining> {
    const k = `${this.#prefix}:${BENCH_QUEUE}`;
    const res = await this.ctx.redis.pipeline().llen(`${k}:wait`).llen(`${k}:active`).zcard(`${k}:failed`).exec();
    const n = (i: number) => Number(res?.[i]?.[1] ?? 0);
    return { left: n(0) + n(1), failed: n(2) };
  }

  start(): Child {
    return spawnChild([...runtimeCommand(this.runtime, true), ownPath("./bullmq_worker")], {
      REDIS_URL: this.ctx.redisUrl, BENCH_QUEUE: BENCH_QUEUE, BENCH_PREFIX: this.#prefix,
      BENCH_CONCURRENCY: String(this.concurrency), BENCH_MODE: this.mode, BENCH_SCENARIO: this.ctx.scenario,
    }, scriptReady);
  }

  async close(): Promise<void> {
    await this.#queue.close();
    this.#connection.disconnect();
  }
}
