/**
 * A slot of a Redis Cluster moved to another master while dray uses it, the way `redis-cli --cluster
 * reshard` moves one (test/cluster/migrate.ts), but slowly, so that for a second or two the slot is
 * half-moved: commands on keys already gone get ASK, scripts whose keys are split (or not all there)
 * get TRYAGAIN. dray promises at-least-once, so the cases check that no acknowledged send is lost,
 * that the redirections never reach the user (no send rejected, no job failed or dead-lettered, no
 * failure in the worker's log), and that the queue works on its new master afterwards; duplicates
 * are allowed, and counted. The second case moves the slot of an idle queue while the worker's
 * blocking read waits on it there. One cluster for the file (3 masters, a replica each); each case
 * has its own prefix and `dray worker` process. Skipped locally without redis-server or redis-cli;
 * in CI their absence fails the file.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { Cluster } from "ioredis";
import { keySlot } from "../src/broker/cluster.ts";
import { queueKeys } from "../src/broker/keys.ts";
import { closeBroker } from "../src/client.ts";
import { configure, settings } from "../src/config.ts";
import { decodeRecord } from "../src/results/record.ts";
import type { MasterNode, RedisCluster } from "./cluster/cluster.ts";
import { migrateSlot, type SlotMoved } from "./cluster/migrate.ts";
import { ask } from "./cluster/topology.ts";
import { cleanClusterPrefix, closeCluster, clusterEnabled, masterFor, openCluster } from "./cluster/suite.ts";
import { FAILOVER_QUEUES, failoverActors } from "./fixtures/failover_app.ts";
import { fixture, sleep, spawnWorker, started, testPrefix, until, type WorkerProcess } from "./helpers.ts";

const enabled = clusterEnabled();

let cluster: RedisCluster;
let raw: Cluster;

beforeAll(async () => {
  if (enabled) ({ cluster, raw } = await openCluster());
}, 60_000);

afterAll(() => closeCluster({ cluster, raw }));

/** The sender's pace: 6 sends every 20 ms, spread over the three queues. */
const TICK_MS = 20;
const PER_TICK = 6;
/** Every this many sends to the moved queue, the sender also waits for the result. */
const RESULT_EVERY = 20;

const [BUSY, IDLE] = [FAILOVER_QUEUES[0], FAILOVER_QUEUES[1]];
const tagOf = (prefix: string, queue: string) => `{${prefix}:${queue}}`;

/** A prefix whose three queues are on three masters, so that the moved queue's neighbours keep theirs. */
async function spreadPrefix(): Promise<{ prefix: string; masters: MasterNode[] }> {
  const masters = await cluster.masters();
  for (;;) {
    const prefix = testPrefix("rs");
    if (new Set(FAILOVER_QUEUES.map((q) => masterFor(masters, tagOf(prefix, q)).port)).size === 3) return { prefix, masters };
  }
}

/** Given a `dray worker` of the three queues and this process sending to `prefix`. */
async function given(prefix: string): Promise<{ worker: WorkerProcess; done: () => Promise<void> }> {
  const saved = { ...settings() };
  configure({ prefix, redisUrl: cluster.url });
  const worker = spawnWorker([fixture("failover_app.ts")], ["--concurrency", "32", "--visibility-timeout", "4000"], {
    DRAY_PREFIX: prefix, REDIS_URL: cluster.url, DRAY_LOG_LEVEL: "debug",
  });
  await started(worker);
  return {
    worker, done: async () => {
      await worker.stop("SIGTERM");
      await closeBroker();
      configure(saved);
      await cleanClusterPrefix(raw, prefix);
    },
  };
}

/** ASK, TRYAGAIN and MOVED replies the masters gave since the last CONFIG RESETSTAT. */
async function redirections(masters: MasterNode[]): Promise<Record<string, number>> {
  const counts: Record<string, number> = { ASK: 0, TRYAGAIN: 0, MOVED: 0 };
  for (const m of masters) {
    const info = await ask(m.port, (r) => r.info("errorstats"));
    for (const [, name, n] of info.matchAll(/^errorstat_(\w+):count=(\d+)/gm)) counts[name!] = (counts[name!] ?? 0) + Number(n);
  }
  return counts;
}

