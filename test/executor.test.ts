/**
 * The isolated executors used directly (no Redis): hard time limits on every kind of hang, neighbours
 * given back rather than lost, crashes, errors across the boundary, memory caps, I/O concurrency and
 * kill cycles. Every test runs for both isolation modes: worker threads and child processes.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { pino, type Logger } from "pino";
import { pathToFileURL } from "node:url";
import process from "node:process";
import { createExecutor, type Isolation } from "../src/executor/mod.ts";
import type { Executor, JobOutcome, JobRequest } from "../src/executor/types.ts";
import { fixture } from "./helpers.ts";
import { cpuDuring, procfsAvailable } from "./procfs.ts";

const modules = [pathToFileURL(fixture("isolation.ts")).href];
const modes: Isolation[] = ["thread", "process"];
const slack = 250;

/** A pino logger that keeps its lines, so tests can read what the executor logged. */
function memoryLogger(): { logger: Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const logger = pino({ level: "info" }, { write: (s: string) => void lines.push(JSON.parse(s)) });
  return { logger, lines };
}

function executor(isolation: Isolation, logger: Logger, o: { concurrency?: number; threads?: number; maxMemoryMb?: number; graceMs?: number } = {}): Executor {
  return createExecutor({
    isolation, modules, registry: new Map(), concurrency: o.concurrency ?? 8, threads: o.threads ?? 2,
    maxMemoryMb: o.maxMemoryMb, graceMs: o.graceMs, logger, redisUrl: process.env.REDIS_URL ?? "redis://127.0.0.1:6379", prefix: "dt-exec",
  });
}

/** Runs `body` on an executor with a single host (concurrency 4), closed after it. */
async function oneHost(isolation: Isolation, body: (ex: Executor) => Promise<void>): Promise<void> {
  const ex = executor(isolation, memoryLogger().logger, { concurrency: 4, threads: 1 });
  await ex.start();
  try {
    await body(ex);
  } finally {
    await ex.close(0);
  }
}

let n = 0;
function job(actor: string, timeLimit: number, payload: unknown = {}): JobRequest {
  return { id: `job-${++n}`, actor, queue: "iso", payload, attempt: 1, timeLimit };
}

async function timed(p: Promise<JobOutcome>): Promise<[JobOutcome, number]> {
  const t = performance.now();
  const outcome = await p;
  return [outcome, performance.now() - t];
}

const hangs: Array<[string, string]> = [
  ["iso_busy_loop", "a busy loop"],
  ["iso_regex_bomb", "a catastrophic regex"],
  ["iso_atomics_wait", "Atomics.wait"],
  ["iso_never_resolves", "a never-resolving promise"],
];

