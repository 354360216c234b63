/**
 * Results, status, abort, groups, pipelines, rate limits and middleware on the MemoryBroker, run with
 * drain(): what users' own unit tests see, with the same semantics as Redis (test/results.test.ts).
 */
import { afterAll, afterEach, beforeEach, describe, expect, test } from "bun:test";
import { pino } from "pino";
import { z } from "zod";
import { actor } from "../src/actor.ts";
import { MemoryBroker } from "../src/broker/memory.ts";
import { setBroker } from "../src/client.ts";
import { configure, settings } from "../src/config.ts";
import { GroupMemberFailed, JobAborted, PipelineStepFailed, TimeoutError, UnknownJobError } from "../src/errors.ts";
import { InlineExecutor } from "../src/executor/inline.ts";
import { group } from "../src/group.ts";
import { getJob } from "../src/job.ts";
import type { Middleware } from "../src/middleware.ts";
import { rateLimiter } from "../src/middleware/rate_limit.ts";
import { pipeline } from "../src/pipeline.ts";
import { defaultMiddleware, Supervisor } from "../src/supervisor.ts";
import { drain } from "../src/testing.ts";
import { rejection } from "./helpers.ts";

/** The error a promise rejects with; fails the test if it resolves. */

const ran: string[] = [];
let running = 0;
let maxRunning = 0;

const flaky = actor("rm_flaky", { queue: "rm", maxRetries: 5, minBackoff: 10, maxBackoff: 20 }, (p: { v: string }, ctx) => {
  ran.push(`flaky:${ctx.attempt}`);
  if (ctx.attempt < 3) throw new Error(`attempt ${ctx.attempt} failed`);
  return { v: p.v, attempt: ctx.attempt };
});
const square = actor("rm_square", { queue: "rm", schema: z.object({ n: z.number() }) }, ({ n }) => {
  ran.push(`square:${n}`);
  return n * n;
});
const failing = actor("rm_fail", { queue: "rm", maxRetries: 0 }, () => {
  throw new Error("boom");
});
const double = actor("rm_double", { queue: "rm", schema: z.number() }, (n) => n * 2);
const describeIt = actor("rm_describe", { queue: "rm", schema: z.number() }, (n) => `result is ${n}`);
const big = actor("rm_big", { queue: "rm" }, (n: number) => "x".repeat(n));
const nothingKept = actor("rm_nokeep", { queue: "rm", resultTtl: 0 }, () => 42);
const limited = actor("rm_limited", { queue: "rm", rateLimit: { concurrency: 2, backoff: 5 } }, async () => {
  running++;
  maxRunning = Math.max(maxRunning, running);
  await new Promise((r) => setTimeout(r, 10));
  running--;
});
const meta = actor("rm_meta", { queue: "rm" }, (_p: unknown, ctx) => ctx.meta);
const overlaps: string[] = [];
const perCustomer = new Map<string, number>();
let charging = 0;
let chargingMax = 0;
const charge = actor("rm_charge", { queue: "rm" }, async (p: { customer: string }) => {
  const now = (perCustomer.get(p.customer) ?? 0) + 1;
  perCustomer.set(p.customer, now);
  chargingMax = Math.max(chargingMax, ++charging);
  overlaps.push(`${p.customer}${now}`);
  await new Promise((r) => setTimeout(r, 5));
  perCustomer.set(p.customer, now - 1);
  charging--;
});

let broker: MemoryBroker;
beforeEach(() => {
  broker = new MemoryBroker();
  setBroker(broker);
  ran.length = 0;
});
afterEach(() => setBroker(undefined));
afterAll(() => configure({ middleware: [], maxResultBytes: 1_048_576 }));

