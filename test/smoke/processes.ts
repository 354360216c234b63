/**
 * `dray worker --processes 2` on this runtime (src/cli/fleet.ts): the parent starts two workers of
 * its own runtime, both appear among the live workers, a job gets done, and SIGTERM stops all of them
 * with exit code 0.
 */
import process from "node:process";
import { RedisBroker } from "../../src/broker/redis.ts";
import { closeBroker } from "../../src/client.ts";
import { configure } from "../../src/config.ts";
import { getWorkers } from "../../src/operations.ts";
import { runtime } from "../../src/runtime/mod.ts";
import { sleeper } from "../fixtures/isolation.ts";
import { assert } from "../checks.ts";
import { cleanPrefix, fixture, REDIS_URL, spawnWorker, testPrefix, until, type WorkerProcess } from "../helpers.ts";

type Check = (name: string, body: () => Promise<string | void>, timeoutMs?: number) => Promise<boolean>;

export const processesChecks = [`dray worker --processes 2 on ${runtime()}: two live workers, a job done, SIGTERM ends all with 0`];

export async function processesSmoke(check: Check): Promise<void> {
  const prefix = testPrefix("smoke-procs");
  configure({ prefix, redisUrl: REDIS_URL });
  const broker = new RedisBroker({ url: REDIS_URL, prefix });
  let w: WorkerProcess | undefined;
  try {
    await check(processesChecks[0]!, async () => {
      const p = w = spawnWorker([fixture("isolation.ts")], ["--processes", "2", "--threads", "1", "--concurrency", "2", "--queues", "iso"],
        { DRAY_PREFIX: prefix, REDIS_URL, DRAY_HEARTBEAT_MS: "200" }, runtime());
      const up = () => p.logs.filter((l) => l.msg === "worker started").length;
      await until(() => up() >= 2 || p.child.exitCode !== null, "two worker processes started", 60_000);
      assert(p.child.exitCode === null, `the parent exited with ${p.child.exitCode}:\n${p.output()}`);
      const workers = (await until(async () => {
        const ws = await getWorkers(broker);
        return ws.length === 2 ? ws : undefined;
      }, "two workers listed", 10_000))!;
      const pids = new Set(workers.map((x) => x.pid));
      assert(pids.size === 2 && !pids.has(p.child.pid!), `workers' pids ${[...pids].join(", ")}, the parent's ${p.child.pid}`);
      const handle = await sleeper.send({ ms: 1, value: "processes" });
      await until(() => p.logs.some((l) => l.msg === "job completed" && l.id === handle.id), "job completed", 10_000);
      // Not p.stop(): Deno's ChildProcess.kill() makes the exit event report the signal, not the code.
      process.kill(p.child.pid!, "SIGTERM");
      const code = await p.exited;
      assert(code === 0, `the parent exited with ${code}:\n${p.output()}`);
      const exits = p.logs.filter((l) => l.msg === "worker process exited").map((l) => l.code);
      assert(exits.length === 2 && exits.every((c) => c === 0), `the children exited with ${JSON.stringify(exits)}`);
      return `workers ${[...pids].join(" and ")}`;
    }, 90_000);
  } finally {
    if (w && w.child.exitCode === null && w.child.signalCode === null) await w.stop("SIGKILL");
    await closeBroker();
    await broker.close();
    await cleanPrefix(prefix);
  }
}
