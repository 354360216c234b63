/**
 * Durable sends (`replicaAcks`, src/broker/replica_acks.ts) on a real Redis Cluster (3 masters, a
 * replica each): each node's enqueue pipeline ends with a WAIT, issued on that node, and a send whose
 * master's replica is stopped rejects with ReplicationTimeout, the job queued anyway. On the single
 * Redis of the other tests (no replicas) every such send times out. The option's parsing is checked
 * without Redis. Skipped locally without redis-server or redis-cli; in CI their
 * absence fails the file.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import process from "node:process";
import { Cluster } from "ioredis";
import { queuesKey } from "../src/broker/keys.ts";
import { RedisBroker } from "../src/broker/redis.ts";
import { checkReplicaAcks, replicaAcksFromEnv } from "../src/config.ts";
import { closeBroker } from "../src/client.ts";
import { configure, settings } from "../src/config.ts";
import { ConfigError, ReplicationTimeout } from "../src/errors.ts";
import type { Message } from "../src/message.ts";
import type { MasterNode, RedisCluster } from "./cluster/cluster.ts";
import { closeCluster, clusterEnabled, masterFor, openCluster } from "./cluster/suite.ts";
import { failoverActors } from "./fixtures/failover_app.ts";
import { cleanPrefix, REDIS_URL, rejection, testPrefix } from "./helpers.ts";
import { redisTest } from "./redis_test.ts";

const enabled = clusterEnabled();

let cluster: RedisCluster;
let masters: MasterNode[];
/** A plain ioredis Cluster client: what the cases add by hand and clean up. */
let raw: Cluster;

beforeAll(async () => {
  if (enabled) ({ cluster, masters, raw } = await openCluster());
}, 60_000);

afterAll(() => closeCluster({ cluster, raw }));

const masterOf = (key: string): MasterNode => masterFor(masters, key);

/** A prefix whose queues `queues` are on three different masters. */
function spreadPrefix(queues: readonly string[]): string {
  for (;;) {
    const prefix = testPrefix("ra");
    if (new Set(queues.map((q) => masterOf(`{${prefix}:${q}}`).port)).size === 3) return prefix;
  }
}

/** WAIT calls each master has served since the last reset, by port. */
async function waits(): Promise<Map<number, number>> {
  return new Map(await Promise.all(masters.map(async (m) => {
    const node = raw.nodes("master").find((n) => n.options.port === m.port)!;
    const stats = String(await node.info("commandstats"));
    return [m.port, Number(/cmdstat_wait:calls=(\d+)/.exec(stats)?.[1] ?? 0)] as [number, number];
  })));
}

const msg = (queue: string): Message => ({
  id: `j-${crypto.randomUUID().slice(0, 8)}`, actor: "a", queue, payload: 1, priority: 0, sentAt: Date.now(), tracked: true,
});

describe("replicaAcks: parsing", () => {
  test("DRAY_REPLICA_ACKS takes <replicas>[:<timeoutMs>]; unset, empty or 0 is off", () => {
    expect(replicaAcksFromEnv(undefined)).toBeUndefined();
    expect(replicaAcksFromEnv("")).toBeUndefined();
    expect(replicaAcksFromEnv("0")).toBeUndefined();
    expect(replicaAcksFromEnv("1")).toEqual({ replicas: 1, timeoutMs: 1000 });
    expect(replicaAcksFromEnv("2:500")).toEqual({ replicas: 2, timeoutMs: 500 });
    expect(() => replicaAcksFromEnv("yes")).toThrow(ConfigError);
  });

  test("configure refuses what WAIT cannot mean: no replicas, a timeout of 0 (forever)", () => {
    expect(() => checkReplicaAcks({ replicas: 0 })).toThrow(ConfigError);
    expect(() => checkReplicaAcks({ replicas: 1, timeoutMs: 0 })).toThrow(ConfigError);
    expect(() => configure({ replicaAcks: { replicas: 1.5 } })).toThrow(ConfigError);
  });
});

