/** The send side in-process: option and payload validation, sendTask routing, dedup, configuration. */
import { afterAll, afterEach, beforeEach, describe, expect, test } from "bun:test";
import { Redis } from "ioredis";
import { z } from "zod";
import { actor, ConfigError, PayloadValidationError, sendTask, UnknownActorError } from "../src/mod.ts";
import { drain, MemoryBroker, setBroker } from "../src/testing.ts";
import { backoff } from "../src/middleware/retries.ts";
import { configure, settings } from "../src/config.ts";
import { closeBroker } from "../src/client.ts";
import { RedisBroker } from "../src/broker/redis.ts";
import { chained, flaky, signup } from "./fixtures/api_app.ts";
import { cleanPrefix, REDIS_URL, testPrefix } from "./helpers.ts";
import { hasRedis } from "./redis_test.ts";

describe("actor()", () => {
  test("rejects invalid options with a message naming the option", () => {
    expect(() => actor("api_bad1", { maxRetries: -1 }, () => {})).toThrow(ConfigError);
    expect(() => actor("api_bad2", { queue: "has space" }, () => {})).toThrow(/queue/);
    expect(() => actor("api_bad3", { minBackoff: 10, maxBackoff: 5 }, () => {})).toThrow(/minBackoff/);
    expect(() => actor("api_bad4", { timeLimit: 0 }, () => {})).toThrow(/timeLimit/);
    expect(() => actor("api_bad5", { nope: 1 } as never, () => {})).toThrow(/nope/);
    expect(() => actor("bad name!", () => {})).toThrow(/name/);
    // Options after the handler (BullMQ's and Dramatiq's order) would otherwise be dropped silently.
    expect(() => (actor as (...args: unknown[]) => unknown)("api_bad6", () => {}, { queue: "other" })).toThrow(/options go before the handler/);
  });

  test("defaults follow Dramatiq: 20 retries, 15 s min backoff, 10 min time limit, queue default", () => {
    const a = actor("api_defaults", () => {});
    expect(a.options).toMatchObject({ queue: "default", maxRetries: 20, minBackoff: 15_000, timeLimit: 600_000, priority: 0 });
  });

  test("a name can be defined once", () => {
    expect(() => actor("api_signup", () => {})).toThrow(/defined twice/);
  });

  test("backoff stays within [max(min, c/2), c] for c = min(max, min*2^n)", () => {
    for (let n = 0; n < 30; n++) {
      for (const r of [0, 0.5, 0.999]) {
        const c = Math.min(3_600_000, 15_000 * 2 ** n);
        const d = backoff(n, 15_000, 3_600_000, () => r);
        expect(d).toBeGreaterThanOrEqual(Math.max(15_000, c / 2));
        expect(d).toBeLessThanOrEqual(c);
      }
    }
  });
});

describe("send with a MemoryBroker and drain()", () => {
  const broker = new MemoryBroker();
  beforeEach(() => setBroker(broker));
  afterEach(() => setBroker(undefined));

  test("a payload that fails the schema is refused before anything is sent", async () => {
    await expect(signup.send({ email: "not-an-email" })).rejects.toThrow(PayloadValidationError);
    await expect(signup.send({ email: "not-an-email" })).rejects.toThrow(/email/);
    expect((await broker.stats("api")).ready).toBe(0);
  });

  test("drain runs queued jobs, the jobs they send, and retries, to completion", async () => {
    await signup.send({ email: "a@b.co" });
    await chained.send({ n: 3 });
    await flaky.send(null);
    const tally = await drain(broker);
    expect(tally).toEqual({ completed: 6, dead: 0, retried: 2 });
    expect(await broker.stats("api")).toMatchObject({ ready: 0, running: 0, delayed: 0 });
  });

  test("non-JSON payloads and bad send options are refused", async () => {
    await expect(chained.send({ n: 1n } as never)).rejects.toThrow(ConfigError);
    await expect(chained.send({ n: 1 }, { delay: -5 })).rejects.toThrow(/delay/);
    await expect(chained.send({ n: 1 }, { delay: 5, at: Date.now() })).rejects.toThrow(/delay or at/);
  });
});

