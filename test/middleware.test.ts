/**
 * The default middleware on the hot path: for a plain job every hook answers synchronously (no
 * promise, so the supervisor awaits nothing), and only a job that needs Redis (a rate-limit slot, a
 * next pipeline step) gets a promise. The behaviour of each feature is tested with its feature.
 */
import { describe, expect, test } from "bun:test";
import { actor, type Actor } from "../src/actor.ts";
import { MemoryBroker } from "../src/broker/memory.ts";
import type { Message } from "../src/message.ts";
import { isPromise, runAfterProcess, runBeforeProcess, type ProcessInfo } from "../src/middleware.ts";
import { maxLostClaims } from "../src/middleware/retries.ts";
import { defaultMiddleware } from "../src/supervisor.ts";

const plain = actor("mw_plain", { queue: "mw" }, () => 1);
const limited = actor("mw_limited", { queue: "mw", rateLimit: { concurrency: 1 } }, () => 1);

function info(a: Actor, extra: Partial<Message> = {}): ProcessInfo {
  const message: Message = { id: crypto.randomUUID(), actor: a.name, queue: "mw", payload: {}, priority: 0, sentAt: Date.now(), ...extra };
  return { delivery: { message, retries: 0, ref: { stream: "s", entryId: "1-0" } }, actor: a, broker: new MemoryBroker(), meta: {} };
}

const ok = { status: "ok", value: 1, duration: 1 } as const;

describe("lost claims", () => {
  test("given a message whose claim was lost up to the limit, when it is delivered again, then it runs", () => {
    const job = info(plain);
    job.delivery.lost = maxLostClaims;
    expect(runBeforeProcess(defaultMiddleware, job)).toBeUndefined();
  });

  test("given one lost claim more, when it is delivered again, then it is dead-lettered as WorkerCrashed without running", () => {
    const job = info(plain);
    job.delivery.lost = maxLostClaims + 1;
    const decision = runBeforeProcess(defaultMiddleware, job);
    expect(decision).toMatchObject({ kind: "deadLetter", error: { name: "WorkerCrashed" } });
    expect((decision as { error: { message: string } }).error.message).toContain(`died ${maxLostClaims + 1} times`);
  });
});

describe("default middleware on the hot path", () => {
  test("given a plain job, when its hooks run, then each answers at once: ack, no promise", () => {
    const job = info(plain);
    const before = runBeforeProcess(defaultMiddleware, job);
    expect(isPromise(before)).toBe(false);
    expect(before).toBeUndefined();
    const after = runAfterProcess(defaultMiddleware, job, ok);
    expect(isPromise(after)).toBe(false);
    expect(after).toEqual({ kind: "ack" });
  });

  test("given an actor with a concurrency limit, when its job runs, then taking and giving back the slot are awaited", async () => {
    const job = info(limited);
    const before = runBeforeProcess(defaultMiddleware, job);
    expect(isPromise(before)).toBe(true);
    expect(await before).toBeUndefined();
    const after = runAfterProcess(defaultMiddleware, job, ok);
    expect(isPromise(after)).toBe(true);
    expect(await after).toEqual({ kind: "ack" });
  });

  test("given a pipeline step, when it completes, then sending the next step is awaited before the ack", async () => {
    const job = info(plain, { pipe: [{ id: crypto.randomUUID(), actor: plain.name, queue: "mw", priority: 0 }] });
    const after = runAfterProcess(defaultMiddleware, job, ok);
    expect(isPromise(after)).toBe(true);
    expect(await after).toEqual({ kind: "ack" });
    expect((await job.broker.read(["mw"], 10, 0)).length).toBe(1);
  });
});
