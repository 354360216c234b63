/**
 * How long a worker's pool takes to replace a thread it killed: from the kill of a thread stuck in a
 * CPU loop to the first job the replacement thread runs, which includes the new thread importing
 * dray and the app's modules. One thread, so the job waits for the replacement. On Node from the
 * sources every thread first loads tsx; compiled (dist/, as installed from npm) none does:
 *
 *   node --import tsx bench/replacement.ts [kills]        # from a checkout's sources
 *   npm run build && node dist/bench/replacement.js [kills]
 *
 * Prints one JSON line: the runtime, whether it ran compiled, and each replacement time in ms.
 */
import { pino } from "pino";
import { createExecutor } from "../src/executor/mod.ts";
import type { JobRequest } from "../src/executor/types.ts";
import { argv, runtime } from "../src/runtime/mod.ts";

// Beside this file, in its form: plain URL work, so that the script also runs on older checkouts.
const compiled = import.meta.url.endsWith(".js");
const app = new URL(`./replacement_app.${compiled ? "js" : "ts"}`, import.meta.url).href;
const kills = Number(argv()[0] ?? 10);
let seq = 0;
const job = (actor: string, timeLimit: number): JobRequest =>
  ({ id: `replace-${++seq}`, actor, queue: "bench-replace", payload: null, attempt: 1, timeLimit });

const executor = createExecutor({
  isolation: "thread", modules: [app], registry: new Map(),
  concurrency: 1, threads: 1, graceMs: 50, logger: pino({ level: "silent" }),
  redisUrl: "redis://127.0.0.1:6379", prefix: "dray-bench-replace",
});
await executor.start();
const ms: number[] = [];
try {
  for (let i = 0; i < kills; i++) {
    const stuck = await executor.run(job("bench_spin", 100));
    const killedAt = performance.timeOrigin + performance.now();
    if (stuck.status !== "error") throw new Error(`the spinning job ended ${stuck.status}, not killed`);
    const next = await executor.run(job("bench_started", 60_000));
    if (next.status !== "ok") throw new Error(`the job after the kill ended ${next.status}`);
    ms.push(Math.round((next.value as number) - killedAt));
  }
} finally {
  await executor.close(0);
}
const sorted = [...ms].sort((a, b) => a - b);
console.log(JSON.stringify({
  runtime: runtime(), compiled, kills, medianMs: sorted[Math.floor(sorted.length / 2)],
  minMs: sorted[0], maxMs: sorted.at(-1), ms,
}));
