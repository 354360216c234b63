/**
 * The ceiling reference: the barest Redis Streams consumer one would write by hand, run in one
 * process on the same runtime as the worker under test. It reads batches of 200 with XREADGROUP,
 * runs the handler inline (a batch's handlers concurrently), then acks and deletes the batch in one
 * MULTI. No isolation, no time limits, no retries: what dray's machinery costs is the gap to this.
 *
 * Run by the bench: `<runtime> bench/baseline_streams.ts` with BENCH_STREAM, BENCH_SCENARIO and
 * REDIS_URL set; prints `{"ready": <epoch ms>}` when it starts reading; stops on SIGTERM.
 */
import { Redis } from "ioredis";
import "../src/runtime/tracing.ts";
import { env, onShutdownSignal } from "../src/runtime/mod.ts";
import { handle, type BenchPayload, type Scenario } from "./scenarios.ts";

const GROUP = "baseline";
const BATCH = 200;

type Entry = [string, string[]];

async function main(): Promise<void> {
  const stream = env("BENCH_STREAM");
  const scenario = (env("BENCH_SCENARIO") ?? "noop") as Scenario;
  if (!stream) throw new Error("BENCH_STREAM is not set");
  const url = env("REDIS_URL") ?? "redis://127.0.0.1:6379";
  const redis = new Redis(url);
  const recorder = new Redis(url);
  const push = (key: string, value: string) => recorder.rpush(key, value);
  await redis.xgroup("CREATE", stream, GROUP, "0", "MKSTREAM").catch((e: Error) => {
    if (!String(e.message).includes("BUSYGROUP")) throw e;
  });
  let stopping = false;
  onShutdownSignal(() => (stopping = true));
  console.log(JSON.stringify({ ready: Date.now() }));
  while (!stopping) {
    const res = (await redis.xreadgroup("GROUP", GROUP, "c1", "COUNT", BATCH, "BLOCK", 200,
      "STREAMS", stream, ">")) as [string, Entry[]][] | null;
    const entries = res?.[0]?.[1] ?? [];
    if (entries.length === 0) continue;
    const running: Promise<void>[] = [];
    for (const [, fields] of entries) {
      const body = fields[fields.indexOf("m") + 1]!;
      running.push(handle(scenario, (JSON.parse(body) as { payload: BenchPayload }).payload, push));
    }
    await Promise.all(running);
    const ids = entries.map((e) => e[0]);
    await redis.multi().xack(stream, GROUP, ...ids).xdel(stream, ...ids).exec();
  }
  redis.disconnect();
  recorder.disconnect();
}

await main();
