/**
 * Where an end-to-end suite runs: one Redis, or the local Redis Cluster (test/cluster/). The suites
 * that run on both (results_e2e.ts, cron_e2e.ts, recovery.ts) take a Target, so that the cluster is
 * one more target of the same tests rather than a second set of them.
 */
import { afterAll, beforeAll, test } from "bun:test";
import { Redis } from "ioredis";
import { newRedis, type RedisClient } from "../src/broker/connection.ts";
import type { RedisCluster } from "./cluster/cluster.ts";
import { cleanClusterPrefix, closeCluster, clusterEnabled, masterFor, openCluster, type OpenCluster } from "./cluster/suite.ts";
import { cleanPrefix, REDIS_URL, testPrefix } from "./helpers.ts";
import { hasRedis } from "./redis_test.ts";

export interface Target {
  readonly name: string;
  /** Known before the tests are registered: false skips them (CI fails earlier instead). */
  readonly enabled: boolean;
  /** The URL worker processes and senders are given. */
  url(): string;
  /** A new plain client for what a test adds or checks by hand; the test disconnects it. */
  client(): RedisClient;
  /**
   * A fresh key prefix. On a cluster, one whose `queues` are served by as many different masters as
   * there can be, so that a test over several queues crosses nodes as production traffic does.
   */
  prefix(label: string, queues?: readonly string[]): string;
  /** Removes every key of `prefix`. */
  clean(prefix: string): Promise<void>;
}

/** A bun test of a suite on `target`: skipped when the target cannot run here. */
export function targetTest(target: Target) {
  return (title: string, body: () => Promise<void>, timeout = 30_000): void => {
    test.skipIf(!target.enabled)(title, body, timeout);
  };
}

/** The Redis at REDIS_URL (127.0.0.1:6379 by default). */
export const oneRedis: Target = {
  name: "redis",
  enabled: hasRedis,
  url: () => REDIS_URL,
  client: () => new Redis(REDIS_URL),
  prefix: (label) => testPrefix(label),
  clean: cleanPrefix,
};

/**
 * A local cluster of 3 masters with a replica each, started before the file's tests and stopped
 * after them (call it at the top level of a test file).
 */
export function localCluster(): Target & { cluster(): RedisCluster } {
  const enabled = clusterEnabled();
  let open: OpenCluster | undefined;
  beforeAll(async () => {
    if (enabled) open = await openCluster();
  }, 60_000);
  afterAll(() => closeCluster(open ?? {}));
  const started = (): OpenCluster => {
    if (!open) throw new Error("the local cluster is not started");
    return open;
  };
  return {
    name: "redis cluster",
    enabled,
    url: () => started().cluster.url,
    client: () => newRedis(started().cluster.url),
    prefix(label, queues = []) {
      const { masters } = started();
      const want = Math.min(queues.length, masters.length);
      for (let tries = 0; tries < 10_000; tries++) {
        const prefix = testPrefix(label);
        const spread = new Set(queues.map((q) => masterFor(masters, `{${prefix}:${q}}`).port)).size;
        if (spread >= want) return prefix;
      }
      throw new Error(`found no prefix that spreads ${queues.join(", ")} over ${want} masters`);
    },
    clean: (prefix) => cleanClusterPrefix(started().raw, prefix),
    cluster: () => started().cluster,
  };
}
