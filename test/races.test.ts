/**
 * Races in the delivery path, each driven deterministically: leases lost to a reclaim, late acks and
 * settles, a wake that must not drop a read's reply, settles that wait on Redis, rate-limit slots of
 * jobs settled without running, consumers that leave. In-process supervisors on the real Redis.
 */
import { afterEach, beforeEach, describe, expect } from "bun:test";
import { Redis } from "ioredis";
import { pino } from "pino";
import { actor, type Actor } from "../src/actor.ts";
import { RedisBroker } from "../src/broker/redis.ts";
import { GROUP, limitKey } from "../src/broker/keys.ts";
import type { Broker } from "../src/broker/types.ts";
import { configure } from "../src/config.ts";
import { closeBroker } from "../src/client.ts";
import { InlineExecutor } from "../src/executor/inline.ts";
import type { Delivery, Message } from "../src/message.ts";
import type { Middleware } from "../src/middleware.ts";
import { settledRecord } from "../src/results/record.ts";
import { maxLostClaims } from "../src/middleware/retries.ts";
import { defaultMiddleware, Supervisor } from "../src/supervisor.ts";
import { cleanPrefix, REDIS_URL, sleep, testPrefix, until } from "./helpers.ts";
import { redisTest as it } from "./redis_test.ts";

const Q = "races";
let prefix = "";
let redis: Redis;
const closers: Array<() => Promise<unknown>> = [];

/** Jobs a handler saw: ids, in order, and whether their signal aborted. */
const seen: Array<{ id: string; aborted?: boolean }> = [];

const limited = actor("races_limited", { queue: Q, rateLimit: { concurrency: 1 }, maxRetries: 0 }, (_p: { skip?: boolean; boom?: boolean }, ctx) => {
  seen.push({ id: ctx.jobId });
  return "ran";
});
const waits = actor("races_waits", { queue: Q, maxRetries: 0 }, async (p: { ms: number }, ctx) => {
  const entry: { id: string; aborted?: boolean } = { id: ctx.jobId };
  seen.push(entry);
  await new Promise<void>((resolve) => {
    const t = setTimeout(resolve, p.ms);
    ctx.signal.addEventListener("abort", () => {
      entry.aborted = true;
      clearTimeout(t);
      resolve();
    });
  });
  return "finished";
});
const quick = actor("races_quick", { queue: Q, maxRetries: 0 }, (_p: unknown, ctx) => {
  seen.push({ id: ctx.jobId });
  return "done";
});

const actors = new Map<string, Actor>([[limited.name, limited], [waits.name, waits], [quick.name, quick]] as Array<[string, Actor]>);

function broker(options: { visibilityTimeout?: number; consumer?: string } = {}): RedisBroker {
  const b = new RedisBroker({ url: REDIS_URL, prefix, patient: true, ...options });
  closers.push(() => b.close());
  return b;
}

/** An in-process worker: the real supervisor, handlers inline; its log lines are collected. */
function supervisor(b: Broker, options: { middleware?: Middleware[]; renewEvery?: number; shutdownGrace?: number } = {}) {
  const lines: Array<Record<string, unknown>> = [];
  const logger = pino({ level: "debug" }, { write: (s: string) => void lines.push(JSON.parse(s)) });
  const executor = new InlineExecutor({ registry: actors, concurrency: 4, logger });
  const s = new Supervisor({ broker: b, executor, registry: actors, logger, queues: [Q], blockMs: 100,
    middleware: options.middleware ?? [...defaultMiddleware], renewEvery: options.renewEvery ?? 50,
    shutdownGrace: options.shutdownGrace ?? 2_000 });
  closers.push(() => s.stop());
  return { s, lines };
}

function message(a: Actor, payload: unknown, over: Partial<Message> = {}): Message {
  return { id: crypto.randomUUID(), actor: a.name, queue: Q, payload, priority: 0, sentAt: Date.now(), tracked: true, ...over };
}

beforeEach(() => {
  prefix = testPrefix("races");
  configure({ prefix, redisUrl: REDIS_URL });
  redis = new Redis(REDIS_URL);
  seen.length = 0;
});

afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close().catch(() => undefined);
  await closeBroker();
  redis.disconnect();
  await cleanPrefix(prefix);
});

const slots = () => redis.zrange(limitKey(prefix, `${limited.name}:running`), 0, -1);
const owner = async (d: Delivery) =>
  ((await redis.xpending(d.ref.stream, GROUP, "-", "+", 10)) as Array<[string, string]>).find((p) => p[0] === d.ref.entryId)?.[1];

