import type { ChainableCommander, Cluster, Redis, RedisOptions } from "ioredis";
import type { Logger } from "pino";
import { BrokerError, ConfigError, MalformedMessageError } from "../errors.ts";
import { settings } from "../config.ts";
import { lazy } from "../runtime/mod.ts";
import { quietIoredisTracing } from "../runtime/tracing.ts";
import { decodeMessage, type Delivery, type MalformedDelivery } from "../message.ts";
import { ACQUIRE, ENQUEUE, READ, REQUEUE, SETTLE } from "./scripts.ts";
import { ACK, PRUNE, RENEW } from "./lease_scripts.ts";
import { FIND, RUNNING, STATS } from "./browse_scripts.ts";
import { resendRedirected, type Reply } from "./redirects.ts";
import {
  answerMovedSsubscribe, clusterOptions, guardTopology, isCluster, keySlot, movedHint, parseClusterUrl, reviveCluster,
  shardedOptions,
} from "./cluster.ts";

/** A stream entry as Redis returns it; fields are null when the entry was deleted while pending. */
export type Entry = [string, string[] | null];

/**
 * A client of dray's Redis: one server (ioredis' Redis) or a Redis Cluster (ioredis' Cluster, for a
 * `redis+cluster://` URL). dray uses only what both do: commands, scripts whose keys share a slot,
 * and pipelines whose keys share a node ({@link bySlotGroup} makes them so).
 */
export type RedisClient = Redis | Cluster;

/** dray's scripts (see scripts.ts, lease_scripts.ts, browse_scripts.ts and history.ts), as commands. */
export interface ScriptCommands {
  drayRead(...args: (string | number)[]): Promise<unknown[]>;
  drayEnqueue(...args: (string | number)[]): Promise<number>;
  draySettle(...args: (string | number)[]): Promise<number>;
  drayRequeue(...args: (string | number)[]): Promise<number>;
  drayAcquire(...args: (string | number)[]): Promise<number>;
  drayAck(...args: (string | number)[]): Promise<string[]>;
  drayRenew(...args: (string | number)[]): Promise<string[]>;
  drayPrune(...args: (string | number)[]): Promise<number>;
  /**
   * HISTORY_ADD (history.ts): the key count first, as the batch decides it. Keys and arguments go as
   * arrays (ioredis flattens them), since spreading a batch of 100,000 would overflow the stack.
   */
  drayHistoryAdd(keyCount: number, keys: string[], args: (string | number)[]): Promise<number>;
  /** STATS, RUNNING and FIND (browse_scripts.ts): read-only. */
  drayStats(...args: (string | number)[]): Promise<number[]>;
  drayRunning(...args: (string | number)[]): Promise<[number, unknown[][]]>;
  drayFind(...args: (string | number)[]): Promise<unknown[] | null>;
}

/** The command connection with dray's scripts defined on it. */
export type Scripted = RedisClient & ScriptCommands;

/** A pipeline of a {@link Scripted} client: the scripts are on it too (their replies come with exec). */
export type ScriptedPipeline = ChainableCommander & ScriptCommands;

/** Defines the broker's scripts of a fixed key count on `redis` (ioredis sends each by its SHA, loading it on first use). */
export function defineScripts(redis: RedisClient): Scripted {
  const scripts: Array<[string, number, string]> = [
    ["drayRead", 3, READ], ["drayEnqueue", 5, ENQUEUE], ["draySettle", 6, SETTLE], ["drayRequeue", 2, REQUEUE],
    ["drayAcquire", 1, ACQUIRE], ["drayAck", 3, ACK], ["drayRenew", 2, RENEW], ["drayPrune", 1, PRUNE],
    ["drayStats", 3, STATS], ["drayRunning", 2, RUNNING], ["drayFind", 2, FIND],
  ];
  for (const [name, numberOfKeys, lua] of scripts) redis.defineCommand(name, { numberOfKeys, lua });
  return redis as Scripted;
}

export interface ConnectOptions {
  url: string;
  /** Wait for Redis forever (workers) rather than failing a command after a few reconnect attempts. */
  patient?: boolean;
  /**
   * Send the commands issued in one tick as one pipeline (ioredis' enableAutoPipelining): a reader
   * that asks for many things at once (the dashboard's refresh) makes one round trip. Off for workers,
   * whose hot path batches by hand.
   */
  autoPipelining?: boolean;
  /**
   * A subscriber: on a Redis Cluster it takes sharded channels too (SSUBSCRIBE, with ioredis'
   * `shardedSubscribers`: one connection per master, following the slots). Ignored on a single Redis.
   */
  sharded?: boolean;
  logger?: Logger;
}

