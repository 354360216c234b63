/**
 * The broker conformance suite on a real Redis Cluster (test/cluster/cluster.ts: 3 masters with a
 * replica each), through a `redis+cluster://` URL. Each case gets a prefix chosen so that its queues
 * "a", "b" and "c" are served by three different masters and "q" by another master than the queue
 * directory: batches over several queues then span nodes, as in production. The cron store's suite
 * runs here too. Plus what only a cluster shows: the URL at the wrong kind of server, results waited
 * for and history added across nodes, and a worker process on the cluster URL. Skipped locally
 * without redis-server or redis-cli; in CI (CI set) their absence fails the file.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Cluster } from "ioredis";
import { pino } from "pino";
import { newRedis } from "../src/broker/connection.ts";
import { queueKeys, queuesKey } from "../src/broker/keys.ts";
import { RedisBroker } from "../src/broker/redis.ts";
import { closeBroker } from "../src/client.ts";
import { configure, settings } from "../src/config.ts";
import { RedisCronStore } from "../src/cron/redis_store.ts";
import { dashboard } from "../src/dashboard/mod.ts";
import { ConfigError } from "../src/errors.ts";
import { decodeMessage, type Delivery, type Message } from "../src/message.ts";
import { settledRecord } from "../src/results/record.ts";
import { brokerConformance } from "./broker_conformance.ts";
import type { MasterNode, RedisCluster } from "./cluster/cluster.ts";
import { cleanClusterPrefix as cleanClusterPrefixOn, closeCluster, clusterEnabled, masterFor, openCluster } from "./cluster/suite.ts";
import { CONFORMANCE_QUEUE, cronStoreConformance } from "./cron_conformance.ts";
import { resultsConformance } from "./results_conformance.ts";
import { slow } from "./fixtures/core_app.ts";
import { fixture, rejection, spawnDray, spawnWorker, started, testPrefix, until } from "./helpers.ts";

const enabled = clusterEnabled();
const silent = pino({ level: "silent" });

let cluster: RedisCluster;
let masters: MasterNode[];
/** A plain ioredis Cluster client: what the cases add by hand and clean up. */
let raw: Cluster;

beforeAll(async () => {
  if (enabled) ({ cluster, masters, raw } = await openCluster());
}, 60_000);

afterAll(() => closeCluster({ cluster, raw }));

/** The port of the master serving `key`'s slot. */
function masterOf(key: string): number {
  return masterFor(masters, key).port;
}

/** A fresh prefix whose queues a, b and c are on three different masters, and q not on the directory's. */
function spreadPrefix(): string {
  for (let tries = 0; tries < 10_000; tries++) {
    const prefix = testPrefix("cl");
    const spread = new Set(["a", "b", "c"].map((q) => masterOf(`{${prefix}:${q}}`))).size === 3;
    if (spread && masterOf(`{${prefix}:q}`) !== masterOf(queuesKey(prefix))) return prefix;
  }
  throw new Error("found no prefix that spreads the queues");
}

/** Every key of `prefix` on every master. */
const cleanClusterPrefix = (prefix: string): Promise<void> => cleanClusterPrefixOn(raw, prefix);

brokerConformance("redis cluster", async (visibilityTimeout) => {
  const prefix = spreadPrefix();
  const broker = new RedisBroker({ url: cluster.url, prefix, visibilityTimeout, patient: true });
  const peers: RedisBroker[] = [];
  return {
    broker,
    async addRaw(queue, body) {
      const k = broker.keys(queue);
      await raw.sadd(k.priorities, "0");
      await raw.xadd(k.stream(0), "*", "m", body);
    },
    async peer() {
      const peer = new RedisBroker({ url: cluster.url, prefix, visibilityTimeout, patient: true });
      peers.push(peer);
      return peer;
    },
    async cleanup() {
      for (const peer of peers) await peer.close();
      await broker.close();
      await cleanClusterPrefix(prefix);
    },
  };
}, enabled);

resultsConformance("redis cluster", async () => {
  const prefix = spreadPrefix();
  const broker = new RedisBroker({ url: cluster.url, prefix, patient: true });
  return { broker, cleanup: async () => { await broker.close(); await cleanClusterPrefix(prefix); } };
}, enabled);

