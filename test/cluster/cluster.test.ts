/**
 * The local Redis Cluster of test/cluster/cluster.ts, end to end: six real redis-server processes,
 * keys written through ioredis' Cluster client, a master SIGKILLed, its replica promoted, the keys
 * still there, and nothing left behind. Skipped locally without redis-server or redis-cli; in CI
 * (CI set) their absence fails the test.
 */
import { expect, test } from "bun:test";
import { existsSync } from "node:fs";
import process from "node:process";
import { Cluster } from "ioredis";
import { missingBinaries, startCluster } from "./cluster.ts";

const missing = missingBinaries();

test.skipIf(missing.length > 0 && !process.env.CI)(
  "given a 3x2 cluster, when a master is SIGKILLed, then its replica takes over and no key is lost",
  async () => {
    if (missing.length > 0) throw new Error(`CI needs ${missing.join(" and ")} on PATH for the cluster test`);
    // given
    const cluster = await startCluster({ nodeTimeoutMs: 1000 });
    const client = new Cluster([{ host: cluster.nodes[0]!.host, port: cluster.nodes[0]!.port }]);
    client.on("error", () => undefined); // the dead master's connection complains until the client moves on
    try {
      const masters = await cluster.masters();
      expect(masters).toHaveLength(3);
      expect(masters.map((m) => m.replicas.length)).toEqual([1, 1, 1]);
      expect(await cluster.replicas()).toHaveLength(3);
      expect((await cluster.status()).map((s) => s.state)).toEqual(Array(6).fill("ok"));
      expect(cluster.url).toBe(`redis+cluster://${cluster.nodes.map((n) => `127.0.0.1:${n.port}`).join(",")}`);

      const keys = Array.from({ length: 60 }, (_, i) => `cluster-test:${i}`);
      for (const key of keys) await client.set(key, `value of ${key}`);
      const slots = await Promise.all(keys.map(async (key) => Number(await client.call("CLUSTER", "KEYSLOT", key))));
      const ownerOf = (slot: number) => masters.find((m) => m.slots.some(([from, to]) => slot >= from && slot <= to))!.port;
      expect(new Set(slots.map(ownerOf)).size).toBe(3);

      // when
      const failover = await cluster.failover();
      console.log(`cluster started in ${cluster.startMs} ms; failover of ${failover.killed}: ` +
        `replica ${failover.promoted} promoted after ${failover.promotedMs} ms, cluster ok after ${failover.ms} ms`);

      // then
      expect(slots.some((slot) => ownerOf(slot) === failover.killed)).toBe(true);
      const after = await cluster.masters();
      expect(after.map((m) => m.port).sort()).toEqual(
        masters.map((m) => (m.port === failover.killed ? failover.promoted : m.port)).sort(),
      );
      for (const key of keys) expect(await client.get(key)).toBe(`value of ${key}`);
    } finally {
      client.disconnect();
      await cluster.stop();
      await cluster.stop(); // twice is fine
    }
    // and nothing is left behind
    expect(existsSync(cluster.dir)).toBe(false);
    expect(cluster.nodes.filter((n) => running(n.pid))).toEqual([]);
  },
  60_000,
);

function running(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
