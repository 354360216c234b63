/**
 * Redis Cluster: the URL that names one, the ioredis options of a Cluster client, the slot of a key,
 * and the guard against a URL that names the wrong kind of server. connection.ts makes the clients;
 * which key lands in which slot is written in keys.ts.
 */
import type { Cluster, ClusterOptions, Redis, RedisOptions } from "ioredis";
import { ConfigError } from "../errors.ts";

export interface ClusterNodeAddress {
  host: string;
  port: number;
}

/** What a `redis+cluster://` URL says: the nodes to start from (the client finds the others), TLS, credentials. */
export interface ClusterTarget {
  nodes: ClusterNodeAddress[];
  tls: boolean;
  username?: string;
  password?: string;
}

const CLUSTER_SCHEME = /^rediss?\+cluster:\/\//i;
const CLUSTER_URL = /^(rediss?)\+cluster:\/\/(?:([^@/?#]*)@)?([^/?#]*)(\/[^?#]*)?$/i;

export const isClusterUrl = (url: string): boolean => CLUSTER_SCHEME.test(url);

/** A client of a Redis Cluster (ioredis' Cluster), rather than of a single Redis. */
export const isCluster = (client: Redis | Cluster): client is Cluster => client.isCluster;

/**
 * The nodes and credentials of `redis+cluster://[user:password@]host:port,host:port` (TLS with
 * `rediss+cluster://`); undefined for any other URL. Throws a ConfigError for a cluster URL it cannot
 * read, without the URL itself in the message: it may hold a password.
 */
export function parseClusterUrl(url: string): ClusterTarget | undefined {
  if (!isClusterUrl(url)) return undefined;
  const m = CLUSTER_URL.exec(url);
  if (!m) {
    throw new ConfigError("a Redis Cluster URL is redis+cluster://[user:password@]host:port,host:port " +
      "(rediss+cluster:// for TLS), with no query");
  }
  const [, scheme = "", auth, hosts = "", path = ""] = m;
  if (!/^\/?0?$/.test(path)) throw new ConfigError(`a Redis Cluster has only database 0, not "${path.slice(1)}"`);
  const nodes = hosts.split(",").map(nodeOf);
  const target: ClusterTarget = { nodes, tls: scheme.toLowerCase() === "rediss" };
  if (auth) {
    const colon = auth.indexOf(":");
    const user = decodeURIComponent(colon < 0 ? auth : auth.slice(0, colon));
    if (user) target.username = user;
    if (colon >= 0) target.password = decodeURIComponent(auth.slice(colon + 1));
  }
  return target;
}

function nodeOf(text: string): ClusterNodeAddress {
  const m = /^(\[[0-9a-fA-F:.]+\]|[^:[\]]+)(?::(\d+))?$/.exec(text.trim());
  const port = Number(m?.[2] ?? 6379);
  if (!m || !(port > 0 && port < 65536)) {
    throw new ConfigError(`"${text}" in a Redis Cluster URL is not host:port (the nodes are separated by commas)`);
  }
  return { host: m[1]!.replace(/^\[(.*)\]$/, "$1"), port };
}

/**
 * `base`'s scheme and credentials with `nodes` as a cluster URL: what `configure({ cluster })` makes
 * redisUrl, so that pool threads and child processes, which get the URL, reach the same cluster.
 */
export function clusterUrl(base: string, nodes: readonly ClusterNodeAddress[]): string {
  if (nodes.length === 0) throw new ConfigError("cluster.nodes: give at least one node of the Redis Cluster");
  const m = /^(rediss?)(?:\+cluster)?:\/\/(?:([^@/?#]*)@)?/i.exec(base);
  const scheme = (m?.[1] ?? "redis").toLowerCase();
  const hosts = nodes.map((n) => {
    if (!n.host || !Number.isInteger(n.port) || n.port <= 0 || n.port >= 65536) {
      throw new ConfigError(`cluster.nodes: ${JSON.stringify(n)} is not { host, port }`);
    }
    return `${n.host.includes(":") ? `[${n.host}]` : n.host}:${n.port}`;
  });
  return `${scheme}+cluster://${m?.[2] ? `${m[2]}@` : ""}${hosts.join(",")}`;
}

/**
 * ioredis' Cluster options for the options dray gives a single client. Commands wait for the
 * cluster as they wait for a single Redis: a patient client (maxRetriesPerRequest null: workers)
 * looks for the cluster forever, any other gives up after a few tries so that its callers hear
 * of it, and {@link reviveCluster} lets it try again later. Failovers (a replica taking over a
 * master's slots takes a few node timeouts) are waited out by retrying the commands they refuse.
 */
export function clusterOptions(target: ClusterTarget, options: RedisOptions, tls: RedisOptions["tls"]): ClusterOptions {
  const { retryStrategy: _single, enableAutoPipelining, lazyConnect, ...node } = options;
  const patient = node.maxRetriesPerRequest === null;
  const delay = (times: number) => Math.min(50 * 2 ** Math.min(times, 6), 2_000);
  return {
    redisOptions: {
      ...node,
      ...(target.username !== undefined ? { username: target.username } : {}),
      ...(target.password !== undefined ? { password: target.password } : {}),
      ...(target.tls ? { tls: node.tls ?? tls ?? {} } : {}),
    },
    clusterRetryStrategy: (times) => (patient || times <= 3 ? delay(times) : null),
    retryDelayOnFailover: 200,
    retryDelayOnClusterDown: 300,
    retryDelayOnTryAgain: 200,
    // While a slot moves (a reshard), a script whose keys are not all on one side gets TRYAGAIN until
    // the last key has moved, and a command bounces ASK -> TRYAGAIN -> MOVED -> ASK: ioredis' default
    // 16 redirections last about a second of that (test/cluster_reshard.test.ts), 64 about four.
    maxRedirections: 64,
    ...(enableAutoPipelining ? { enableAutoPipelining } : {}),
    ...(lazyConnect ? { lazyConnect } : {}),
  };
}

/**
 * A Cluster client whose retry strategy gave up ends for good in ioredis: every later command fails
 * at once. A sender lives on after an outage, so an end that no quit or disconnect asked for is
 * followed by a new attempt a second later (the commands made meanwhile fail, as they should).
 */
export function reviveCluster(cluster: Cluster): void {
  let closed = false;
  const { quit, disconnect } = cluster;
  cluster.quit = function (this: Cluster, ...args: Parameters<Cluster["quit"]>) {
    closed = true;
    return quit.apply(this, args);
  } as Cluster["quit"];
  cluster.disconnect = function (this: Cluster, reconnect = false) {
    if (!reconnect) closed = true;
    return disconnect.call(this, reconnect);
  };
  cluster.on("end", () => {
    if (closed) return;
    const again = setTimeout(() => {
      if (!closed && cluster.status === "end") cluster.connect().catch(() => undefined);
    }, 1_000);
    (again as { unref?: () => void }).unref?.();
  });
}

/**
 * The options of a sharded subscriber (ioredis' `shardedSubscribers`), which must follow its
 * channels' slots to another master. When a slot moves (a reshard), its old master drops the
 * SSUBSCRIBE of its channels, and ioredis subscribes again on the new one only when something makes
 * it reload the slots: for a client that runs nothing but SSUBSCRIBE, never, and the result waiters
 * would hear nothing more. So it reloads them every 2 s (one CLUSTER SLOTS).
 */
export const shardedOptions = { shardedSubscribers: true, slotsRefreshInterval: 2_000 } satisfies ClusterOptions;

/**
 * An SSUBSCRIBE that meets MOVED (the slot moved since the subscriber last loaded the slots) is never
 * answered in ioredis 5.11: DataHandler drops the command, the client reloads the slots and subscribes
 * again on the new master. It counts as done once the subscribers are ready again, which is when that
 * new SSUBSCRIBE has gone out; a caller awaiting it (a result waiter) would wait forever otherwise.
 */
export function answerMovedSsubscribe(cluster: Cluster): void {
  type Ssubscribe = (...channels: string[]) => Promise<unknown>;
  const ssubscribe = cluster.ssubscribe as Ssubscribe;
  (cluster as unknown as { ssubscribe: Ssubscribe }).ssubscribe = function (this: Cluster, ...channels: string[]) {
    return new Promise((resolve, reject) => {
      const ready = () => resolve(channels.length);
      cluster.once("subscribersReady", ready);
      ssubscribe.apply(this, channels).then(resolve, reject).finally(() => cluster.off("subscribersReady", ready));
    });
  };
}

/**
 * Makes a client fail at once, with `refused(error)` telling why, when its URL names the wrong
 * kind of server: retrying cannot help. A cluster URL at a Redis without cluster support fails to
 * load the slots ("ERR This instance has cluster support disabled"); a plain URL at a cluster node
 * would work for the node's own slots and get MOVED for the others, so the INFO of ioredis' ready
 * check (`cluster_enabled:1`) stops it before its first command. ioredis hands that INFO to its
 * connector's `check`, a private method: without it, MOVED errors say the same (execPipeline).
 */
export function guardTopology(client: Redis | Cluster, refused: (error: ConfigError) => void): void {
  if (isCluster(client)) {
    client.on("node error", (error: Error, node: string) => {
      if (!/cluster support disabled/i.test(error.message)) return;
      refused(new ConfigError(`the Redis at ${node} is not a cluster node (${error.message}), but the URL is redis+cluster://: ` +
        "give a single Redis as redis://host:port (rediss:// for TLS)", { cause: error }));
      client.disconnect();
    });
    return;
  }
  const connector = (client as unknown as { connector?: { check?: (info: Record<string, string>) => boolean } }).connector;
  const check = connector?.check;
  if (!connector || typeof check !== "function") return;
  connector.check = function (info: Record<string, string>) {
    if (info?.cluster_enabled !== "1") return check.call(this, info);
    refused(new ConfigError("the Redis at this URL is a node of a Redis Cluster, but the URL is redis://: give the cluster as " +
      "redis+cluster://host:port,host:port (rediss+cluster:// for TLS), or configure({ cluster: { nodes } })"));
    client.disconnect();
    return false;
  };
}

/** `error` is a MOVED or ASK redirection: a plain client at a cluster node (see guardTopology). */
export function movedHint(error: Error): string {
  return /^(MOVED|ASK) /.test(error.message)
    ? " (a node of a Redis Cluster answered: give the cluster as redis+cluster://host:port,host:port)"
    : "";
}

const SLOTS = 16384;
let crcTable: Uint16Array | undefined;
const encoder = new TextEncoder();

/**
 * The cluster slot of `key`, as Redis computes it: CRC16 (XMODEM) of the key's UTF-8 bytes, or of
 * its hash tag (what is between the first `{` and the next `}`, when not empty), modulo 16384.
 * Written here rather than taken from ioredis' cluster-key-slot, which dray does not depend on itself.
 */
export function keySlot(key: string): number {
  const open = key.indexOf("{");
  if (open >= 0) {
    const close = key.indexOf("}", open + 1);
    if (close > open + 1) key = key.slice(open + 1, close);
  }
  crcTable ??= makeCrcTable();
  let crc = 0;
  for (const byte of encoder.encode(key)) crc = ((crc << 8) & 0xffff) ^ crcTable[((crc >> 8) ^ byte) & 0xff]!;
  return crc % SLOTS;
}

function makeCrcTable(): Uint16Array {
  const table = new Uint16Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i << 8;
    for (let bit = 0; bit < 8; bit++) c = c & 0x8000 ? ((c << 1) ^ 0x1021) & 0xffff : (c << 1) & 0xffff;
    table[i] = c;
  }
  return table;
}