describe("replicaAcks on a Redis Cluster", () => {
  test.skipIf(!enabled)("given replicaAcks on, when jobs go to queues of three masters, then each master ran a WAIT and the sends resolved", async () => {
    const prefix = spreadPrefix(["a", "b", "c"]);
    const broker = new RedisBroker({ url: cluster.url, prefix, replicaAcks: { replicas: 1, timeoutMs: 1000 } });
    try {
      // given
      await broker.enqueue([{ message: msg("a") }]); // connects and loads the slots
      const before = await waits();
      // when: one batch over three nodes, then one send each
      expect(await broker.enqueue(["a", "b", "c"].map((q) => ({ message: msg(q) })))).toEqual([true, true, true]);
      for (const q of ["a", "b", "c"]) expect(await broker.enqueue([{ message: msg(q) }])).toEqual([true]);
      // then: two WAITs on each master (one per pipeline), none elsewhere
      const after = await waits();
      expect(masters.map((m) => after.get(m.port)! - before.get(m.port)!)).toEqual([2, 2, 2]);
      expect(await raw.xlen(broker.keys("b").stream(0))).toBe(2);
    } finally {
      await broker.close();
    }
  }, 30_000);

  test.skipIf(!enabled)("given configure({ replicaAcks }), when an actor sends, then the send waits on its queue's master", async () => {
    const [actor] = failoverActors;
    const prefix = testPrefix("ra");
    const saved = { ...settings() };
    configure({ prefix, redisUrl: cluster.url, replicaAcks: { replicas: 1, timeoutMs: 1000 } });
    try {
      await actor!.send({ n: 0 });
      const port = masterOf(`{${prefix}:${actor!.options.queue}}`).port;
      const before = (await waits()).get(port)!;
      const handles = await actor!.sendMany([{ n: 1 }, { n: 2 }, { n: 3 }]);
      expect(handles).toHaveLength(3);
      expect((await waits()).get(port)! - before).toBe(1);
    } finally {
      await closeBroker();
      configure(saved);
    }
  }, 30_000);

  test.skipIf(!enabled)("given the replica of a queue's master stopped, when a job is sent there, then the send rejects with ReplicationTimeout after the timeout, the job queued", async () => {
    const prefix = spreadPrefix(["a", "b", "c"]);
    const broker = new RedisBroker({ url: cluster.url, prefix, replicaAcks: { replicas: 1, timeoutMs: 300 } });
    const master = masterOf(`{${prefix}:a}`);
    const replica = cluster.nodes.find((n) => n.port === master.replicas[0])!;
    try {
      // given
      await broker.enqueue([{ message: msg("a") }, { message: msg("b") }]);
      process.kill(replica.pid, "SIGSTOP");
      // when
      const began = performance.now();
      const error = await rejection(broker.enqueue([{ message: msg("a") }]));
      const waited = performance.now() - began;
      // then
      expect(error).toBeInstanceOf(ReplicationTimeout);
      expect(error.message).toContain("0 of 1 replica");
      expect(error.message).toContain("may or may not survive a failover");
      expect(waited).toBeGreaterThanOrEqual(290);
      expect(await raw.xlen(broker.keys("a").stream(0))).toBe(2); // queued on the master all the same
      // and a queue on another master is not held up
      expect(await broker.enqueue([{ message: msg("b") }])).toEqual([true]);
      // and a batch with one job on the stopped replica's master rejects as a whole
      expect(await rejection(broker.enqueue([{ message: msg("b") }, { message: msg("a") }]))).toBeInstanceOf(ReplicationTimeout);
    } finally {
      process.kill(replica.pid, "SIGCONT");
      await broker.close();
    }
  }, 30_000);
});

describe("replicaAcks on a single Redis", () => {
  redisTest("given a Redis without replicas, when a job is sent with replicaAcks, then it rejects with ReplicationTimeout, the job queued", async () => {
    const prefix = testPrefix("ra");
    const broker = new RedisBroker({ url: REDIS_URL, prefix, replicaAcks: { replicas: 1, timeoutMs: 100 } });
    try {
      const error = await rejection(broker.enqueue([{ message: msg("a") }, { message: msg("b") }]));
      expect(error).toBeInstanceOf(ReplicationTimeout);
      expect(await broker.redis.xlen(broker.keys("b").stream(0))).toBe(1);
    } finally {
      await broker.close();
      await cleanPrefix(prefix);
    }
  });
});