describe("a rate-limit slot comes back when its job is settled without running", () => {
  it("a later middleware discards the job", async () => {
    // given a concurrency-1 actor and a middleware after the defaults that discards marked jobs
    const discard: Middleware = {
      name: "discardMarked",
      beforeProcess: ({ delivery }) => (delivery.message.payload as { skip?: boolean }).skip
        ? { kind: "discard", status: "failed", error: { name: "Skipped", message: "marked" } } : undefined,
    };
    const b = broker();
    const { s } = supervisor(b, { middleware: [...defaultMiddleware, discard] });
    const first = message(limited, { skip: true });
    const second = message(limited, {});
    await b.enqueue([{ message: first }]);
    await s.start();
    // when the first is discarded
    await until(async () => (await b.jobs.get(Q, first.id))?.status === "failed", "first discarded", 5_000);
    // then its slot is free at once, and the next job of the actor runs without waiting out a lease
    expect(await slots()).toEqual([]);
    await b.enqueue([{ message: second }]);
    await until(async () => (await b.jobs.get(Q, second.id))?.status === "completed", "second completed", 4_000);
  });

  it("a middleware throws", async () => {
    // given a middleware after the defaults that throws the first time it sees a job
    let thrown = 0;
    const flaky: Middleware = {
      name: "flaky",
      beforeProcess: () => {
        if (thrown++ === 0) throw new Error("flaky middleware");
      },
    };
    const b = broker();
    const { s } = supervisor(b, { middleware: [...defaultMiddleware, flaky] });
    const job = message(limited, {});
    await b.enqueue([{ message: job }]);
    await s.start();
    // when the job goes back to its queue and comes round again, then it takes the slot at once and runs
    await until(async () => (await b.jobs.get(Q, job.id))?.status === "completed", "job completed", 4_000);
    expect(thrown).toBe(2);
    expect(await slots()).toEqual([]);
  });

  it("retries dead-letters a job for lost claims", async () => {
    // given a job whose claims were lost more than allowed (each XCLAIM of a "dead" consumer counts one)
    const b = broker({ visibilityTimeout: 200 });
    const job = message(limited, {});
    await b.enqueue([{ message: job }]);
    const stream = b.keys(Q).stream(0);
    await redis.xgroup("CREATE", stream, GROUP, "0", "MKSTREAM").catch(() => undefined);
    const read = (await redis.xreadgroup("GROUP", GROUP, "ghost", "COUNT", 1, "STREAMS", stream, ">")) as [string, [string][]][];
    const entryId = read[0]![1][0]![0];
    for (let n = 0; n < maxLostClaims; n++) await redis.xclaim(stream, GROUP, `ghost${n}`, 0, entryId!);
    await sleep(250);
    // when a worker reclaims it: rateLimits takes a slot, then retries dead-letters it without a run
    const { s } = supervisor(b);
    await s.start();
    await until(async () => (await b.jobs.get(Q, job.id))?.status === "dead", "dead-lettered", 5_000);
    // then the slot came back
    expect(seen).toEqual([]);
    await until(async () => (await slots()).length === 0, "slot released", 1_000);
  });
});

