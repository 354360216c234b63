/**
 * `dray dlq purge` run as users run it: it empties one queue's dead letters (`--queue`) or every
 * queue's (`--all`), never every queue's by default, and says how many it removed.
 */
import { afterEach, beforeEach, describe, expect } from "bun:test";
import { RedisBroker } from "../src/broker/redis.ts";
import type { Delivery, Message } from "../src/message.ts";
import { cleanPrefix, REDIS_URL, spawnDray, testPrefix } from "./helpers.ts";
import { redisTest as it } from "./redis_test.ts";

let prefix = "";
let broker: RedisBroker;

const msg = (queue: string): Message => ({
  id: crypto.randomUUID(), actor: "a", queue, payload: 1, priority: 0, sentAt: Date.now(),
});

/** Sends `n` jobs to `queue` and dead-letters them, as a worker would after their last attempt. */
async function deadLetters(queue: string, n: number): Promise<void> {
  await broker.enqueue(Array.from({ length: n }, () => ({ message: msg(queue) })));
  const read = (await broker.read([queue], n, 0)) as Delivery[];
  for (const d of read) await broker.deadLetter(d, { name: "Boom", message: "no" });
}

async function dlq(...args: string[]): Promise<{ code: number | null; output: string }> {
  const p = spawnDray("dlq", args, { DRAY_PREFIX: prefix, REDIS_URL });
  const code = await p.exited;
  return { code, output: p.output() };
}

const dead = async (queue: string): Promise<number> => (await broker.stats(queue)).dead;

beforeEach(async () => {
  prefix = testPrefix("dlq");
  broker = new RedisBroker({ url: REDIS_URL, prefix, patient: true });
});

afterEach(async () => {
  await broker.close();
  await cleanPrefix(prefix);
});

describe("dray dlq purge", () => {
  it("with neither --queue nor --all fails, says so, and removes nothing", async () => {
    // given dead letters in two queues
    await deadLetters("a", 2);
    await deadLetters("b", 1);
    // when purge is run with no flag
    const { code, output } = await dlq("purge");
    // then it fails with a message that names both ways, and both queues keep their letters
    expect(code).not.toBe(0);
    expect(output).toContain("--all");
    expect(output).toContain("--queue");
    expect(await dead("a")).toBe(2);
    expect(await dead("b")).toBe(1);
  });

  it("with --queue empties that queue only, and --all the rest, each saying how many", async () => {
    // given dead letters in three queues
    await deadLetters("a", 2);
    await deadLetters("b", 1);
    await deadLetters("c", 3);
    // when one queue is purged
    const one = await dlq("purge", "--queue", "a");
    // then only its letters are gone, and it says how many
    expect(one.code).toBe(0);
    expect(one.output).toContain("a: purged 2");
    expect(await dead("a")).toBe(0);
    expect(await dead("b")).toBe(1);
    // when every queue is purged
    const all = await dlq("purge", "--all");
    // then the rest are gone, with a count per queue and a total
    expect(all.code).toBe(0);
    expect(all.output).toContain("a: purged 0");
    expect(all.output).toContain("b: purged 1");
    expect(all.output).toContain("c: purged 3");
    expect(all.output).toContain("purged 4 dead letters in 3 queues");
    expect(await dead("b")).toBe(0);
    expect(await dead("c")).toBe(0);
  });

  it("refuses --queue and --all together", async () => {
    // given dead letters in two queues
    await deadLetters("a", 1);
    await deadLetters("b", 1);
    // when both flags are given
    const { code, output } = await dlq("purge", "--all", "--queue", "a");
    // then it fails and removes nothing
    expect(code).not.toBe(0);
    expect(output).toContain("not both");
    expect(await dead("a")).toBe(1);
    expect(await dead("b")).toBe(1);
  });
});