export function fieldsOf(fields: string[] | null): Record<string, string> {
  const raw: Record<string, string> = {};
  for (let i = 0; fields && i + 1 < fields.length; i += 2) raw[fields[i]!] = fields[i + 1]!;
  return raw;
}

/** Turns stream entries into deliveries; what cannot be decoded is handed over as malformed. */
export function decodeEntries(out: Array<Delivery | MalformedDelivery>, queue: string, stream: string, entries: Entry[]): void {
  for (const [entryId, fields] of entries) {
    if (!fields) continue; // deleted while pending: nothing left to run
    const raw = fieldsOf(fields);
    const ref = { stream, entryId };
    try {
      const message = decodeMessage(raw.m, queue);
      const retries = Number(raw.r ?? 0) || 0;
      // 'l' comes only with a reclaimed entry (the READ script adds it): claims lost on it so far.
      const lost = Number(raw.l ?? 0) || 0;
      out.push(lost > 0 ? { message, retries, lost, ref } : { message, retries, ref });
    } catch (error) {
      const e = error instanceof MalformedMessageError ? error : new MalformedMessageError(String(error));
      out.push({ malformed: true, raw, error: e, ref, queue });
    }
  }
}

/**
 * ioredis, loaded by the first client made in this thread or process. Every pool thread and child
 * imports dray's entry through the app modules, and most of them never talk to Redis: their handlers
 * neither send nor touch `ctx.redis`. Loaded eagerly, ioredis held 3 MB more in each Bun pool
 * thread, 2-7 MB more peak RSS in the bench's worker at one thread. The first client in a thread pays
 * the load instead, about 50 ms once (bench/README.md, "Lazy ioredis").
 */
const ioredis = lazy<typeof import("ioredis")>("ioredis");

/**
 * Why a client's commands fail, when retrying cannot help (a refused certificate, a URL naming the
 * wrong kind of server): what its failed commands reject with instead of ioredis' own errors.
 */
const refusals = new WeakMap<RedisClient, Error>();

/**
 * A client of `url`; the one way dray makes one, so that ioredis loads only when needed, every TLS
 * client trusts what settings().tls says (ioredis alone would use Node's public CAs), and a
 * `redis+cluster://` URL makes a Cluster client (see cluster.ts for its options). A URL that names
 * the wrong kind of server (a cluster URL at a single Redis, or the reverse) fails the client's
 * commands with a ConfigError that says which URL to give.
 */
export function newRedis(url: string, options: RedisOptions = {}, sharded = false): RedisClient {
  quietIoredisTracing();
  const target = parseClusterUrl(url);
  const tls = (target ? target.tls : /^rediss:/i.test(url)) ? settings().tls : undefined;
  let client: RedisClient;
  if (target) {
    const cluster = new (ioredis().Cluster)(target.nodes, {
      ...clusterOptions(target, options, tls), ...(sharded ? shardedOptions : {}),
    });
    reviveCluster(cluster);
    if (sharded) answerMovedSsubscribe(cluster);
    client = cluster;
  } else {
    client = new (ioredis().Redis)(url, tls && !options.tls ? { ...options, tls } : options);
  }
  guardTopology(client, (error) => {
    refusals.set(client, error);
    if (client.listenerCount("error") > 0) client.emit("error", error);
  });
  explainFailures(client, () => refusals.get(client));
  return client;
}

/**
 * Resolves once a Cluster client is ready (a single Redis: at once). ioredis fails every pipeline
 * waiting for a Cluster's first connection when one attempt to reach it fails ("None of startup nodes
 * is available"), however long the client keeps trying: a worker started while no node answers
 * would fail its start where, on one Redis, its commands wait. It waits here instead, while the
 * client's error handler logs the failed attempts. A refusal that waiting cannot cure (the URL names
 * a single Redis) rejects at once.
 */
export function untilConnected(client: RedisClient): Promise<void> {
  if (!isCluster(client) || client.status === "ready") return Promise.resolve();
  const refused = refusals.get(client);
  if (refused instanceof ConfigError) return Promise.reject(refused);
  return new Promise((resolve, reject) => {
    const settle = (error?: unknown) => {
      client.off("ready", settle);
      client.off("error", onError);
      if (error) reject(error);
      else resolve();
    };
    const onError = (error: unknown) => error instanceof ConfigError && settle(error);
    client.on("ready", settle);
    client.on("error", onError);
  });
}

/**
 * A plain client of one node ("host:port", as `cluster.slots` names it) of `cluster`, with its
 * credentials and TLS: for a blocking read, which must not hold up the Cluster client's connection
 * (see cluster_blocker.ts). It does not reconnect: its commands fail when it closes, and its user
 * makes another, to whichever node then serves the slot.
 */
