/**
 * The app module the bench's worker loads (`dray worker bench/fixture.ts`): one actor per scenario
 * on the queue "bench" with dray's defaults (a result record per job), and a `.bare` twin that keeps
 * no record (`resultTtl: 0`) for `--results off`. The bench process imports it too, to send.
 */
import { actor, type Actor } from "../src/mod.ts";
import { handle, SCENARIOS, type BenchPayload, type Scenario } from "./scenarios.ts";

export const BENCH_QUEUE = "bench";

type Actors = Record<Scenario, Actor<BenchPayload, void>>;

function define(suffix: string, options: { resultTtl?: number }): Actors {
  return Object.fromEntries(SCENARIOS.map((scenario) => [
    scenario,
    actor<BenchPayload, void>(`bench.${scenario}${suffix}`, { queue: BENCH_QUEUE, maxRetries: 0, ...options },
      (payload, ctx) => handle(scenario, payload, (key, value) => ctx.redis.rpush(key, value))),
  ])) as Actors;
}

/** By whether jobs keep a result record (dray's default) or not. */
export const benchActors: Record<"on" | "off", Actors> = { on: define("", {}), off: define(".bare", { resultTtl: 0 }) };
