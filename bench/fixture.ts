/**
 * The app module the bench's worker loads (`dray worker bench/fixture.ts`): one actor per scenario
 * on the queue "bench" with dray's defaults (a result record per job), and a `.bare` twin that keeps
 * no record (`resultTtl: 0`) for `--results off`. The bench process imports it too, to send.
 *
 * With `--queues N` the run uses more queues, whose names depend on its prefix (topology.ts): the
 * same actors again on each of them, named after the queue, which the bench defines when it has
 * picked them and the worker at load from DRAY_BENCH_QUEUES.
 */
import { actor, type Actor } from "../src/mod.ts";
import { env } from "../src/runtime/mod.ts";
import { handle, SCENARIOS, type BenchPayload, type Scenario } from "./scenarios.ts";

export const BENCH_QUEUE = "bench";

type Actors = Record<Scenario, Actor<BenchPayload, void>>;

function define(suffix: string, queue: string, options: { resultTtl?: number }): Actors {
  return Object.fromEntries(SCENARIOS.map((scenario) => [
    scenario,
    actor<BenchPayload, void>(`bench.${scenario}${suffix}`, { queue, maxRetries: 0, ...options },
      (payload, ctx) => handle(scenario, payload, (key, value) => ctx.redis.rpush(key, value))),
  ])) as Actors;
}

/** By whether jobs keep a result record (dray's default) or not. */
export const benchActors: Record<"on" | "off", Actors> = {
  on: define("", BENCH_QUEUE, {}),
  off: define(".bare", BENCH_QUEUE, { resultTtl: 0 }),
};

const byQueue = new Map([[BENCH_QUEUE, benchActors]]);

/** The bench's actors on `queue`, defined on first use (an actor name is defined once per process). */
export function queueActors(queue: string): Record<"on" | "off", Actors> {
  let actors = byQueue.get(queue);
  if (!actors) {
    actors = { on: define(`.${queue}`, queue, {}), off: define(`.${queue}.bare`, queue, { resultTtl: 0 }) };
    byQueue.set(queue, actors);
  }
  return actors;
}

for (const queue of (env("DRAY_BENCH_QUEUES") ?? "").split(",").filter(Boolean)) queueActors(queue);