export function nodeClient(cluster: Cluster, node: string, name: string): Redis {
  const colon = node.lastIndexOf(":");
  return new (ioredis().Redis)({
    ...cluster.options.redisOptions, host: node.slice(0, colon), port: Number(node.slice(colon + 1)),
    connectionName: name, retryStrategy: () => null, lazyConnect: false,
  });
}

export function connect(options: ConnectOptions, name: string): RedisClient {
  const redisOptions: RedisOptions = {
    connectionName: name,
    maxRetriesPerRequest: options.patient ? null : 2,
    // Reconnect with a capped backoff; a worker keeps trying for as long as it lives.
    retryStrategy: (times) => Math.min(50 * 2 ** Math.min(times, 6), 2_000),
    lazyConnect: false,
    ...(options.autoPipelining ? { enableAutoPipelining: true } : {}),
  };
  const redis = newRedis(options.url, redisOptions, options.sharded);
  let lastLog = 0;
  redis.on("ready", () => {
    if (!(refusals.get(redis) instanceof ConfigError)) refusals.delete(redis);
  });
  redis.on("error", (error: Error) => {
    const certificate = certificateRefused(error, options.url);
    if (certificate) refusals.set(redis, certificate);
    if (error instanceof ConfigError) {
      options.logger?.error({ connection: name }, error.message); // once: the client gives up
      return;
    }
    // ioredis emits an error per failed reconnect attempt; one line every 5 s is enough.
    if (Date.now() - lastLog > 5_000) {
      lastLog = Date.now();
      const refused = refusals.get(redis);
      if (refused) options.logger?.error({ err: error, connection: name }, `${refused.message}; retrying`);
      else options.logger?.warn({ err: error, connection: name }, "redis connection error; reconnecting");
    }
  });
  return redis;
}

/**
 * A refused server certificate, as an error that says what to do. Retrying does not help (the same
 * certificate comes back), so the hint matters more than the retries: a private CA is the usual cause.
 */
function certificateRefused(thrown: Error, url: string): BrokerError | undefined {
  // A Cluster client reports the last node's error inside its own.
  const error = (thrown as { lastNodeError?: Error }).lastNodeError ?? thrown;
  const code = String((error as { code?: unknown }).code ?? "");
  if (!/CERT|SELF_SIGNED|UNABLE_TO_VERIFY|UNABLE_TO_GET_ISSUER/.test(code)) return undefined;
  let host = "";
  try {
    host = ` at ${new URL(url).host}`; // not the URL itself: it may hold a password
  } catch {
    // a URL ioredis took but URL does not: the message goes without the host
  }
  return new BrokerError(`the TLS certificate of redis${host} is not trusted (${error.message}, ${code}); ` +
    "if a private CA signed it, give that CA with DRAY_REDIS_CA=<ca.pem> or configure({ tls: { ca } })", { cause: error });
}

/**
 * Commands that gave up waiting for a connection fail with ioredis's own errors ("Reached the max
 * retries per request limit", "Connection is closed."), which do not say why it could not connect.
 * When the reason is one of {@link refusals} (a refused certificate, the wrong kind of server), they
 * fail with that instead, so the CLI and senders report the cause, not the retry count. ioredis
 * rejects them all in its `flushQueue` (Redis and Cluster alike), a private method: if a later
 * ioredis has none, its own errors stand.
 *
 * A Cluster's pipelines wait in another private method, `delayUntilReady`, until it has loaded the
 * slots, and one made after the client ended would wait forever (ioredis 5.11 never calls it back):
 * there it fails at once instead, with the same reason.
 */
function explainFailures(redis: RedisClient, reason: () => Error | undefined): void {
  const client = redis as unknown as {
    flushQueue?: (error: Error, options?: unknown) => void;
    delayUntilReady?: (callback: (error?: Error) => void) => void;
  };
  const flush = client.flushQueue;
  if (typeof flush === "function") {
    client.flushQueue = function (this: unknown, error: Error, options?: unknown) {
      flush.call(this, reason() ?? error, options);
    };
  }
  const delay = client.delayUntilReady;
  if (!isCluster(redis) || typeof delay !== "function") return;
  client.delayUntilReady = function (this: unknown, callback: (error?: Error) => void) {
    if (redis.status === "end") return callback(reason() ?? new Error("Connection is closed."));
    delay.call(this, (error?: Error) => callback(error && (reason() ?? error)));
  };
}

/** Runs a pipeline or MULTI and throws the first command error as a BrokerError. */
export async function execPipeline(pipe: { exec(): Promise<Reply[] | null> }): Promise<unknown[]> {
  const results = await pipe.exec();
  if (!results) throw new BrokerError("transaction aborted");
  return valuesOf(results);
}

