/**
 * Prefetch in the thread and process pools: jobs handed to a thread or child beyond `concurrency`
 * wait there and start when a job ends. They must never raise what runs at once above `concurrency`,
 * never be charged their wait, and must come back rather than start when aborted or when the worker
 * shuts down, or be run elsewhere when their host dies.
 */
import { beforeAll, describe, expect, test } from "bun:test";
import { pino } from "pino";
import { pathToFileURL } from "node:url";
import process from "node:process";
import { ConfigError } from "../src/errors.ts";
import { createExecutor, type Isolation } from "../src/executor/mod.ts";
import { queueOptions } from "../src/executor/thread_protocol.ts";
import { placeByJobs } from "../src/executor/threads.ts";
import type { Executor, JobOutcome, JobRequest } from "../src/executor/types.ts";
import { fixture, maxOverlap, type Span } from "./helpers.ts";

const quiet = pino({ level: "silent" });

const modes: Isolation[] = ["thread", "process"];
let isolation: Isolation = "thread";

function pool(o: { concurrency: number; threads: number; prefetch: number; graceMs?: number }): Required<Pick<Executor, "stopStarting" | "abort">> & Executor {
  return createExecutor({
    isolation, modules: [pathToFileURL(fixture("isolation.ts")).href], registry: new Map(), logger: quiet,
    redisUrl: process.env.REDIS_URL ?? "redis://127.0.0.1:6379", prefix: "dt-prefetch", ...o,
  }) as Required<Pick<Executor, "stopStarting" | "abort">> & Executor;
}

let n = 0;
function job(actor: string, timeLimit: number, payload: unknown = {}): JobRequest {
  return { id: `pf-${++n}`, actor, queue: "iso", payload, attempt: 1, timeLimit };
}

const spans = (outcomes: JobOutcome[]): Span[] => outcomes.map((o) => {
  if (o.status !== "ok") throw new Error(`expected ok, got ${JSON.stringify(o)}`);
  return o.value as Span;
});

for (const mode of modes) describe(`${mode} pool prefetch`, () => {
  beforeAll(() => {
    isolation = mode;
  });

  for (const [concurrency, threads] of [[3, 2], [4, 2], [5, 3]] as const) {
    test(`concurrency ${concurrency} on ${threads} threads holds with prefetch, and waiting is not charged`, async () => {
      const ex = pool({ concurrency, threads, prefetch: concurrency * 2 });
      await ex.start();
      try {
        // given three times more jobs than may run at once, each 80 ms with a 150 ms limit
        const outcomes = await Promise.all(Array.from({ length: concurrency * 4 }, () => ex.run(job("iso_span", 150, { ms: 80 }))));
        // then none ran longer than its limit though most waited longer than it in a thread
        const s = spans(outcomes);
        // and never more than `concurrency` ran at once, while the pool did use all of it
        expect(maxOverlap(s)).toBe(concurrency);
      } finally {
        await ex.close(0);
      }
    }, 20_000);
  }

  test("an aborted job that waits in its host never starts, and ends at once", async () => {
    const ex = pool({ concurrency: 1, threads: 1, prefetch: 2 });
    await ex.start();
    try {
      // given a running job and one waiting behind it in the same host
      const running = ex.run(job("iso_span", 5_000, { ms: 600 }));
      const waiting = ex.run(job("iso_span", 5_000, { ms: 10 }));
      const id = `pf-${n}`;
      await Bun.sleep(100);
      // when the waiting one is aborted
      const t = performance.now();
      ex.abort(id, "aborted by the test");
      // then it ends as JobAborted, final, long before the running one frees the host
      const outcome = await waiting;
      expect(outcome).toMatchObject({ status: "error", final: true, error: { name: "JobAborted" } });
      expect(performance.now() - t).toBeLessThan(300);
      expect((await running).status).toBe("ok");
    } finally {
      await ex.close(0);
    }
  }, 20_000);

  test("stopStarting() gives back the jobs waiting in hosts; the running ones finish", async () => {
    const ex = pool({ concurrency: 2, threads: 1, prefetch: 4 });
    await ex.start();
    try {
      const running = [ex.run(job("iso_span", 5_000, { ms: 500 })), ex.run(job("iso_span", 5_000, { ms: 500 }))];
      const waiting = Array.from({ length: 4 }, () => ex.run(job("iso_span", 5_000, { ms: 10 })));
      await Bun.sleep(100);
      const t = performance.now();
      ex.stopStarting();
      for (const o of await Promise.all(waiting)) expect(o).toMatchObject({ status: "interrupted" });
      expect(performance.now() - t).toBeLessThan(300);
      for (const o of await Promise.all(running)) expect(o.status).toBe("ok");
    } finally {
      await ex.close(0);
    }
  }, 20_000);

  test("after hosts are killed with jobs running and waiting, the pool still runs `concurrency` jobs at once", async () => {
    const ex = pool({ concurrency: 2, threads: 2, prefetch: 4, graceMs: 50 });
    await ex.start();
    try {
      for (let round = 0; round < 3; round++) {
        // given a busy loop beside a sleeper, and more jobs waiting behind them
        const loop = ex.run(job("iso_busy_loop", 100));
        const others = Array.from({ length: 5 }, () => ex.run(job("iso_span", 5_000, { ms: 50 })));
        // then the loop is killed, and the others complete or are given back, none lost
        expect(await loop).toMatchObject({ status: "error", error: { name: "TimeLimitExceeded" } });
        for (const o of await Promise.all(others)) expect(["ok", "interrupted"]).toContain(o.status);
      }
      // and the count of running jobs was not left holding the killed ones: two still run at once
      const s = spans(await Promise.all(Array.from({ length: 6 }, () => ex.run(job("iso_span", 5_000, { ms: 150 })))));
      expect(maxOverlap(s)).toBe(2);
    } finally {
      await ex.close(0);
    }
  }, 30_000);
});

