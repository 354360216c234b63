/**
 * The blocking read and the result channels on a real Redis Cluster (test/cluster/cluster.ts: 3
 * masters with a replica each): a worker of queues on three masters blocks on each at once (no
 * command while it waits), any one of them wakes it, interrupt() ends it, results are heard through
 * sharded channels, and a master's failover in the middle of a block is carried through. The
 * failover case goes last: it leaves the cluster with a dead node. Skipped locally without
 * redis-server or redis-cli; in CI (CI set) their absence fails the file.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Cluster } from "ioredis";
import { RedisBroker } from "../src/broker/redis.ts";
import { getJob } from "../src/job.ts";
import type { Delivery, Message } from "../src/message.ts";
import { settledRecord } from "../src/results/record.ts";
import type { MasterNode, RedisCluster } from "./cluster/cluster.ts";
import { cleanClusterPrefix as cleanClusterPrefixOn, closeCluster, clusterEnabled, masterFor, openCluster } from "./cluster/suite.ts";
import { sleep, testPrefix, until } from "./helpers.ts";

const enabled = clusterEnabled();

let cluster: RedisCluster;
let masters: MasterNode[];
/** A plain ioredis Cluster client: what the cases add by hand and clean up. */
let raw: Cluster;

beforeAll(async () => {
  if (enabled) ({ cluster, masters, raw } = await openCluster());
}, 60_000);

afterAll(() => closeCluster({ cluster, raw }));

const QUEUES = ["a", "b", "c"];

function masterOf(key: string): number {
  return masterFor(masters, key).port;
}

/** A fresh prefix whose queues a, b and c are on three different masters. */
function spreadPrefix(): string {
  for (let tries = 0; tries < 10_000; tries++) {
    const prefix = testPrefix("clr");
    if (new Set(QUEUES.map((q) => masterOf(`{${prefix}:${q}}`))).size === 3) return prefix;
  }
  throw new Error("found no prefix that spreads the queues");
}

/** Every key of `prefix` on every master. */
const cleanClusterPrefix = (prefix: string): Promise<void> => cleanClusterPrefixOn(raw, prefix);

/** Read commands (XREADGROUP, scripts) every master has run so far: what a polling read would add to. */
async function readCommands(): Promise<number> {
  let total = 0;
  for (const node of raw.nodes("master")) {
    const info = await node.info("commandstats");
    for (const m of info.matchAll(/^cmdstat_(xreadgroup|evalsha|eval|xautoclaim):calls=(\d+)/gm)) total += Number(m[2]);
  }
  return total;
}

const msg = (queue: string, over: Partial<Message> = {}): Message => ({
  id: `j-${crypto.randomUUID().slice(0, 8)}`, actor: "a", queue, payload: 1, priority: 0, sentAt: Date.now(), ...over,
});

/** A worker's broker and a sender's, with a, b and c known to the worker (their groups made, nothing left). */
async function given(): Promise<{ prefix: string; worker: RedisBroker; sender: RedisBroker; done: () => Promise<void> }> {
  const prefix = spreadPrefix();
  const worker = new RedisBroker({ url: cluster.url, prefix, patient: true });
  const sender = new RedisBroker({ url: cluster.url, prefix, patient: true });
  await sender.enqueue(QUEUES.map((q) => ({ message: msg(q) })));
  const first = (await worker.read(QUEUES, 10, 0)) as Delivery[];
  expect(first).toHaveLength(3);
  await worker.ack(first.map((delivery) => ({ delivery, keepMs: 0 })));
  return {
    prefix, worker, sender, done: async () => {
      await worker.close();
      await sender.close();
      await cleanClusterPrefix(prefix);
    },
  };
}

