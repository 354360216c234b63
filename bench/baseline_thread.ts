/**
 * The thread of the thread-hop reference loop (baseline_streams.ts with BENCH_HOP=thread; its entry is
 * baseline_thread.mjs): takes a batch of message bodies as one JSON string, runs their handlers, and
 * answers with one JSON string of outcomes. About the least that isolating handlers in a thread
 * costs: one message each way per batch.
 */
import { parentPort, workerData } from "node:worker_threads";
import { handle, type BenchPayload, type Scenario } from "./scenarios.ts";

const { scenario, redisUrl } = workerData as { scenario: Scenario; redisUrl: string };
// Only the latency run records (see handle): its client is made then, as a pool thread of dray's would.
let recorder: Promise<{ rpush(key: string, value: string): Promise<unknown> }> | undefined;
const push = async (key: string, value: string) => {
  recorder ??= import("ioredis").then(({ Redis }) => new Redis(redisUrl));
  return (await recorder).rpush(key, value);
};

parentPort!.on("message", async ({ id, text }: { id: number; text: string }) => {
  const bodies = JSON.parse(text) as string[];
  const outcomes = await Promise.all(bodies.map(async (body) => {
    await handle(scenario, (JSON.parse(body) as { payload: BenchPayload }).payload, push);
    return { status: "ok" };
  }));
  parentPort!.postMessage({ id, text: JSON.stringify(outcomes) });
});
// Ready: said by the thread once it listens, since a message posted to it before might be lost (Deno).
parentPort!.postMessage({ id: -1, text: "[]" });
