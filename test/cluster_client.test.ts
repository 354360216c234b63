/**
 * The client layer's Redis Cluster parts without a cluster: the URL, the settings that make one, the
 * slot of a key, the options given to ioredis' Cluster, and how bySlotGroup splits a batch (one
 * pipeline on a single Redis, one per node on a Cluster, read from a stand-in of ioredis' Cluster).
 * A cluster URL at the single test Redis must fail at once with a message that names the fix.
 * The same against a real cluster: test/cluster_broker.test.ts.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { createRequire } from "node:module";
import { createServer, type AddressInfo } from "node:net";
import { clusterOptions, clusterUrl, keySlot, parseClusterUrl } from "../src/broker/cluster.ts";
import { bySlotGroup, newRedis, type RedisClient } from "../src/broker/connection.ts";
import type { Reply } from "../src/broker/redirects.ts";
import { RedisBroker } from "../src/broker/redis.ts";
import { configure, settings, type Settings } from "../src/config.ts";
import { ConfigError } from "../src/errors.ts";
import { fixture, REDIS_URL, rejection, sleep, spawnWorker, until } from "./helpers.ts";
import { redisTest } from "./redis_test.ts";

/** ioredis' own slot function (a dependency of ioredis, untyped), to compare with. */
const calculateSlot = createRequire(import.meta.url)("cluster-key-slot") as (key: string) => number;

describe("a cluster URL", () => {
  test("names its nodes, TLS and credentials; any other URL is not one", () => {
    expect(parseClusterUrl("redis+cluster://10.0.0.1:7000,10.0.0.2:7001")).toEqual({
      nodes: [{ host: "10.0.0.1", port: 7000 }, { host: "10.0.0.2", port: 7001 }], tls: false,
    });
    expect(parseClusterUrl("rediss+cluster://app:p%40ss@db.example:6380,[::1]:7000,other/0")).toEqual({
      nodes: [{ host: "db.example", port: 6380 }, { host: "::1", port: 7000 }, { host: "other", port: 6379 }],
      tls: true, username: "app", password: "p@ss",
    });
    expect(parseClusterUrl("REDIS+CLUSTER://:secret@h:1")).toEqual({ nodes: [{ host: "h", port: 1 }], tls: false, password: "secret" });
    expect(parseClusterUrl("redis://127.0.0.1:6379")).toBeUndefined();
    expect(parseClusterUrl("rediss://h:1")).toBeUndefined();
  });

  test("that cannot be read is a ConfigError that does not repeat the password", () => {
    for (const url of ["redis+cluster://u:hunter2@h:99999", "redis+cluster://u:hunter2@h:1/3", "redis+cluster://u:hunter2@h:1?x=1",
      "redis+cluster://u:hunter2@", "redis+cluster://u:hunter2@a:1,,b:2"]) {
      const error = (() => {
        try {
          parseClusterUrl(url);
        } catch (e) {
          return e;
        }
      })();
      expect(error).toBeInstanceOf(ConfigError);
      expect((error as Error).message).not.toContain("hunter2");
    }
  });

  test("is what configure({ cluster }) makes redisUrl, keeping its scheme and credentials", () => {
    const nodes = [{ host: "a", port: 7000 }, { host: "::1", port: 7001 }];
    expect(clusterUrl("rediss://u:pw@old:6379/0", nodes)).toBe("rediss+cluster://u:pw@a:7000,[::1]:7001");
    expect(clusterUrl("redis://127.0.0.1:6379", nodes)).toBe("redis+cluster://a:7000,[::1]:7001");
    expect(() => clusterUrl("redis://h", [])).toThrow(ConfigError);
    expect(() => clusterUrl("redis://h", [{ host: "a", port: 0 }])).toThrow(ConfigError);
  });
});

describe("settings", () => {
  let saved: Settings;
  afterEach(() => configure(saved));

  test("given cluster nodes, when configured, then redisUrl is the cluster URL that threads and children get", () => {
    saved = { ...settings() };
    configure({ redisUrl: "redis://:pw@x:6379", cluster: { nodes: [{ host: "n1", port: 7000 }, { host: "n2", port: 7001 }] } });
    expect(settings().redisUrl).toBe("redis+cluster://:pw@n1:7000,n2:7001");
    configure({ cluster: undefined, redisUrl: "redis://x:6379" });
    expect(settings().redisUrl).toBe("redis://x:6379");
  });

  test("a prefix with { or } is refused: it would move the hash tag of every key", () => {
    saved = { ...settings() };
    expect(() => configure({ prefix: "app{1}" })).toThrow(ConfigError);
    expect(() => new RedisBroker({ url: REDIS_URL, prefix: "a}b" })).toThrow(ConfigError);
    expect(settings().prefix).toBe(saved.prefix);
  });
});