describe("leases", () => {
  it("renewal succeeds only for the holder: a stalled worker cannot take a reclaimed job back", async () => {
    // given worker A's job reclaimed by worker B after A stalled past the visibility timeout
    const a = broker({ visibilityTimeout: 200, consumer: "A" });
    const b = broker({ visibilityTimeout: 200, consumer: "B" });
    await a.enqueue([{ message: message(quick, {}) }]);
    const [d] = (await a.read([Q], 10, 0)) as Delivery[];
    await sleep(250);
    const [reclaimed] = (await b.read([Q], 10, 0)) as Delivery[];
    expect(reclaimed!.ref.entryId).toBe(d!.ref.entryId);
    // when A wakes and renews
    const lost = await a.extend([d!.ref]);
    // then A learns it lost the lease, and B still holds the job
    expect(lost).toEqual([d!.ref]);
    expect(await owner(d!)).toBe("B");
    expect(await b.extend([reclaimed!.ref])).toEqual([]);
  });

  it("a late ack or settle of a reclaimed job changes nothing: not the entry, not the record", async () => {
    // given A's job reclaimed by B, which retried it (the record says delayed)
    const a = broker({ visibilityTimeout: 200, consumer: "A" });
    const b = broker({ visibilityTimeout: 200, consumer: "B" });
    const m = message(quick, {});
    await a.enqueue([{ message: m }]);
    const [d] = (await a.read([Q], 10, 0)) as Delivery[];
    await sleep(250);
    const [r] = (await b.read([Q], 10, 0)) as Delivery[];
    // when A, late, acks with its own outcome while B still holds it
    expect(await a.ack([{ delivery: d!, keepMs: 60_000, record: settledRecord(d!, "completed", { result: "A" }) }])).toEqual([d!.ref]);
    expect(await a.retry(d!, 0)).toBe(false);
    expect(await a.giveBack([d!])).toEqual([d!.ref]);
    // then B still holds it and nothing moved
    expect(await owner(r!)).toBe("B");
    expect(await b.stats(Q)).toMatchObject({ ready: 0, delayed: 0, running: 1 });
    // and once B has retried it, A's late ack does not turn the waiting job into a completed one
    expect(await b.retry(r!, 60_000, { record: settledRecord(r!, "delayed", { dueAt: Date.now() + 60_000 }) })).toBe(true);
    expect(await a.ack([{ delivery: d!, keepMs: 60_000, record: settledRecord(d!, "completed", { result: "A" }) }])).toEqual([d!.ref]);
    expect((await b.jobs.get(Q, m.id))?.status).toBe("delayed");
  });

  it("a worker that lost a running job's lease stops the run and discards its outcome", async () => {
    // given a running job (it waits for its signal, 5 s at most)
    const b = broker({ visibilityTimeout: 1_000, consumer: "A" });
    const { s, lines } = supervisor(b);
    const m = message(waits, { ms: 5_000 });
    await b.enqueue([{ message: m }]);
    await s.start();
    await until(() => seen.length === 1, "job running");
    // when another consumer takes the entry (as a reclaim after a stall does)
    const stream = b.keys(Q).stream(0);
    const entryId = ((await redis.xpending(stream, GROUP, "-", "+", 10)) as [string][])[0]![0];
    await redis.xclaim(stream, GROUP, "B", 0, entryId!, "JUSTID");
    // then the run here is told to stop, and its outcome reaches nothing in Redis
    await until(() => seen[0]!.aborted === true, "run aborted", 3_000);
    await until(() => lines.some((l) => l.event === "outcome:discarded" && l.id === m.id), "outcome discarded", 3_000);
    expect(lines.some((l) => l.event === "lease:lost" && l.id === m.id)).toBe(true);
    const pending = (await redis.xpending(stream, GROUP, "-", "+", 10)) as Array<[string, string, number, number]>;
    expect(pending.map(([id, consumer, , count]) => [id, consumer, count])).toEqual([[entryId, "B", 1]]);
    expect((await b.jobs.get(Q, m.id))?.status).not.toBe("completed");
    expect(await redis.xlen(stream)).toBe(1);
  });

  it("a job that finished keeps its lease while its ack waits on Redis", async () => {
    // given a worker whose acks fail for 1.5 s (Redis unreachable for them), visibility 300 ms
    const inner = broker({ visibilityTimeout: 300, consumer: "A" });
    let failUntil = 0;
    const flaky = new Proxy(inner, {
      get(target, prop, receiver) {
        if (prop === "ack") {
          return async (...args: Parameters<RedisBroker["ack"]>) => {
            if (Date.now() < failUntil) throw new Error("redis unreachable (test)");
            return await target.ack(...args);
          };
        }
        const v = Reflect.get(target, prop, target);
        return typeof v === "function" ? v.bind(target) : v;
      },
    }) as RedisBroker;
    const { s } = supervisor(flaky, { renewEvery: 100 });
    const m = message(quick, {});
    failUntil = Date.now() + 60_000;
    await inner.enqueue([{ message: m }]);
    await s.start();
    await until(() => seen.length === 1, "job ran");
    failUntil = Date.now() + 1_500;
    // when another worker reads with reclaim all that time
    const other = broker({ visibilityTimeout: 300, consumer: "B" });
    const stolen: Delivery[] = [];
    while (Date.now() < failUntil) {
      stolen.push(...((await other.read([Q], 10, 0)) as Delivery[]));
      await sleep(50);
    }
    // then it never gets the job, which completes once, when the ack lands
    expect(stolen).toEqual([]);
    await until(async () => (await inner.jobs.get(Q, m.id))?.status === "completed", "completed", 5_000);
    expect(seen.length).toBe(1);
  });

  it("a malformed entry is announced dead once its dead letter landed", async () => {
    // given an entry that is not a dray message
    const b = broker({ consumer: "A" });
    const { s } = supervisor(b);
    const dead: Array<{ actor: string; queue: string }> = [];
    let lettersWhenAnnounced = -1;
    s.events.on("job:dead", (e) => {
      dead.push({ actor: e.actor, queue: e.queue });
      void redis.xlen(b.keys(Q).dlq).then((n) => (lettersWhenAnnounced = n));
    });
    await b.enqueue([{ message: message(quick, {}) }]); // makes the stream and registers its level
    await redis.xadd(b.keys(Q).stream(0), "*", "m", "{not json", "r", "0");
    // when the worker reads it
    await s.start();
    // then it is announced once, as dead with no actor, and its letter is in the dead-letter queue
    await until(() => dead.length === 1 && lettersWhenAnnounced >= 0, "announced", 5_000);
    expect(dead).toEqual([{ actor: "", queue: Q }]);
    expect(lettersWhenAnnounced).toBe(1);
  });

  it("an outcome whose settle finds the lease lost is not announced: listeners count each outcome once", async () => {
    // given a worker whose job finished while its ack cannot reach Redis
    const inner = broker({ visibilityTimeout: 1_000, consumer: "A" });
    let failing = true;
    const flaky = new Proxy(inner, {
      get(target, prop) {
        if (prop === "ack") {
          return async (...args: Parameters<RedisBroker["ack"]>) => {
            if (failing) throw new Error("redis unreachable (test)");
            return await target.ack(...args);
          };
        }
        const v = Reflect.get(target, prop, target);
        return typeof v === "function" ? v.bind(target) : v;
      },
    }) as RedisBroker;
    const { s, lines } = supervisor(flaky);
    const announced: string[] = [];
    for (const name of ["job:complete", "job:retry", "job:dead", "job:discarded", "job:returned"] as const) {
      s.events.on(name, (e) => void announced.push(`${name} ${e.id}`));
    }
    const m = message(quick, {});
    await inner.enqueue([{ message: m }]);
    await s.start();
    await until(() => seen.length === 1, "job ran");
    // when another worker takes the entry meanwhile, and then the ack gets through
    const stream = inner.keys(Q).stream(0);
    const entryId = ((await redis.xpending(stream, GROUP, "-", "+", 10)) as [string][])[0]![0];
    await redis.xclaim(stream, GROUP, "B", 0, entryId!, "JUSTID");
    await redis.incr(inner.keys(Q).reclaims); // as a reclaim by a worker's read counts itself
    failing = false;
    // then the outcome is discarded, and no event announced it
    await until(() => lines.some((l) => l.event === "outcome:discarded" && l.id === m.id), "outcome discarded", 5_000);
    expect(announced).toEqual([]);
    // and a job whose ack lands is announced once
    const next = message(quick, {});
    await inner.enqueue([{ message: next }]);
    await until(() => announced.length === 1, "second job announced", 5_000);
    expect(announced).toEqual([`job:complete ${next.id}`]);
  });
});

