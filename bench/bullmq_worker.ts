/**
 * A BullMQ worker for the comparison, run as its own process like dray's worker so that RSS and CPU
 * are measured the same way. BENCH_MODE=inprocess runs the handler in the worker's event loop;
 * BENCH_MODE=threads uses BullMQ's sandbox with `useWorkerThreads: true`.
 * Env: BENCH_QUEUE, BENCH_PREFIX, BENCH_CONCURRENCY, BENCH_MODE, BENCH_SCENARIO, REDIS_URL.
 * Prints `{"ready": <epoch ms>}` once connected, just before it starts taking jobs.
 */
import { Worker } from "bullmq";
import { Redis } from "ioredis";
import { env, exit, onShutdownSignal } from "../src/runtime/mod.ts";
import { handle, type BenchPayload, type Scenario } from "./scenarios.ts";
import { threadEntry } from "./spawn.ts";

const url = env("REDIS_URL") ?? "redis://127.0.0.1:6379";
const scenario = (env("BENCH_SCENARIO") ?? "noop") as Scenario;
const threads = env("BENCH_MODE") === "threads";
const connection = new Redis(url, { maxRetriesPerRequest: null });
let recorder: Redis | undefined;
const push = (key: string, value: string) => (recorder ??= new Redis(url)).rpush(key, value);

const processor = threads
  ? threadEntry("./bullmq_processor")
  : (job: { data: BenchPayload }) => handle(scenario, job.data, push);

const worker = new Worker(env("BENCH_QUEUE") ?? "bench", processor, {
  connection,
  prefix: env("BENCH_PREFIX") ?? "bull",
  concurrency: Number(env("BENCH_CONCURRENCY") ?? 1),
  autorun: false,
  removeOnComplete: { count: 0 },
  ...(threads ? { useWorkerThreads: true } : {}),
});
worker.on("error", (error) => console.error(String(error)));
worker.on("failed", (_job, error) => console.error(`job failed: ${String(error)}`));
await worker.waitUntilReady();
onShutdownSignal(() => {
  void worker.close().finally(() => {
    recorder?.disconnect();
    connection.disconnect();
    exit(0);
  });
});
console.log(JSON.stringify({ ready: Date.now() }));
await worker.run();