describe("results on the memory broker", () => {
  test("a job that retried twice: result, status and attempts", async () => {
    // given a waiter that starts before any worker runs
    const job = await flaky.send({ v: "hi" });
    expect(await job.status()).toBe("queued");
    const waiting = job.result({ timeout: 5_000 });
    // when the queue is drained
    await drain(broker);
    // then the waiter resolves with the third attempt's value
    expect(await waiting).toEqual({ v: "hi", attempt: 3 });
    const info = await job.info();
    expect(info).toMatchObject({ status: "completed", attempts: 3, actor: "rm_flaky", queue: "rm" });
    expect(info.finishedAt).toBeGreaterThanOrEqual(info.startedAt!);
  });

  test("a job that died rejects with its own error; many waiters all resolve", async () => {
    const job = await failing.send(undefined);
    const waiters = Array.from({ length: 5 }, () => job.result({ timeout: 5_000 }).catch((e: Error) => e));
    await drain(broker);
    for (const e of await Promise.all(waiters)) expect((e as Error).message).toBe("boom");
    expect(await job.status()).toBe("dead");
  });

  test("abort of a queued job: it never runs; abort of a finished job says so", async () => {
    const job = await square.send({ n: 3 });
    const aborted = await job.abort();
    expect(aborted).toMatchObject({ aborted: true, status: "queued" });
    await drain(broker);
    expect(ran).not.toContain("square:3");
    expect(await job.status()).toBe("aborted");
    await expect(job.result()).rejects.toBeInstanceOf(JobAborted);
    const done = await square.send({ n: 4 });
    await drain(broker);
    expect(await done.abort()).toMatchObject({ aborted: false, status: "completed" });
    expect(await done.result()).toBe(16);
  });

  test("unknown ids and actors that keep nothing answer UnknownJobError at once", async () => {
    await expect(getJob("no-such-job").result({ timeout: 5_000 })).rejects.toBeInstanceOf(UnknownJobError);
    await expect(getJob("no-such-job").abort()).rejects.toBeInstanceOf(UnknownJobError);
    const job = await nothingKept.send(undefined);
    await drain(broker);
    await expect(job.status()).rejects.toBeInstanceOf(UnknownJobError);
  });

  test("a wait that outlasts its timeout says the job is still pending", async () => {
    const job = await square.send({ n: 1 });
    const error = await rejection(job.result({ timeout: 30 }));
    expect(error).toBeInstanceOf(TimeoutError);
    expect(error.message).toContain("still queued");
  });

  test("dedup: a second send with the same id is the first job", async () => {
    const first = await square.send({ n: 5 }, { jobId: "same" });
    const second = await square.send({ n: 6 }, { jobId: "same" });
    expect(second.duplicate).toBe(true);
    await drain(broker);
    expect(await second.result()).toBe(25);
  });

  test("groups: results in order; a failed member is named", async () => {
    const g = await group(Array.from({ length: 20 }, (_, n) => square.message({ n }))).send();
    await drain(broker);
    expect(await g.results({ timeout: 1_000 })).toEqual(Array.from({ length: 20 }, (_, n) => n * n));
    const bad = await group([square.message({ n: 1 }), failing.message(undefined)]).send();
    await drain(broker);
    const error = await rejection(bad.results());
    expect(error).toBeInstanceOf(GroupMemberFailed);
    expect(error.message).toContain(`member 1 (actor "rm_fail"`);
  });

  test("pipelines: each step gets the previous result; a failed step stops it", async () => {
    const p = await pipeline([square.message({ n: 3 }), double.message(), describeIt.message()]).send();
    await drain(broker);
    expect(await p.results({ timeout: 1_000 })).toEqual([9, 18, "result is 18"]);
    const stopped = await pipeline([square.message({ n: 2 }), failing.message(), double.message()]).send();
    await drain(broker);
    const error = await rejection(stopped.result());
    expect(error).toBeInstanceOf(PipelineStepFailed);
    expect(error.step).toBe(1);
    await expect(stopped.jobs[2]!.status()).rejects.toBeInstanceOf(UnknownJobError); // never sent
  });

  test("a result over the cap is refused: failed with ResultTooLarge, not dead-lettered", async () => {
    configure({ maxResultBytes: 100 });
    try {
      const job = await big.send(500);
      await drain(broker);
      const error = await rejection(job.result());
      expect(error.name).toBe("ResultTooLarge");
      expect(await job.status()).toBe("failed");
      expect((await broker.stats("rm")).dead).toBe(0);
    } finally {
      configure({ maxResultBytes: 1_048_576 });
    }
  });

  test("a concurrency limit of 2 holds with 8 slots", async () => {
    maxRunning = 0;
    const jobs = await limited.sendMany(Array.from({ length: 12 }, () => undefined));
    await drain(broker, { concurrency: 8 });
    expect(maxRunning).toBe(2);
    for (const j of jobs) expect(await j.info()).toMatchObject({ status: "completed", attempts: 1 });
  });

  test("middleware: beforeEnqueue sets message meta, beforeProcess adds to it, the handler sees ctx.meta", async () => {
    const tracing: Middleware = { name: "tracing", beforeEnqueue: (m) => void (m.meta = { traceId: "t-1" }) };
    const seen: string[] = [];
    const stamping: Middleware = {
      name: "stamping",
      beforeProcess: (info) => void (info.meta.worker = "w-1"),
      afterProcess: (_info, outcome) => void seen.push(outcome.status),
    };
    configure({ middleware: [tracing] });
    const job = await meta.send(undefined);
    configure({ middleware: [] });
    const logger = pino({ level: "silent" });
    const registry = new Map([[meta.name, meta]]);
    const supervisor = new Supervisor({ broker, registry, logger, blockMs: 10, middleware: [...defaultMiddleware, stamping],
      executor: new InlineExecutor({ registry, concurrency: 2, logger }) });
    await supervisor.start();
    try {
      expect(await job.result({ timeout: 2_000 })).toEqual({ traceId: "t-1", worker: "w-1" });
      expect(seen).toEqual(["ok"]);
    } finally {
      await supervisor.stop();
    }
    expect(settings().middleware).toEqual([]);
  });

  test("a rateLimiter middleware keyed by payload: one at a time per customer, customers side by side", async () => {
    overlaps.length = 0;
    await charge.sendMany([..."AAAAABBBBB"].map((customer) => ({ customer })));
    const logger = pino({ level: "silent" });
    const registry = new Map([[charge.name, charge]]);
    const limiter = rateLimiter({ concurrency: 1, key: (p: { customer: string }) => `customer:${p.customer}`, backoff: 2, actors: ["rm_charge"] });
    const supervisor = new Supervisor({ broker, registry, logger, blockMs: 5, middleware: [...defaultMiddleware, limiter],
      executor: new InlineExecutor({ registry, concurrency: 8, logger }) });
    await supervisor.start();
    try {
      const deadline = Date.now() + 5_000;
      while (overlaps.length < 10 && Date.now() < deadline) {
        broker.promoteDelayed();
        await new Promise((r) => setTimeout(r, 5));
      }
    } finally {
      await supervisor.stop();
    }
    expect(overlaps).toHaveLength(10);
    expect(overlaps.filter((o) => o.endsWith("2"))).toEqual([]); // never two of one customer at once
    expect(chargingMax).toBe(2); // but the two customers side by side
    expect(() => rateLimiter({ window: 1_000 })).toThrow("window needs perWindow");
  });
});