/** Job ids whose record is not "completed" yet, polled until none is left or `ms` passed. */
async function notCompleted(prefix: string, sent: Array<{ queue: string; id: string }>, ms: number) {
  let left = sent;
  for (const stop = Date.now() + ms; left.length > 0 && Date.now() < stop;) {
    const records = await Promise.all(left.map((s) => raw.get(queueKeys(prefix, s.queue).job(s.id)).catch(() => null)));
    left = left.filter((_, i) => decodeRecord(records[i])?.status !== "completed");
    if (left.length > 0) await sleep(250);
  }
  return left;
}

/** What the worker logged: runs per job id, and every line at warn or above. */
function workerLog(worker: WorkerProcess): { runs: Map<string, number>; warnings: Array<Record<string, unknown>> } {
  const runs = new Map<string, number>();
  for (const l of worker.logs) if (l.msg === "job started") runs.set(String(l.id), (runs.get(String(l.id)) ?? 0) + 1);
  return { runs, warnings: worker.logs.filter((l) => Number(l.level) >= 40) };
}

const tally = (into: Map<string, number>, key: string) => into.set(key, (into.get(key) ?? 0) + 1);

describe("a slot moved to another master, key by key", () => {
  test.skipIf(!enabled)("given a sender and a worker busy on a queue, when its slot moves, then nothing is lost or failed and the queue works on its new master", async () => {
    const { prefix, masters } = await spreadPrefix();
    const slot = keySlot(tagOf(prefix, BUSY));
    const from = masterFor(masters, tagOf(prefix, BUSY));
    const to = masterFor(masters, tagOf(prefix, FAILOVER_QUEUES[2]));
    const { worker, done } = await given(prefix);
    try {
      // given a sender sending continuously, and waiting for some results
      for (const m of masters) await ask(m.port, (r) => r.call("CONFIG", "RESETSTAT"));
      const acknowledged: Array<{ queue: string; id: string }> = [];
      const rejected = new Map<string, number>();
      const results = { ok: 0, failed: new Map<string, number>(), slowestMs: 0 };
      const pending = new Set<Promise<void>>();
      let n = 0;
      const track = (p: Promise<void>) => {
        pending.add(p);
        void p.finally(() => pending.delete(p));
      };
      const send = (i: number) => {
        const actor = failoverActors[i % 3]!;
        track(actor.send({ n: i }).then((handle) => {
          acknowledged.push({ queue: actor.options.queue, id: handle.id });
          if (actor.options.queue !== BUSY || i % RESULT_EVERY !== 0) return;
          const began = performance.now();
          track(handle.result({ timeout: 30_000 }).then((value) => {
            expect(value).toBe(i);
            results.ok++;
            results.slowestMs = Math.max(results.slowestMs, Math.round(performance.now() - began));
          }, (error: Error) => void tally(results.failed, `${error.name}: ${error.message.slice(0, 90)}`)));
        }, (error: Error) => void tally(rejected, `${error.name}: ${error.message.slice(0, 120)}`)));
      };
      const sender = setInterval(() => {
        for (let k = 0; k < PER_TICK; k++) send(n++);
      }, TICK_MS);
      await sleep(2_000);

      // when the busy queue's slot moves to another master, in small batches over ~1.5 s
      const keysBefore = Number(await ask(from.port, (r) => r.call("CLUSTER", "COUNTKEYSINSLOT", slot)));
      const moved: SlotMoved = await migrateSlot({ slot, from, to, masters, batch: 10, spreadMs: 1_500 });
      await sleep(2_000);
      clearInterval(sender);
      for (const stop = Date.now() + 30_000; pending.size > 0 && Date.now() < stop;) await sleep(50);

      // then every acknowledged send ran, none failed, no send was rejected
      const lost = await notCompleted(prefix, acknowledged, 20_000);
      const seen = await redirections(masters);
      const { runs, warnings } = workerLog(worker);
      const duplicates = [...runs.values()].filter((c) => c > 1).length;
      console.log(`[reshard busy] slot ${slot} ${from.port} -> ${to.port}: ${keysBefore} keys at the start, ${moved.keys} ` +
        `migrated in ${moved.batches} batches, slot open ${moved.ms} ms; sends acknowledged ${acknowledged.length}, ` +
        `rejected ${JSON.stringify(Object.fromEntries(rejected))}, unsettled ${pending.size}; lost ${lost.length}; ` +
        `jobs run twice or more ${duplicates}; results waited ${results.ok} (slowest ${results.slowestMs} ms), ` +
        `failed ${JSON.stringify(Object.fromEntries(results.failed))}; replies by the masters ${JSON.stringify(seen)}; ` +
        `worker warnings ${JSON.stringify(warnings.map((w) => `${w.msg}: ${String((w.err as { message?: string })?.message ?? "").slice(0, 100)}`))}`);
      expect(acknowledged.length).toBeGreaterThan(1_000);
      expect((seen.ASK ?? 0) + (seen.TRYAGAIN ?? 0)).toBeGreaterThan(0);
      expect(lost).toEqual([]);
      expect(Object.fromEntries(rejected)).toEqual({});
      expect(pending.size).toBe(0);
      expect(Object.fromEntries(results.failed)).toEqual({});
      expect(acknowledged.every((s) => (runs.get(s.id) ?? 0) >= 1)).toBe(true);
      expect(worker.logs.filter((l) => /failed; retrying|dead-lettered|settling a job failed/.test(String(l.msg)))).toEqual([]);

      // and the queue's keys all live on the new master, where work goes on
      expect(Number(await ask(from.port, (r) => r.call("CLUSTER", "COUNTKEYSINSLOT", slot)))).toBe(0);
      expect(Number(await ask(to.port, (r) => r.call("CLUSTER", "COUNTKEYSINSLOT", slot)))).toBeGreaterThan(0);
      expect(masterFor(await cluster.masters(), tagOf(prefix, BUSY)).port).toBe(to.port);
      const more = await Promise.all(Array.from({ length: 50 }, (_, i) => failoverActors[0]!.send({ n: i })));
      expect(await Promise.all(more.map((h) => h.result({ timeout: 15_000 })))).toEqual(Array.from({ length: 50 }, (_, i) => i));
    } finally {
      await done();
    }
  }, 90_000);

  test.skipIf(!enabled)("given a worker blocked on an idle queue, when the queue's slot moves, then a job sent after the move runs within seconds", async () => {
    const { prefix, masters } = await spreadPrefix();
    const slot = keySlot(tagOf(prefix, IDLE));
    const from = masterFor(masters, tagOf(prefix, IDLE));
    const to = masterFor(masters, tagOf(prefix, BUSY));
    const { worker, done } = await given(prefix);
    const idle = failoverActors[1]!;
    try {
      // given the idle queue's group made and the worker blocking on it, on its master
      expect(await (await idle.send({ n: 1 })).result({ timeout: 15_000 })).toBe(1);
      await until(async () => (await blockedReaders(from.port)) > 0, "the worker blocking on the idle queue's master", 10_000);

      // when its slot moves while the worker waits there
      const moved = await migrateSlot({ slot, from, to, masters, batch: 1, spreadMs: 1_500 });

      // then a job sent after the move runs within a few seconds, on the new master
      const began = performance.now();
      expect(await (await idle.send({ n: 2 })).result({ timeout: 15_000 })).toBe(2);
      const ms = Math.round(performance.now() - began);
      console.log(`[reshard idle] slot ${slot} ${from.port} -> ${to.port}: ${moved.keys} keys in ${moved.batches} batches, ` +
        `slot open ${moved.ms} ms; a job sent after the move ran in ${ms} ms`);
      expect(ms).toBeLessThan(5_000);
      expect(Number(await ask(from.port, (r) => r.call("CLUSTER", "COUNTKEYSINSLOT", slot)))).toBe(0);
      expect(worker.logs.filter((l) => /failed; retrying|dead-lettered|settling a job failed/.test(String(l.msg)))).toEqual([]);
    } finally {
      await done();
    }
  }, 60_000);
});

/** Connections named dray-block blocked (flag b) on the master at `port`. */
async function blockedReaders(port: number): Promise<number> {
  const list = String(await ask(port, (r) => r.call("CLIENT", "LIST")));
  return list.split("\n").filter((line) => /name=dray-block /.test(line) && /flags=\w*b/.test(line)).length;
}
