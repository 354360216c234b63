/**
 * Hard time limits end to end, through real worker processes (`dray worker --isolation thread|process`)
 * and Redis: each kind of hang is stopped, retried as TimeLimitExceeded, then dead-lettered; the
 * jobs beside it all complete; the worker's CPU goes back to idle; a crashing handler is retried and
 * dead-lettered as WorkerCrashed. The worker runs on DRAY_TEST_RUNTIME (bun by default; node and
 * deno work too, e.g. `DRAY_TEST_RUNTIME=node bun test test/executor_e2e.test.ts`).
 */
import { redisTest } from "./redis_test.ts";
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { configure } from "../src/config.ts";
import { closeBroker } from "../src/client.ts";
import { RedisBroker } from "../src/broker/redis.ts";
import type { Isolation } from "../src/executor/mod.ts";
import { atomicsWait, busyLoop, exits, neverResolves, regexBomb, sleeper } from "./fixtures/isolation.ts";
import { cleanPrefix, fixture, REDIS_URL, spawnWorker, started, testPrefix, until, type WorkerProcess } from "./helpers.ts";
import { cpuDuring, procfsAvailable } from "./procfs.ts";

const app = fixture("isolation.ts");
const runtime = process.env.DRAY_TEST_RUNTIME ?? "bun";
// Deno cannot stop a thread stuck on the CPU; its workers use processes.
const modes: Isolation[] = runtime === "deno" ? ["process"] : ["thread", "process"];
const limit = 200; // the fixtures' timeLimit
const slack = 250;

let prefix = "";
let broker: RedisBroker;
const workers: WorkerProcess[] = [];

function worker(isolation: Isolation): WorkerProcess {
  const w = spawnWorker([app], ["--isolation", isolation, "--concurrency", "8", "--threads", "2"], { DRAY_PREFIX: prefix, REDIS_URL });
  workers.push(w);
  return w;
}

const it = redisTest;

beforeEach(() => {
  prefix = testPrefix("iso");
  configure({ prefix, redisUrl: REDIS_URL });
  broker = new RedisBroker({ url: REDIS_URL, prefix });
});

afterEach(async () => {
  await Promise.all(workers.splice(0).map((w) => w.stop("SIGKILL")));
  await closeBroker();
  await broker.close();
  await cleanPrefix(prefix);
});

for (const isolation of modes) {
  describe(`worker on ${runtime} with --isolation ${isolation}`, () => {
    it("every kind of hang is stopped in time, retried, then dead-lettered as TimeLimitExceeded; nothing beside it is lost", async () => {
      // given a worker busy with jobs that sleep
      const w = worker(isolation);
      await started(w);
      const neighbours = await sleeper.sendMany(Array.from({ length: 8 }, (_, i) => ({ ms: 300, value: i })));
      // when a job of each kind of hang arrives
      const hangs = [busyLoop, regexBomb, atomicsWait, neverResolves];
      for (const a of hangs) await a.send({});
      // then each is dead-lettered after one retry, as TimeLimitExceeded
      await until(async () => (await broker.stats("iso")).dead === hangs.length, "4 dead letters", 30_000);
      const letters = await broker.deadLetters("iso");
      expect(letters.map((l) => l.error.name)).toEqual(hangs.map(() => "TimeLimitExceeded"));
      expect(letters.map((l) => l.retries)).toEqual(hangs.map(() => 1));
      // and each of the 8 runs was stopped within timeLimit + 250 ms of its start
      const stopLines = () => w.logs.filter((l) => ["job failed; retrying", "job dead-lettered"].includes(String(l.msg)) && String(l.actor).startsWith("iso_"));
      // (the worker's log lines reach this process through a pipe, maybe after Redis has the letters)
      await until(() => stopLines().length >= hangs.length * 2, "8 stops logged", 5_000).catch(() => undefined);
      const stops = stopLines();
      const seen = stops.map((l) => `${l.actor} ${l.msg} after ${l.duration} ms (${(l.error as { name?: string })?.name})`);
      expect(seen.length, seen.join("\n")).toBe(hangs.length * 2);
      for (const l of stops) expect(Number(l.duration), seen.join("\n")).toBeLessThan(limit + slack);
      // and every neighbour completed, whether it ran beside a hang or was given back and ran again
      const ids = new Set(neighbours.map((h) => h.id));
      await until(() => new Set(w.logs.filter((l) => l.msg === "job completed" && ids.has(String(l.id))).map((l) => l.id)).size === ids.size,
        "all 8 neighbours completed", 15_000);
      await until(async () => (await broker.stats("iso")).running === 0, "nothing running");
      expect(await broker.stats("iso")).toMatchObject({ ready: 0, running: 0, delayed: 0, dead: hangs.length });
      // and the worker with its threads or children goes back to idle once the replacements have started
      // (a thread or child left spinning would hold a full core: 1 s of CPU per second)
      if (procfsAvailable()) {
        const windows: number[] = [];
        await until(async () => windows.push(await cpuDuring(w.child.pid!, 1_000)) && windows.at(-1)! < 0.2,
          "CPU back to idle", 8_000).catch(() => undefined);
        expect(windows.at(-1)).toBeLessThan(0.2);
      }
    });

    it("a handler that exits its host is retried, logged with its actor, then dead-lettered as WorkerCrashed", async () => {
      const w = worker(isolation);
      await started(w);
      // when a handler calls process.exit
      await exits.send({});
      // then it runs twice (maxRetries 1) and lands in the dead-letter queue as WorkerCrashed
      await until(async () => (await broker.stats("iso")).dead === 1, "dead letter", 20_000);
      const [letter] = await broker.deadLetters("iso");
      expect(letter?.error.name).toBe("WorkerCrashed");
      expect(w.logs.filter((l) => String(l.msg).includes("died while running iso_exit")).length).toBe(2);
      // and the worker still serves jobs
      const after = await sleeper.send({ ms: 1, value: "after" });
      await until(() => w.logs.some((l) => l.msg === "job completed" && l.id === after.id), "a job after the crash completed");
    });
  });
}
