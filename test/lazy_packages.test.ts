/**
 * A pool thread or child imports the app modules, and so dray's whole public entry. croner, piscina
 * and ioredis load on first use (src/runtime/mod.ts `lazy`), so a host whose app defines no cron and
 * whose handlers never touch Redis loads none of them. One host per pool here, so each job runs where
 * the one before it did.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { pino } from "pino";
import { pathToFileURL } from "node:url";
import process from "node:process";
import { createExecutor, type Isolation } from "../src/executor/mod.ts";
import type { Executor, JobRequest } from "../src/executor/types.ts";
import { fixture } from "./helpers.ts";

const modes: Isolation[] = ["thread", "process"];
let n = 0;
const job = (actor: string): JobRequest => ({ id: `lazy-${++n}`, actor, queue: "lazy", payload: {}, attempt: 1, timeLimit: 10_000 });

for (const isolation of modes) {
  describe(`${isolation} host`, () => {
    let ex: Executor;
    beforeAll(async () => {
      ex = createExecutor({
        isolation, modules: [pathToFileURL(fixture("lazy_app.ts")).href], registry: new Map(), concurrency: 1, threads: 1,
        logger: pino({ level: "silent" }), redisUrl: process.env.REDIS_URL ?? "redis://127.0.0.1:6379", prefix: `lazy-${isolation}`,
      });
      await ex.start();
    }, 60_000);
    afterAll(async () => await ex.close(0));

    test("given app modules that import dray and define no cron, when a job runs, then its host has loaded none of them", async () => {
      expect(await ex.run(job("lazy_loaded"))).toMatchObject({ status: "ok", value: [] });
    });

    test("given a cron expression parsed there, when it runs, then croner loads on that first use and works", async () => {
      expect(await ex.run(job("lazy_cron"))).toMatchObject({ status: "ok", value: ["croner"] });
      expect(await ex.run(job("lazy_loaded"))).toMatchObject({ status: "ok", value: ["croner"] });
    });

    test("given a handler that uses ctx.redis, when it runs, then ioredis loads on that first use and the client works", async () => {
      expect(await ex.run(job("lazy_redis"))).toMatchObject({ status: "ok", value: ["croner", "ioredis"] });
    });
  });
}
