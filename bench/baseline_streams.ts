/**
 * The ceiling reference: the barest Redis Streams consumer one would write by hand, run in one
 * process on the same runtime as the worker under test. It reads batches of 200 with XREADGROUP,
 * runs the handler inline (a batch's handlers concurrently), then acks and deletes the batch in one
 * MULTI. No isolation, no time limits, no retries: what dray's machinery costs is the gap to this.
 *
 * With BENCH_HOP=thread the same loop runs the handlers in one worker thread (baseline_thread.ts):
 * each batch goes there as one JSON string and its outcomes come back as one, and the loop reads the
 * next batch while one runs (two batches of 100 in flight: 200 jobs out, as in the bare loop). That
 * is about the least isolation can cost, so the two loops split dray's gap to the bare one into what
 * the thread hop costs and what the rest of dray does.
 *
 * Run by the bench: `<runtime> bench/baseline_streams.ts` with BENCH_STREAM, BENCH_SCENARIO and
 * REDIS_URL set; prints `{"ready": <epoch ms>}` when it starts reading; stops on SIGTERM.
 */
import { Worker } from "node:worker_threads";
import { Redis } from "ioredis";
import { quietIoredisTracing } from "../src/runtime/tracing.ts";
import { env, exit, onShutdownSignal } from "../src/runtime/mod.ts";
import { handle, type BenchPayload, type Scenario } from "./scenarios.ts";
import { threadEntry } from "./spawn.ts";

// The same ioredis tracing fix dray's clients get, so that the loop and dray are compared like for like.
quietIoredisTracing();
const GROUP = "baseline";
const BATCH = 200;
/**
 * Batches handed to the thread and not yet acked, in the thread-hop loop. It reads BATCH / IN_FLIGHT
 * at a time, so that both loops have at most BATCH jobs out (their concurrency, which io measures).
 */
const IN_FLIGHT = 2;

type Entry = [string, string[]];

async function main(): Promise<void> {
  const stream = env("BENCH_STREAM");
  const scenario = (env("BENCH_SCENARIO") ?? "noop") as Scenario;
  if (!stream) throw new Error("BENCH_STREAM is not set");
  const url = env("REDIS_URL") ?? "redis://127.0.0.1:6379";
  const redis = new Redis(url);
  await redis.xgroup("CREATE", stream, GROUP, "0", "MKSTREAM").catch((e: Error) => {
    if (!String(e.message).includes("BUSYGROUP")) throw e;
  });
  let stopping = false;
  onShutdownSignal(() => (stopping = true));
  const hop = env("BENCH_HOP") === "thread";
  const count = hop ? BATCH / IN_FLIGHT : BATCH;
  const read = async () => {
    const res = (await redis.xreadgroup("GROUP", GROUP, "c1", "COUNT", count, "BLOCK", 200,
      "STREAMS", stream, ">")) as [string, Entry[]][] | null;
    return res?.[0]?.[1] ?? [];
  };
  const ack = async (entries: Entry[]) => {
    const ids = entries.map((e) => e[0]);
    await redis.multi().xack(stream, GROUP, ...ids).xdel(stream, ...ids).exec();
  };
  const body = (fields: string[]) => fields[fields.indexOf("m") + 1]!;
  if (hop) {
    await hopLoop(scenario, url, read, ack, body, () => stopping);
  } else {
    // The latency run's records go on a connection of their own (the thread-hop loop's thread has its own).
    const recorder = new Redis(url);
    const push = (key: string, value: string) => recorder.rpush(key, value);
    console.log(JSON.stringify({ ready: Date.now() }));
    while (!stopping) {
      const entries = await read();
      if (entries.length === 0) continue;
      await Promise.all(entries.map(([, fields]) => handle(scenario, (JSON.parse(body(fields)) as { payload: BenchPayload }).payload, push)));
      await ack(entries);
    }
    recorder.disconnect();
  }
  redis.disconnect();
}

async function hopLoop(scenario: Scenario, redisUrl: string, read: () => Promise<Entry[]>, ack: (entries: Entry[]) => Promise<void>,
  body: (fields: string[]) => string, stopping: () => boolean): Promise<void> {
  const thread = new Worker(threadEntry("./baseline_thread"), { workerData: { scenario, redisUrl } });
  const answers = new Map<number, () => void>();
  thread.on("error", (error) => {
    console.error(error);
    exit(1);
  });
  thread.on("message", ({ id, text }: { id: number; text: string }) => {
    JSON.parse(text); // the outcomes, as a runtime would read them
    answers.get(id)?.();
    answers.delete(id);
  });
  // Ready once the thread says it listens: its start is not part of the drain.
  await new Promise<void>((resolve) => answers.set(-1, resolve));
  console.log(JSON.stringify({ ready: Date.now() }));
  let next = 0;
  let slotFree: (() => void) | undefined;
  const running = new Set<Promise<void>>();
  while (!stopping()) {
    if (running.size >= IN_FLIGHT) {
      await new Promise<void>((resolve) => (slotFree = resolve));
      continue;
    }
    const entries = await read();
    if (entries.length === 0) continue;
    const id = next++;
    const batch = new Promise<void>((resolve) => {
      answers.set(id, resolve);
      thread.postMessage({ id, text: JSON.stringify(entries.map(([, fields]) => body(fields))) });
    }).then(() => ack(entries)).finally(() => {
      running.delete(batch);
      slotFree?.();
      slotFree = undefined;
    });
    running.add(batch);
  }
  await Promise.all(running);
  await thread.terminate();
}

await main();
