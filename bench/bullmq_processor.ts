/**
 * BullMQ's sandboxed processor for `useWorkerThreads: true` (a file BullMQ loads in each of its
 * worker threads). Same handler as every other system; BENCH_SCENARIO and REDIS_URL come from the
 * environment the thread inherits.
 */
import { Redis } from "ioredis";
import { env } from "../src/runtime/mod.ts";
import { handle, type BenchPayload, type Scenario } from "./scenarios.ts";

const scenario = (env("BENCH_SCENARIO") ?? "noop") as Scenario;
let recorder: Redis | undefined;
const push = (key: string, value: string) =>
  (recorder ??= new Redis(env("REDIS_URL") ?? "redis://127.0.0.1:6379")).rpush(key, value);

export default async function run(job: { data: BenchPayload }): Promise<void> {
  await handle(scenario, job.data, push);
}