/** The values of pipelined replies; the first command error is thrown as a BrokerError. */
export function valuesOf(replies: readonly Reply[]): unknown[] {
  return replies.map(([error, value]) => {
    if (error) throw new BrokerError(`redis: ${error.message}${refusedBy(error)}${movedHint(error)}`, { cause: error });
    return value;
  });
}

/**
 * Pipelines the commands of many items whose keys may be in different slots: on a single Redis as
 * one pipeline (one round trip, the commands in item order, as if pipelined by hand); on a Cluster as
 * one pipeline per node, sent at once, since ioredis refuses a pipeline whose keys are not all on one
 * node. `build` adds the commands of one item, all with keys in the slot of `keyOf(item)`; an item
 * whose commands have no key (TIME) says undefined and goes with the first group. Returns each item's
 * replies, in input order, errors included.
 */
export async function bySlotGroup<T>(redis: RedisClient, items: readonly T[], keyOf: (item: T) => string | undefined,
  build: (pipe: ScriptedPipeline, item: T) => void, after?: AfterPipeline): Promise<Reply[][]> {
  const out: Reply[][] = new Array(items.length);
  await Promise.all(nodeGroups(redis, items, keyOf).map(async (group) => {
    const pipe = redis.pipeline() as ScriptedPipeline;
    const counts = group.map((i) => {
      const before = pipe.length;
      build(pipe, items[i]!);
      return pipe.length - before;
    });
    const replies = await resendRedirected(redis, (await pipe.exec()) ?? []);
    let at = 0;
    group.forEach((i, n) => (out[i] = replies.slice(at, (at += counts[n]!))));
    await after?.(replies, group.map((i) => keyOf(items[i]!)).find((k) => k !== undefined));
  }));
  return out;
}

/**
 * What runs after each node's pipeline of a {@link bySlotGroup} (a WAIT, see replica_acks.ts), given
 * its replies and one of its keys; it may throw to fail the whole call.
 */
export type AfterPipeline = (replies: Reply[], key: string | undefined) => Promise<void>;

/**
 * Indexes of `items` grouped by the node that serves their slot (as ioredis groups them: by the
 * master and its replicas). Slots ioredis does not know yet (it has not loaded them) each make a
 * group of their own, which is always right, if more round trips.
 */
function nodeGroups<T>(redis: RedisClient, items: readonly T[], keyOf: (item: T) => string | undefined): number[][] {
  if (!isCluster(redis)) return [items.map((_, i) => i)];
  const groups = new Map<string, number[]>();
  const keyless: number[] = [];
  items.forEach((item, i) => {
    const key = keyOf(item);
    if (key === undefined) return void keyless.push(i);
    const slot = keySlot(key);
    const node = redis.slots[slot]?.join(";") || `slot ${slot}`;
    const group = groups.get(node);
    if (group) group.push(i);
    else groups.set(node, [i]);
  });
  const all = [...groups.values()];
  if (keyless.length > 0) all[0] = [...keyless, ...(all[0] ?? [])].sort((a, b) => a - b);
  return all;
}

/**
 * Runs a pipeline of commands whose keys ioredis cannot see (XINFO, a container command, names
 * none), all about keys in `key`'s slot. On a Cluster a pipeline without keys goes to a random node,
 * so an EXISTS of `key` goes first there, to route it, and its reply is dropped.
 */
export async function execAt(redis: RedisClient, key: string, build: (pipe: ChainableCommander) => void): Promise<Reply[]> {
  const pipe = redis.pipeline();
  const routed = isCluster(redis);
  if (routed) pipe.exists(key);
  build(pipe);
  const replies = (await pipe.exec()) ?? [];
  return routed ? replies.slice(1) : replies;
}

/**
 * The command and keys an ACL refused (NOPERM), which Redis's message leaves out: "no permissions to
 * access one of the keys" alone does not tell a prefix the user's ACL does not cover from a missing
 * command. Keys only, never the other arguments: those hold payloads.
 */
function refusedBy(error: Error): string {
  const command = (error as { command?: { name?: unknown; args?: unknown[] } }).command;
  if (!error.message.startsWith("NOPERM") || typeof command?.name !== "string") return "";
  const args = command.args ?? [];
  const keys = /^(eval|evalsha|fcall)(_ro)?$/i.test(command.name) ? args.slice(2, 2 + (Number(args[1]) || 0)) : args.slice(0, 1);
  return ` (${[command.name.toUpperCase(), ...keys.map((k) => JSON.stringify(String(k)))].join(" ")})`;
}