test("a prefetch that is not a whole number >= 0 is refused with a ConfigError", () => {
  for (const prefetch of [-1, 1.5, Number.NaN]) {
    expect(() => createExecutor({
      isolation: "thread", modules: [], registry: new Map(), logger: quiet, redisUrl: "redis://127.0.0.1:6379", prefix: "dt-prefetch",
      concurrency: 2, threads: 1, prefetch,
    })).toThrow(ConfigError);
  }
});

describe("thread pool balancer", () => {
  type Workers = Parameters<ReturnType<typeof placeByJobs>>[1];
  type Task = Parameters<ReturnType<typeof placeByJobs>>[0];
  const worker = (id: number, currentUsage: number, terminating = false) =>
    ({ id, currentUsage, terminating, destroyed: false, isRunningAbortableTask: false, histogram: null }) as unknown as Workers[number];
  const task = (jobs?: number) => (jobs === undefined ? {} : { [queueOptions]: { jobs } }) as unknown as Task;

  test("a batch goes to the thread with the fewest jobs waiting or running, not the fewest batches", () => {
    // Thread 1 holds one batch of 100 jobs, thread 2 three batches of 2: piscina's own pick is thread 1.
    const load = new Map([[1, 100], [2, 6]]);
    const place = placeByJobs(load);
    expect(place(task(10), [worker(1, 1), worker(2, 3)])?.id).toBe(2);
    expect(load.get(2)).toBe(16);
    expect(place(task(90), [worker(1, 1), worker(2, 4)])?.id).toBe(2);
    expect(place(task(1), [worker(1, 1), worker(2, 5)])?.id).toBe(1);
    expect([load.get(1), load.get(2)]).toEqual([101, 106]);
  });

  test("a thread being stopped gets nothing; a task without a count counts one; no thread, no placement", () => {
    const load = new Map<number, number>();
    const place = placeByJobs(load);
    expect(place(task(), [worker(1, 0, true), worker(2, 9)])?.id).toBe(2);
    expect(load.get(2)).toBe(1);
    expect(place(task(5), [worker(1, 0, true)])).toBeNull();
    expect(place(task(5), [])).toBeNull();
  });
});
