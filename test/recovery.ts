/**
 * Recovery from kill -9, through real worker processes: the jobs a killed worker held are taken
 * back and finished by the survivor, on two queues (on two masters of a cluster). Run on one Redis
 * by recovery.test.ts and on the local cluster by cluster_e2e.test.ts.
 */
import { afterEach, beforeEach, describe, expect } from "bun:test";
import { RedisBroker } from "../src/broker/redis.ts";
import type { RedisClient } from "../src/broker/connection.ts";
import { closeBroker } from "../src/client.ts";
import { configure } from "../src/config.ts";
import { slow, slowElsewhere } from "./fixtures/core_app.ts";
import { fixture, spawnWorker, started, until, type WorkerProcess } from "./helpers.ts";
import { targetTest, type Target } from "./target.ts";

const QUEUES = ["core", "core_b"];

export function killRecovery(target: Target): void {
  let prefix = "";
  let redis: RedisClient;
  let broker: RedisBroker;
  const workers: WorkerProcess[] = [];
  const it = targetTest(target);

  function worker(args: string[]): WorkerProcess {
    const w = spawnWorker([fixture("core_app.ts")], ["--concurrency", "8", ...args], { DRAY_PREFIX: prefix, REDIS_URL: target.url() });
    workers.push(w);
    return w;
  }

  const settled = async () => {
    const stats = await Promise.all(QUEUES.map((q) => broker.stats(q)));
    return stats.every((s) => s.ready === 0 && s.running === 0 && s.delayed === 0 && s.dead === 0);
  };

  describe(`kill -9 recovery: ${target.name}`, () => {
    beforeEach(() => {
      if (!target.enabled) return;
      prefix = target.prefix("kill", QUEUES);
      configure({ prefix, redisUrl: target.url() });
      redis = target.client();
      broker = new RedisBroker({ url: target.url(), prefix });
    });

    afterEach(async () => {
      if (!target.enabled) return;
      await Promise.all(workers.splice(0).map((w) => w.stop("SIGKILL")));
      await closeBroker();
      await broker.close();
      redis.disconnect();
      await target.clean(prefix);
    });

    it("kill -9 mid-batch loses nothing: the survivor finishes every job", async () => {
      // given 120 jobs of 50 ms on two queues and a worker with a 1 s visibility timeout
      await slow.sendMany(Array.from({ length: 60 }, (_, n) => ({ n, ms: 50 })));
      await slowElsewhere.sendMany(Array.from({ length: 60 }, (_, n) => ({ n: 60 + n, ms: 50 })));
      const a = worker(["--visibility-timeout", "1000"]);
      await started(a);
      await until(async () => (await redis.scard(`${prefix}:test:done`)) >= 20, "first jobs done");
      // when it is killed mid-batch and another worker takes over
      a.child.kill("SIGKILL");
      await a.exited;
      const b = worker(["--visibility-timeout", "1000"]);
      await started(b);
      // then every job completes
      await until(async () => (await redis.scard(`${prefix}:test:done`)) === 120, "all 120 done", 25_000);
      // and both queues settle: jobs the killed worker finished but never acked run again (at-least-once)
      await until(settled, "queues settled", 15_000);
      expect(await settled()).toBe(true);
      expect(b.logs.filter((l) => Number(l.level) >= 50)).toEqual([]);
    }, 40_000);
  });
}