describe("the slot of a key", () => {
  test("is Redis's: CRC16 of the key or its hash tag, as ioredis' cluster-key-slot computes it", () => {
    // given slots that Redis 7.0's CLUSTER KEYSLOT answered
    const redis: Record<string, number> = { "": 0, foo: 12182, "123456789": 0x31c3, "a{b": 13340, "}{": 12793, "{{x}}": 11068 };
    for (const [key, slot] of Object.entries(redis)) expect([key, keySlot(key)]).toEqual([key, slot]);
    expect(keySlot("{user1000}.following")).toBe(keySlot("user1000"));
    // An empty tag is no tag: the whole key counts. cluster-key-slot 1.1.1 says 4015 here (it takes
    // the second tag); dray's keys hold no "{}", and keySlot follows Redis.
    expect(keySlot("foo{}{bar}")).toBe(8363);
    const keys = ["{dray:q}:stream:0", "{dray:history}:m:1", "dray:actors", "ünïcødé{ключ}", "a{b", "}{", "{{x}}", "🙂"];
    for (let i = 0; i < 500; i++) keys.push(`dt-${crypto.randomUUID()}:${i}`);
    for (const key of keys) expect([key, keySlot(key)]).toEqual([key, calculateSlot(key)]);
  });
});

describe("the Cluster client's options", () => {
  const base = { connectionName: "dray", retryStrategy: () => 1, lazyConnect: false, enableAutoPipelining: true };

  test("carry the node options, credentials and TLS, and the cluster-wide ones at the top", () => {
    const o = clusterOptions({ nodes: [], tls: true, username: "u", password: "p" }, { ...base, maxRetriesPerRequest: 2 }, { ca: "CA" });
    expect(o.redisOptions).toEqual({ connectionName: "dray", maxRetriesPerRequest: 2, username: "u", password: "p", tls: { ca: "CA" } });
    expect(o.enableAutoPipelining).toBe(true);
    expect(o.retryDelayOnFailover).toBeGreaterThan(0);
    expect(o.retryDelayOnClusterDown).toBeGreaterThan(0);
    expect(o.retryDelayOnTryAgain).toBeGreaterThan(0);
    expect(clusterOptions({ nodes: [], tls: true }, {}, undefined).redisOptions?.tls).toEqual({});
    expect(clusterOptions({ nodes: [], tls: false }, {}, { ca: "CA" }).redisOptions?.tls).toBeUndefined();
  });

  test("a patient client looks for the cluster forever; another gives up after a few tries", () => {
    const patient = clusterOptions({ nodes: [], tls: false }, { ...base, maxRetriesPerRequest: null }, undefined);
    const eager = clusterOptions({ nodes: [], tls: false }, { ...base, maxRetriesPerRequest: 2 }, undefined);
    for (const times of [1, 3, 4, 100]) expect(patient.clusterRetryStrategy!(times)).toBeGreaterThan(0);
    expect(eager.clusterRetryStrategy!(3)).toBeGreaterThan(0);
    expect(eager.clusterRetryStrategy!(4)).toBeNull();
  });
});

/** Pipelines made and what went into each, as "name key". */
class FakePipeline {
  commands: string[] = [];
  get length(): number {
    return this.commands.length;
  }
  get(key: string) {
    this.commands.push(`get ${key}`);
    return this;
  }
  time() {
    this.commands.push("time");
    return this;
  }
  async exec(): Promise<Reply[]> {
    return this.commands.map((c) => [null, c]);
  }
}

/** What bySlotGroup reads of a client: isCluster, a Cluster's slot table, and pipeline(). */
function fakeClient(cluster: boolean, nodeOfSlot: (slot: number) => string | undefined) {
  const pipelines: FakePipeline[] = [];
  const slots = Array.from({ length: 16384 }, (_, slot) => {
    const node = nodeOfSlot(slot);
    return node ? [node, `${node}-replica`] : undefined;
  });
  const client = { isCluster: cluster, slots, pipeline: () => pipelines[pipelines.push(new FakePipeline()) - 1] };
  return { client: client as unknown as RedisClient, pipelines };
}