for (const isolation of modes) {
  describe(`${isolation} executor`, () => {
    const { logger, lines } = memoryLogger();
    let ex: Executor;
    beforeAll(async () => {
      ex = executor(isolation, logger);
      await ex.start();
    }, 60_000);
    afterAll(async () => await ex.close(0));

    for (const [actor, what] of hangs) {
      test(`${what} is stopped within timeLimit + ${slack} ms; jobs beside it complete or are given back`, async () => {
        // given neighbours running on every host
        const neighbours = Array.from({ length: 4 }, () => ex.run(job("iso_sleep", 5_000, { ms: 600 })));
        await Bun.sleep(20);
        // when a job hangs with a 200 ms limit
        const [outcome, took] = await timed(ex.run(job(actor, 200)));
        // then it fails with TimeLimitExceeded in time, and is retryable
        expect(outcome).toMatchObject({ status: "error", final: false, error: { name: "TimeLimitExceeded" } });
        // from its start; the wall time may also include waiting for a host replaced by the test before
        const duration = outcome.status === "error" ? outcome.duration : Infinity;
        console.log(`# ${isolation}: ${what} stopped ${Math.round(duration)} ms after its start (${Math.round(took)} ms after run())`);
        expect(duration).toBeLessThan(200 + slack);
        expect(took).toBeLessThan(200 + slack + 1_000);
        // and no neighbour is lost: each completed or was interrupted (given back uncharged)
        for (const o of await Promise.all(neighbours)) expect(["ok", "interrupted"]).toContain(o.status);
        // and the host of the hang was stopped, with a log line naming the job's actor
        expect(lines.some((l) => String(l.msg).startsWith(`stopping ${isolation}`) && String(l.reason).includes(actor))).toBe(true);
      }, 20_000);
    }

    test.skipIf(!procfsAvailable())("the CPU returns to idle after a busy loop is killed", async () => {
      // given a busy loop that was stopped
      const outcome = await ex.run(job("iso_busy_loop", 100));
      expect(outcome.status).toBe("error");
      await Bun.sleep(300); // the replacement host starts
      // then this process and its children settle to (almost) no CPU within three one-second windows:
      // a loop still spinning would use a whole second in each, while a replacement host still
      // importing the app on a busy box may take the first window
      let cpu = Infinity;
      for (let window = 0; window < 3 && cpu >= 0.15; window++) cpu = await cpuDuring(process.pid, 1_000);
      expect(cpu).toBeLessThan(0.15);
    }, 20_000);

    test("a neighbour stuck behind a busy loop is given back, not charged with the loop's overrun", async () => {
      // given a single host running a short job with a short limit, then a busy loop with a longer one
      await oneHost(isolation, async (one) => {
        const neighbour = one.run(job("iso_sleep", 150, { ms: 50 }));
        await Bun.sleep(10);
        const loop = one.run(job("iso_busy_loop", 400));
        // when the neighbour's limit passes while the loop holds the host
        const [first, second] = await Promise.all([neighbour, loop]);
        // then the loop is blamed, and the neighbour goes back to its queue uncharged
        expect(second).toMatchObject({ status: "error", error: { name: "TimeLimitExceeded" } });
        expect(first.status).toBe("interrupted");
      });
    }, 20_000);

    test("jobs that reach a busy host in two sends begin in order, so a hang among them is blamed, not a neighbour", async () => {
      // given a single host busy with a 200 ms synchronous start
      await oneHost(isolation, async (one) => {
        const busy = one.run(job("iso_slow_start", 5_000, { ms: 200 }));
        await Bun.sleep(20);
        // when a slow start and a sleeper are sent to it, then a busy loop in a later send, all while it is busy
        const slow = one.run(job("iso_slow_start", 5_000, { ms: 50 }));
        const sleeper = one.run(job("iso_sleep", 5_000, { ms: 10 }));
        await Bun.sleep(20);
        const loop = one.run(job("iso_busy_loop", 300));
        // then the loop is blamed at its own limit, and the sleeper, which began before it, is not charged
        const [looped, slept] = await Promise.all([loop, sleeper]);
        expect(looped).toMatchObject({ status: "error", error: { name: "TimeLimitExceeded" } });
        expect(looped.status === "error" ? looped.duration : Infinity).toBeLessThan(300 + slack);
        expect(["ok", "interrupted"]).toContain(slept.status);
        expect(await busy).toMatchObject({ status: "ok", value: 200 });
        expect((await slow).status).not.toBe("error");
      });
    }, 20_000);

    test("a handler that honours its signal is stopped without stopping its host", async () => {
      // given neighbours beside a cooperative job
      const before = lines.length;
      const neighbours = Array.from({ length: 3 }, () => ex.run(job("iso_sleep", 5_000, { ms: 400 })));
      // when the cooperative job reaches its limit
      const [outcome, took] = await timed(ex.run(job("iso_cooperative", 200)));
      // then it fails with TimeLimitExceeded at once, and its neighbours complete
      expect(outcome).toMatchObject({ status: "error", error: { name: "TimeLimitExceeded" } });
      expect(took).toBeLessThan(200 + slack);
      for (const o of await Promise.all(neighbours)) expect(o.status).toBe("ok");
      expect(lines.slice(before).some((l) => String(l.msg).startsWith("stopping"))).toBe(false);
    }, 20_000);

    test("a result JSON cannot hold fails its own job, not the batch it came back with", async () => {
      // given a job returning a BigInt beside ordinary ones, in one batch
      const [bad, ...good] = await Promise.all([
        ex.run(job("iso_bigint_result", 5_000)),
        ...[1, 2, 3].map((v) => ex.run(job("iso_sleep", 5_000, { ms: 1, value: v }))),
      ]);
      // then that job fails for good, naming its actor, and the others complete
      expect(bad).toMatchObject({ status: "error", final: true });
      expect(bad!.status === "error" && bad!.error.message).toContain('actor "iso_bigint_result" is not JSON-serializable');
      expect(good.map((o) => (o.status === "ok" ? o.value : o.status))).toEqual([1, 2, 3]);
    }, 20_000);

    test("a handler that first looks at its signal after its limit finds it aborted", async () => {
      // given a handler that does not touch ctx.signal (made on first use) until well after its limit
      const { logger: quiet } = memoryLogger();
      const pool = executor(isolation, quiet, { concurrency: 1, threads: 1, graceMs: 2_000 });
      await pool.start();
      try {
        const outcome = await pool.run(job("iso_late_look", 100, { ms: 400 }));
        // then, looking within the grace, it finds the signal aborted: stopped by itself, not killed
        expect(outcome).toMatchObject({ status: "error", error: { name: "TimeLimitExceeded" } });
        expect(outcome.status === "error" && outcome.error.message).toContain("stopped cooperatively");
      } finally {
        await pool.close(0);
      }
    }, 20_000);

    for (const [actor, how] of [["iso_exit", "calls process.exit"], ["iso_uncaught", "throws an uncaught error"]] as const) {
      test(`a host whose handler ${how} is replaced, and its job is retried as WorkerCrashed`, async () => {
        // when a handler kills its host
        const outcome = await ex.run(job(actor, 5_000));
        // then the job fails, retryable, and the log names the actor
        expect(outcome).toMatchObject({ status: "error", final: false, error: { name: "WorkerCrashed" } });
        expect(lines.some((l) => l.level === 50 && String(l.msg).includes(`died while running ${actor}`))).toBe(true);
        // and the pool serves the next jobs
        const next = await Promise.all([1, 2, 3, 4].map((v) => ex.run(job("iso_sleep", 5_000, { ms: 1, value: v }))));
        expect(next.map((o) => (o.status === "ok" ? o.value : o.status))).toEqual([1, 2, 3, 4]);
      }, 20_000);
    }

    test("errors keep their class name and fields across the boundary", async () => {
      // when handlers throw a ZodError and a custom error with fields and a cause
      const zod = await ex.run(job("iso_zod_error", 5_000));
      const custom = await ex.run(job("iso_custom_error", 5_000));
      // then both arrive as data with what matters
      if (zod.status !== "error" || custom.status !== "error") throw new Error("expected errors");
      expect(zod.error.name).toBe("ZodError");
      const issues = zod.error.fields?.issues as Array<{ path: string[]; code: string }>;
      expect(issues.map((i) => i.path[0])).toEqual(["email", "age"]);
      expect(custom.error).toMatchObject({
        name: "QuotaExceeded",
        message: "account acme used 1200 of 1000",
        fields: { account: "acme", used: 1_200, limits: { daily: 1_000 } },
        cause: { message: "upstream said 429" },
      });
      expect(custom.error.stack).toContain("isolation.ts");
      // and `throws` is matched by class where the handler ran
      expect(await ex.run(job("iso_custom_final", 5_000))).toMatchObject({ status: "error", final: true });
    }, 20_000);

    for (const [actor, how] of [["iso_cooperative", "by its signal"], ["iso_busy_loop", "with its host, as it ignores its signal"]] as const) {
      test(`abort() stops a running job for good, ${how}`, async () => {
        // given a running job with a long limit
        const running = ex.run(job(actor, 10_000));
        await Bun.sleep(100);
        // when it is aborted
        const t = performance.now();
        ex.abort?.(`job-${n}`, "aborted by the test");
        // then it ends as JobAborted, not to be retried, within the grace
        expect(await running).toMatchObject({ status: "error", final: true, error: { name: "JobAborted" } });
        expect(performance.now() - t).toBeLessThan(slack);
      }, 20_000);
    }

    test("close() interrupts what still runs, so it goes back to its queue", async () => {
      const { logger: quiet } = memoryLogger();
      const closing = executor(isolation, quiet, { concurrency: 4, threads: 1 });
      await closing.start();
      const running = [closing.run(job("iso_sleep", 5_000, { ms: 3_000 })), closing.run(job("iso_busy_loop", 5_000))];
      await Bun.sleep(100);
      await closing.close(0);
      for (const o of await Promise.all(running)) expect(o.status).toBe("interrupted");
    }, 20_000);

    test("--max-memory recycles a host that holds too much; its jobs go back to their queue", async () => {
      // given a cap above an idle host and a job that holds much more
      const { logger: log, lines: logged } = memoryLogger();
      const capped = executor(isolation, log, { concurrency: 4, threads: 1, maxMemoryMb: 300 });
      await capped.start();
      try {
        const neighbour = capped.run(job("iso_sleep", 10_000, { ms: 5_000 }));
        // when the job allocates 600 MB
        const [outcome, took] = await timed(capped.run(job("iso_hog", 10_000, { mb: 600, ms: 5_000 })));
        // then its host is stopped soon, the job and its neighbour are interrupted, and the log says why
        expect(outcome.status).toBe("interrupted");
        expect((await neighbour).status).toBe("interrupted");
        expect(took).toBeLessThan(4_000);
        expect(logged.some((l) => String(l.reason).includes("over --max-memory 300 MB"))).toBe(true);
        // and the replacement serves jobs
        expect(await capped.run(job("iso_sleep", 5_000, { ms: 1, value: "after" }))).toMatchObject({ status: "ok", value: "after" });
      } finally {
        await capped.close(0);
      }
    }, 30_000);

    test("200 jobs that each await 50 ms finish in under 1.5 s with 2 hosts and concurrency 100", async () => {
      const { logger: quiet } = memoryLogger();
      const wide = executor(isolation, quiet, { concurrency: 100, threads: 2 });
      await wide.start();
      try {
        const [outcomes, took] = await (async () => {
          const t = performance.now();
          const all = await Promise.all(Array.from({ length: 200 }, (_, i) => wide.run(job("iso_sleep", 5_000, { ms: 50, value: i }))));
          return [all, performance.now() - t] as const;
        })();
        expect(outcomes.every((o) => o.status === "ok")).toBe(true);
        console.log(`# ${isolation}: 200 x 50 ms jobs in ${Math.round(took)} ms`);
        expect(took).toBeLessThan(1_500);
      } finally {
        await wide.close(0);
      }
    }, 30_000);

    test("RSS after 50 kill cycles is within 20% of RSS after 5", async () => {
      const { logger: quiet } = memoryLogger();
      const pool = executor(isolation, quiet, { concurrency: 2, threads: 2, graceMs: 50 });
      await pool.start();
      const rss = async () => {
        Bun.gc(true);
        await Bun.sleep(100);
        Bun.gc(true);
        return process.memoryUsage().rss;
      };
      try {
        let after5 = 0;
        for (let cycle = 1; cycle <= 50; cycle++) {
          // each cycle kills a host stuck in a loop
          const outcome = await pool.run(job("iso_busy_loop", 30));
          expect(outcome.status).toBe("error");
          if (cycle === 5) after5 = await rss();
        }
        const after50 = await rss();
        console.log(`# ${isolation}: RSS after 5 kills ${Math.round(after5 / 1e6)} MB, after 50 ${Math.round(after50 / 1e6)} MB`);
        expect(after50).toBeLessThan(after5 * 1.2);
      } finally {
        await pool.close(0);
      }
    }, 90_000);
  });
}