describe("send with Redis", () => {
  let prefix = "";
  const it = (title: string, body: () => Promise<void>) => test.skipIf(!hasRedis)(title, body, 15_000);
  beforeEach(() => {
    prefix = testPrefix("api");
    configure({ prefix, redisUrl: REDIS_URL });
  });
  afterEach(async () => {
    await closeBroker();
    await cleanPrefix(prefix);
  });
  afterAll(() => configure({ prefix: "dray" }));

  it("sendMany sends all in one call and returns a handle each", async () => {
    const handles = await signup.sendMany([{ email: "a@b.co" }, { email: "c@d.co" }, { email: "e@f.co" }]);
    expect(handles.map((h) => h.queue)).toEqual(["api", "api", "api"]);
    expect(new Set(handles.map((h) => h.id)).size).toBe(3);
    const broker = new RedisBroker({ url: REDIS_URL, prefix });
    expect((await broker.stats("api")).ready).toBe(3);
    await broker.close();
  });

  it("a second send with the same jobId is a no-op while the first is known", async () => {
    const first = await signup.send({ email: "a@b.co" }, { jobId: "welcome-123" });
    const second = await signup.send({ email: "a@b.co" }, { jobId: "welcome-123" });
    expect(first.duplicate).toBe(false);
    expect(second.duplicate).toBe(true);
    expect(second.id).toBe("welcome-123");
    const broker = new RedisBroker({ url: REDIS_URL, prefix });
    expect((await broker.stats("api")).ready).toBe(1);
    await broker.close();
  });

  it("sendTask routes by the name workers published, and refuses unknown names without sending", async () => {
    const broker = new RedisBroker({ url: REDIS_URL, prefix });
    await broker.publishActors([{ name: "remote_report_task", queue: "reports", priority: 2 }]);
    const h = await sendTask("remote_report_task", { day: "2026-11-23" }, { delay: 1_000 });
    expect(h.queue).toBe("reports");
    expect((await broker.stats("reports")).delayed).toBe(1);
    await expect(sendTask("nobody_has_this_task", {})).rejects.toThrow(UnknownActorError);
    await expect(sendTask("nobody_has_this_task", {})).rejects.toThrow(/nothing was sent/);
    const explicit = await sendTask("nobody_has_this_task", {}, { queue: "elsewhere" });
    expect(explicit.queue).toBe("elsewhere");
    expect((await broker.stats("elsewhere")).ready).toBe(1);
    await broker.close();
  });

  it("sendTask validates against a local actor's schema", async () => {
    await expect(sendTask("api_signup", { email: "nope" })).rejects.toThrow(PayloadValidationError);
  });

  it("REDIS_URL with user:password works", async () => {
    const admin = new Redis(REDIS_URL);
    const user = `dray-${prefix}`;
    await admin.call("ACL", "SETUSER", user, "on", ">s3cret", "~*", "&*", "+@all");
    try {
      const url = new URL(REDIS_URL);
      url.username = user;
      url.password = "s3cret";
      configure({ redisUrl: url.toString() });
      expect(settings().redisUrl).toContain("s3cret");
      const h = await signup.send({ email: "a@b.co" });
      expect(h.id).toBeTruthy();
      url.password = "wrong";
      const bad = new RedisBroker({ url: url.toString(), prefix });
      await expect(bad.enqueue([])).resolves.toEqual([]);
      await expect(bad.stats("api")).rejects.toThrow();
      await bad.close();
    } finally {
      await admin.call("ACL", "DELUSER", user);
      admin.disconnect();
    }
  });
});

test("an actor with a zod schema types send() by the schema's input", () => {
  const a = actor("api_typing", { schema: z.object({ n: z.number().default(1) }) }, (p) => p.n + 1);
  // compile-time check: `n` is optional on send because it has a default
  const send: (p: { n?: number }) => unknown = a.send;
  expect(typeof send).toBe("function");
});