describe("bySlotGroup", () => {
  const keys = ["{p:a}:x", "{p:b}:x", "{p:c}:x", "{p:a}:y", "p:queues"];
  const owner = (slot: number) => (slot < 5461 ? "m1" : slot < 10923 ? "m2" : "m3");
  const nodeOf = (key: string) => owner(keySlot(key));

  test("given a single Redis, when it runs a batch, then it is one pipeline in item order, keyless items included", async () => {
    const { client, pipelines } = fakeClient(false, () => undefined);
    const items = [...keys, undefined];
    const replies = await bySlotGroup(client, items, (k) => k, (pipe, k) => void (k ? pipe.get(k).get(k) : pipe.time()));
    expect(pipelines.map((p) => p.commands)).toEqual([items.flatMap((k) => (k ? [`get ${k}`, `get ${k}`] : ["time"]))]);
    expect(replies).toEqual(items.map((k) => (k ? [[null, `get ${k}`], [null, `get ${k}`]] : [[null, "time"]])));
  });

  test("given a Cluster, when it runs a batch, then one pipeline per node, and each item's replies in input order", async () => {
    const { client, pipelines } = fakeClient(true, owner);
    expect(new Set(keys.map(nodeOf)).size).toBeGreaterThan(1); // the keys span nodes
    const items = [undefined, ...keys];
    const replies = await bySlotGroup(client, items, (k) => k, (pipe, k) => void (k ? pipe.get(k) : pipe.time()));
    const nodes = [...new Set(keys.map(nodeOf))];
    expect(pipelines).toHaveLength(nodes.length);
    for (const pipe of pipelines) {
      const on = new Set(pipe.commands.filter((c) => c !== "time").map((c) => nodeOf(c.slice(4))));
      expect(on.size).toBe(1); // each pipeline is one node's
    }
    expect(pipelines.flatMap((p) => p.commands).filter((c) => c === "time")).toHaveLength(1); // TIME went with one group
    expect(replies).toEqual(items.map((k) => [[null, k ? `get ${k}` : "time"]]));
  });

  test("given a Cluster whose slots are not loaded yet, then each slot is a group: always a valid pipeline", async () => {
    const { client, pipelines } = fakeClient(true, () => undefined);
    await bySlotGroup(client, keys, (k) => k, (pipe, k) => void pipe.get(k));
    expect(pipelines).toHaveLength(new Set(keys.map(keySlot)).size);
  });
});

/** A port nothing listens on. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe("a Cluster client that cannot reach the cluster", () => {
  test("given a sender's client, when no node answers, then its commands fail soon, and it tries again later until closed", async () => {
    const client = newRedis(`redis+cluster://127.0.0.1:${await closedPort()}`, { maxRetriesPerRequest: 2 });
    client.on("error", () => undefined);
    const statuses: string[] = [];
    for (const status of ["end", "connecting"]) client.on(status, () => statuses.push(status));
    try {
      // when
      const started = Date.now();
      const error = await rejection(client.get("x"));
      // then
      expect(error.message).toMatch(/None of startup nodes is available/);
      expect(Date.now() - started).toBeLessThan(5_000);
      await until(() => statuses.lastIndexOf("connecting") > statuses.indexOf("end") || undefined, "a new attempt", 5_000);
    } finally {
      client.disconnect();
    }
    // and once closed, it tries no more
    const closedAt = statuses.length;
    await sleep(2_500);
    expect(statuses.slice(closedAt).filter((s) => s === "connecting")).toEqual([]);
  }, 15_000);
});

describe("a URL naming the wrong kind of server", () => {
  redisTest("a cluster URL at a single Redis fails its commands at once with a ConfigError naming the fix", async () => {
    const url = new URL(REDIS_URL);
    const client = newRedis(`redis+cluster://${url.hostname}:${url.port || 6379}`, { maxRetriesPerRequest: null });
    const errors: Error[] = [];
    client.on("error", (e: Error) => errors.push(e));
    try {
      const started = Date.now();
      const error = await rejection(client.get("x"));
      expect(error).toBeInstanceOf(ConfigError);
      expect(error.message).toContain("cluster support disabled");
      expect(error.message).toContain("redis://");
      expect(Date.now() - started).toBeLessThan(5_000); // patient, yet it did not retry: retrying cannot help
      expect(errors.some((e) => e instanceof ConfigError)).toBe(true);
    } finally {
      client.disconnect();
    }
  });

  redisTest("a worker on a cluster URL at a single Redis exits at start with that message", async () => {
    const url = new URL(REDIS_URL);
    const worker = spawnWorker([fixture("core_app.ts")], [], { DRAY_PREFIX: "dt-wrong", REDIS_URL: `redis+cluster://${url.hostname}:${url.port || 6379}` });
    expect(await worker.exited).not.toBe(0);
    expect(worker.output()).toContain("cluster support disabled");
  });

  redisTest("a broker on a cluster URL at a single Redis: the sender hears why", async () => {
    const url = new URL(REDIS_URL);
    const broker = new RedisBroker({ url: `redis+cluster://${url.hostname}:${url.port || 6379}`, prefix: "dt-wrong" });
    try {
      const error = await rejection(broker.queues());
      expect(error).toBeInstanceOf(ConfigError);
    } finally {
      await broker.close();
    }
  });
});