// Its keys go with the cluster, which the file stops at the end.
cronStoreConformance("redis cluster", async () => {
  const prefix = spreadPrefix();
  const stream = queueKeys(prefix, CONFORMANCE_QUEUE).stream(0);
  return {
    store: new RedisCronStore(raw, prefix),
    sent: async () => (await raw.xrange(stream, "-", "+")).map(([, fields]) => decodeMessage(fields[1]!, CONFORMANCE_QUEUE)),
  };
}, enabled);

const msg = (queue: string, over: Partial<Message> = {}): Message => ({
  id: `j-${crypto.randomUUID().slice(0, 8)}`, actor: "a", queue, payload: 1, priority: 0, sentAt: Date.now(), ...over,
});

describe("dray on a Redis Cluster", () => {
  test.skipIf(!enabled)("a plain URL at a cluster node fails its commands at once, with a ConfigError naming redis+cluster://", async () => {
    const client = newRedis(`redis://127.0.0.1:${masters[0]!.port}`, { maxRetriesPerRequest: null });
    try {
      const error = await rejection(client.get("x"));
      expect(error).toBeInstanceOf(ConfigError);
      expect(error.message).toContain("redis+cluster://");
    } finally {
      client.disconnect();
    }
  }, 20_000);

  test.skipIf(!enabled)("a worker on a plain URL at a cluster node exits at start with that message", async () => {
    const worker = spawnWorker([fixture("core_app.ts")], [], { DRAY_PREFIX: testPrefix("cl"), REDIS_URL: `redis://127.0.0.1:${masters[0]!.port}` });
    const code = await worker.exited;
    expect(code).not.toBe(0);
    expect(worker.output()).toContain("redis+cluster://");
  }, 20_000);

  test.skipIf(!enabled)("given jobs and a dead letter on queues of three masters, then dray queues and the dashboard show them all", async () => {
    const prefix = spreadPrefix();
    const broker = new RedisBroker({ url: cluster.url, prefix, autoPipelining: true });
    try {
      // given a ready job on a, one running on b, a dead letter on c
      const sent = ["a", "b", "c"].map((q) => msg(q, { payload: { q } }));
      await broker.enqueue(sent.map((message) => ({ message })));
      await broker.read(["b"], 1, 0);
      const [dead] = (await broker.read(["c"], 1, 0)) as Delivery[];
      await broker.deadLetter(dead!, { name: "Error", message: "boom on c" });
      // when dray queues reads them
      const queues = spawnDray("queues", [], { DRAY_PREFIX: prefix, REDIS_URL: cluster.url });
      expect(await queues.exited).toBe(0);
      const rows = queues.output().split("\n").filter((l) => /^[abc]\s/.test(l)).map((l) => l.split(/\s+/).slice(0, 5).join(" "));
      // then (queue ready running delayed dead)
      expect(rows).toEqual(["a 1 0 0 0", "b 0 1 0 0", "c 0 0 0 1"]);
      // and the dashboard's pages answer from all three masters
      const page = async (path: string) => {
        const res = await dashboard({ broker, token: "", logger: silent }).fetch(new Request(`http://dash${path}`));
        return { status: res.status, body: await res.text() };
      };
      expect((await page("/")).body).toMatch(/data-queue="c"/);
      expect((await page("/queues/a?state=ready")).body).toContain(sent[0]!.id);
      expect((await page("/queues/b?state=running")).body).toContain(sent[1]!.id);
      expect((await page("/dead/c")).body).toContain("boom on c");
      expect((await page(`/jobs?id=${sent[1]!.id}`)).status).toBe(200);
    } finally {
      await broker.close();
      await cleanClusterPrefix(prefix);
    }
  }, 30_000);

  test.skipIf(!enabled)("given tracked jobs on queues of three masters, when acked in one batch, then each waiter hears of its own", async () => {
    const prefix = spreadPrefix();
    const broker = new RedisBroker({ url: cluster.url, prefix, patient: true });
    try {
      // given
      const sent = ["a", "b", "c"].map((q) => msg(q, { tracked: true }));
      expect(await broker.enqueue(sent.map((message) => ({ message })))).toEqual([true, true, true]);
      expect(await broker.queues()).toEqual(["a", "b", "c"]);
      const read = (await broker.read(["a", "b", "c"], 10, 0)) as Delivery[];
      expect(read.map((d) => d.message.queue).sort()).toEqual(["a", "b", "c"]);
      const waiting = sent.map((m) => broker.jobs.wait(m.queue, m.id, 5_000));
      // (a pipeline over two of these queues is what ioredis refuses: the batches below must split)
      await expect(raw.pipeline().exists(broker.keys("a").running).exists(broker.keys("b").running).exec())
        .rejects.toThrow(/same slots allocation group/);
      // when
      const lost = await broker.ack(read.map((d) => ({
        delivery: d, keepMs: 60_000, record: settledRecord(d, "completed", { startedAt: Date.now(), result: d.message.queue }),
      })));
      // then
      expect(lost).toEqual([]);
      const done = await Promise.all(waiting);
      expect(done.map((w) => (w.kind === "finished" ? w.record.result : w.kind))).toEqual(["a", "b", "c"]);
      expect(await broker.jobs.locate(sent[1]!.id)).toBe("b");
    } finally {
      await broker.close();
      await cleanClusterPrefix(prefix);
    }
  }, 20_000);

  test.skipIf(!enabled)("aborts across nodes: a watcher of three queues loads the earlier ones and hears a new one", async () => {
    const prefix = spreadPrefix();
    const broker = new RedisBroker({ url: cluster.url, prefix, patient: true });
    try {
      // given a queued job on b aborted before anyone watched, and a job on c running
      const early = msg("b", { tracked: true });
      const running = msg("c", { tracked: true });
      await broker.enqueue([{ message: early }, { message: running }]);
      expect((await broker.jobs.abort("b", early.id))?.aborted).toBe(true);
      expect(await broker.read(["c"], 1, 0)).toHaveLength(1);
      // when a worker of a, b and c starts watching, and the running job is aborted
      const heard: string[] = [];
      const stop = await broker.jobs.watchAborts(["a", "b", "c"], (id) => heard.push(id));
      expect(heard).toContain(early.id); // loaded at once
      expect((await broker.jobs.abort("c", running.id))?.status).toBe("running");
      // then the worker hears of it. The early abort's own message may come too, late: the cluster bus
      // carries a PUBLISH to the other nodes after it returned, so one made on b's node just before the
      // watch began can reach the subscriber's node after it. Hearing an abort twice is harmless.
      await until(() => heard.includes(running.id) || undefined, "the abort heard", 10_000);
      expect(new Set(heard)).toEqual(new Set([early.id, running.id]));
      await stop();
    } finally {
      await broker.close();
      await cleanClusterPrefix(prefix);
    }
  }, 20_000);

  test.skipIf(!enabled)("history: counts of actors on queues of three masters go in one script to {<p>:history}'s node, and read back", async () => {
    const prefix = spreadPrefix();
    const broker = new RedisBroker({ url: cluster.url, prefix, patient: true });
    try {
      const minute = Math.floor(Date.now() / 60_000) * 60_000;
      await broker.history.add(["a", "b", "c"].map((queue) => ({
        resolution: "minute" as const, at: minute, queue, actor: `x-${queue}`, counts: { started: 2, completed: 2 },
      })));
      const rows = await broker.history.read("minute", minute, minute);
      expect(rows.map((r) => [r.queue, r.actor, r.counts.completed])).toEqual([["a", "x-a", 2], ["b", "x-b", 2], ["c", "x-c", 2]]);
    } finally {
      await broker.close();
      await cleanClusterPrefix(prefix);
    }
  }, 20_000);

  test.skipIf(!enabled)("given a worker process on the cluster URL, when jobs are sent, then it runs them all, ctx.redis included", async () => {
    const prefix = spreadPrefix();
    const saved = { ...settings() };
    configure({ prefix, redisUrl: cluster.url });
    const worker = spawnWorker([fixture("core_app.ts")], ["--concurrency", "8"], { DRAY_PREFIX: prefix, REDIS_URL: cluster.url });
    try {
      await started(worker);
      // when
      await slow.sendMany(Array.from({ length: 40 }, (_, n) => ({ n, ms: 5 })));
      // then
      await until(async () => (await raw.scard(`${prefix}:test:done`)) === 40 || undefined, "40 jobs done", 15_000);
      expect(worker.logs.filter((l) => Number(l.level) >= 40)).toEqual([]);
    } finally {
      await worker.stop("SIGTERM");
      await closeBroker();
      configure(saved);
      await cleanClusterPrefix(prefix);
    }
  }, 40_000);
});
