/**
 * Hung jobs sent at once with ordinary ones, through a worker of this runtime (the small form of
 * `dray bench --scenario hung`, without its timing): every hung job is dead-lettered as
 * TimeLimitExceeded, and every ordinary job, though some shared a thread (process) that was
 * stopped, completes exactly once, on its first attempt.
 */
import { RedisBroker } from "../../src/broker/redis.ts";
import { closeBroker } from "../../src/client.ts";
import { configure } from "../../src/config.ts";
import { defaultIsolation } from "../../src/executor/mod.ts";
import { group } from "../../src/mod.ts";
import { runtime } from "../../src/runtime/mod.ts";
import { atomicsWait, busyLoop, sleeper } from "../fixtures/isolation.ts";
import { assert } from "../checks.ts";
import { cleanPrefix, fixture, REDIS_URL, spawnWorker, started, testPrefix, until, type WorkerProcess } from "../helpers.ts";

type Check = (name: string, body: () => Promise<string | void>, timeoutMs?: number) => Promise<boolean>;

const hung = 6;
const ordinary = 12;

export const hungChecks = [
  `${hung} hung jobs among ${ordinary} ordinary ones on 2 ${defaultIsolation() === "process" ? "processes" : "threads"}: ` +
  "each hung one dead-lettered as TimeLimitExceeded, each ordinary one completed once, on attempt 1",
];

export async function hungSmoke(check: Check): Promise<void> {
  const prefix = testPrefix("smoke-hung");
  configure({ prefix, redisUrl: REDIS_URL });
  const broker = new RedisBroker({ url: REDIS_URL, prefix });
  let w: WorkerProcess | undefined;
  try {
    await check(hungChecks[0]!, async () => {
      const p = w = spawnWorker([fixture("isolation.ts")], ["--threads", "2", "--concurrency", "16", "--queues", "iso"],
        { DRAY_PREFIX: prefix, REDIS_URL }, runtime());
      await started(p, 30_000);
      // Interleaved, so that each host's share of the read holds both kinds.
      const specs = Array.from({ length: hung + ordinary }, (_, i) => i % 3 === 0
        ? (i % 2 === 0 ? busyLoop : atomicsWait).message({})
        : sleeper.message({ ms: 50, value: i }));
      const handles = await group(specs).send();
      const ids = new Set(handles.jobs.filter((_, i) => i % 3 !== 0).map((h) => h.id));
      await until(async () => (await broker.stats("iso")).dead === hung, `${hung} dead letters`, 60_000);
      const letters = await broker.deadLetters("iso");
      const wrong = letters.filter((l) => l.error.name !== "TimeLimitExceeded");
      assert(wrong.length === 0, `dead letters with ${wrong.map((l) => l.error.name).join(", ")}`);
      const completions = () => p.logs.filter((l) => l.msg === "job completed" && ids.has(String(l.id)));
      // The worker's log lines come through a pipe, maybe after Redis has the letters.
      await until(() => completions().length >= ordinary, `${ordinary} ordinary jobs completed`, 30_000);
      await new Promise((r) => setTimeout(r, 200));
      const done = completions();
      const once = new Set(done.map((l) => l.id));
      assert(done.length === ordinary && once.size === ordinary, `${done.length} completions of ${once.size} ordinary jobs`);
      const later = done.filter((l) => l.attempt !== 1);
      assert(later.length === 0, `completed on attempts ${later.map((l) => l.attempt).join(", ")}`);
      const charged = p.logs.filter((l) => ids.has(String(l.id)) && l.msg !== "job completed" && String(l.msg).startsWith("job failed"));
      assert(charged.length === 0, `ordinary jobs charged: ${charged.map((l) => JSON.stringify(l)).join("; ")}`);
      const returned = p.logs.filter((l) => ids.has(String(l.id)) && l.msg === "job returned to its queue, not charged an attempt").length;
      return `${letters.length} dead letters, ${ordinary} ordinary jobs completed, ${returned} of their runs given back uncharged`;
    }, 90_000);
  } finally {
    if (w && w.child.exitCode === null && w.child.signalCode === null) await w.stop("SIGKILL");
    await closeBroker();
    await broker.close();
    await cleanPrefix(prefix);
  }
}