describe("waking a blocked read", () => {
  it("never drops what Redis delivered in that instant", async () => {
    // given a worker blocked in a read on an empty queue, many times over
    const reader = broker({ visibilityTimeout: 60_000 });
    const sender = broker();
    await reader.read([Q], 10, 0); // makes the group
    for (let n = 0; n < 40; n++) {
      const reading = reader.read([Q], 10, 5_000);
      await sleep(20);
      // when a job arrives and the read is woken within the same millisecond or two (as a retry due
      // sooner than the block's end wakes it)
      const m = message(quick, {}, { tracked: false });
      const sent = sender.enqueue([{ message: m }]);
      if (n % 2 === 1) await sleep(n % 4 === 1 ? 0 : 1);
      reader.interrupt();
      await sent;
      // then the job is delivered now, by that read or the next, not after the visibility timeout
      const got = [...(await reading), ...(await reader.read([Q], 10, 50))] as Delivery[];
      expect(got.map((d) => d.message.id)).toEqual([m.id]);
      await reader.ack(got.map((delivery) => ({ delivery, keepMs: 0 })));
    }
  });
});

describe("consumers", () => {
  it("a worker that stops leaves its consumer group; gone consumers that hold nothing are removed", async () => {
    const stream = () => broker().keys(Q).stream(0);
    // given a worker that read and settled a job, and two gone consumers, one of them holding an entry
    const a = broker({ consumer: "A" });
    await a.enqueue([{ message: message(quick, {}) }, { message: message(quick, {}) }]);
    const [d] = (await a.read([Q], 1, 0)) as Delivery[];
    await a.ack([{ delivery: d!, keepMs: 0 }]);
    await redis.xreadgroup("GROUP", GROUP, "gone-holding", "COUNT", 1, "STREAMS", stream(), ">");
    await redis.xgroup("CREATECONSUMER", stream(), GROUP, "gone-empty");
    const names = async () => ((await redis.xinfo("CONSUMERS", stream(), GROUP)) as unknown[][]).map((c) => String(c[1])).sort();
    expect(await names()).toEqual(["A", "gone-empty", "gone-holding"]);
    // when the worker stops
    await a.close();
    // then its consumer is gone
    expect(await names()).toEqual(["gone-empty", "gone-holding"]);
    // and when another worker reclaims after they were idle six visibility timeouts, the empty one goes
    const b = broker({ consumer: "B", visibilityTimeout: 100 });
    await sleep(700);
    await b.read([Q], 10, 0);
    await until(async () => !(await names()).includes("gone-empty"), "gone-empty removed", 2_000);
    // while the one that holds an entry stays until that entry is reclaimed
    expect(await names()).toContain("gone-holding");
  });
});