describe("the blocking read on a Redis Cluster", () => {
  test.skipIf(!enabled)("given an idle worker of queues on three masters, it blocks on each, and a send to any wakes it at once", async () => {
    const { worker, sender, done } = await given();
    try {
      for (const queue of QUEUES) {
        // given a read blocked on all three
        const reading = worker.read(QUEUES, 10, 5_000);
        await sleep(300);
        // then it runs no read command while it waits (a poll every 100 ms would)
        const before = await readCommands();
        await sleep(600);
        expect(await readCommands()).toBe(before);
        // when a job is sent to one queue
        const sent = msg(queue);
        const t0 = performance.now();
        await sender.enqueue([{ message: sent }]);
        const got = (await reading) as Delivery[];
        const ms = performance.now() - t0;
        // then the read returns it within a few ms, the other two blocks ended too
        expect(got.map((d) => d.message.id)).toEqual([sent.id]);
        expect(ms).toBeLessThan(100);
        await worker.ack(got.map((delivery) => ({ delivery, keepMs: 0 })));
      }
    } finally {
      await done();
    }
  }, 30_000);

  test.skipIf(!enabled)("interrupt() ends a blocked read at once, and the next read blocks and reads as before", async () => {
    const { worker, sender, done } = await given();
    try {
      // given
      const reading = worker.read(QUEUES, 10, 10_000);
      await sleep(300);
      // when
      const t0 = performance.now();
      worker.interrupt();
      // then
      expect(await reading).toEqual([]);
      expect(performance.now() - t0).toBeLessThan(100);
      const again = worker.read(QUEUES, 10, 10_000);
      await sleep(200);
      const sent = msg("c");
      await sender.enqueue([{ message: sent }]);
      expect(((await again) as Delivery[]).map((d) => d.message.id)).toEqual([sent.id]);
    } finally {
      await done();
    }
  }, 30_000);

  test.skipIf(!enabled)("results of jobs on three masters are heard through sharded channels", async () => {
    const { prefix, worker, sender, done } = await given();
    try {
      // given a tracked job on each queue, and a waiter on each
      const sent = QUEUES.map((q) => msg(q, { tracked: true }));
      await sender.enqueue(sent.map((message) => ({ message })));
      const results = sent.map((m) => getJob(m.id, { queue: m.queue, broker: sender }).result({ timeout: 10_000 }));
      // the done channels are sharded ones, each on its queue's master; none is a plain channel
      await until(async () => {
        const channels = await Promise.all(raw.nodes("master").map((n) => n.call("PUBSUB", "SHARDCHANNELS", `*${prefix}*`)));
        return (channels as string[][]).flat().length === 3 || undefined;
      }, "three sharded subscriptions", 5_000);
      for (const node of raw.nodes("master")) expect(await node.pubsub("CHANNELS", `*${prefix}*:done`)).toEqual([]);
      // when the worker reads and acks them
      const read = (await worker.read(QUEUES, 10, 1_000)) as Delivery[];
      expect(read).toHaveLength(3);
      await worker.ack(read.map((d) => ({
        delivery: d, keepMs: 60_000, record: settledRecord(d, "completed", { startedAt: Date.now(), result: d.message.queue }),
      })));
      // then each waiter gets its own
      const t0 = performance.now();
      expect(await Promise.all(results)).toEqual(QUEUES);
      expect(performance.now() - t0).toBeLessThan(1_000); // heard, not polled
    } finally {
      await done();
    }
  }, 30_000);

  test.skipIf(!enabled)("given a read blocked on three masters, when one master is killed and fails over, the reader carries on", async () => {
    const { worker, sender, done } = await given();
    const got: string[] = [];
    const errors: unknown[] = [];
    let stop = false;
    const loop = (async () => {
      while (!stop) {
        try {
          const batch = (await worker.read(QUEUES, 10, 1_000)) as Delivery[];
          batch.push(...((await worker.recover(QUEUES, () => false)) as Delivery[]));
          for (const d of batch) got.push(d.message.id);
          if (batch.length > 0) {
            await worker.ack(batch.map((d) => ({
              delivery: d, keepMs: 60_000, record: settledRecord(d, "completed", { startedAt: Date.now(), result: d.message.queue }),
            })));
          }
        } catch (error) {
          errors.push(error);
          await sleep(100);
        }
      }
    })();
    try {
      await sleep(300);
      // when the master of queue a dies during the block
      const failover = await cluster.failover(masterOf(`{${worker.prefix}:a}`));
      expect(failover.promoted).toBeGreaterThan(0);
      // then later sends to every queue are read, a's by the same reader on a's new master, and
      // their results are heard, a's on the sharded channel of that new master
      const sent = QUEUES.map((q) => msg(q, { tracked: true }));
      await sender.enqueue(sent.map((message) => ({ message })));
      const results = sent.map((m) => getJob(m.id, { queue: m.queue, broker: sender }).result({ timeout: 15_000 }));
      await until(() => sent.every((m) => got.includes(m.id)) || undefined, "the sends after the failover read", 15_000);
      expect(await Promise.all(results)).toEqual(QUEUES);
      expect(errors.map(String)).toEqual([]); // the failover never reached the read loop as an error
    } finally {
      stop = true;
      worker.interrupt();
      await loop;
      await done();
    }
  }, 60_000);
});
