import { z } from "zod";
import type { Logger } from "pino";
import type { Message } from "./message.ts";
import { env, readTextFile } from "./runtime/mod.ts";
import { createLogger } from "./logger.ts";
import { ConfigError } from "./errors.ts";
import { clusterUrl, type ClusterNodeAddress } from "./broker/cluster.ts";

/**
 * The send side of a middleware (`Middleware` in middleware.ts extends it): what senders run. Here
 * rather than there so that settings, which every sender reads, need nothing of the worker's side.
 */
export interface SenderMiddleware {
  readonly name: string;
  /** Before a message is sent; may set `message.meta` (JSON). Throw to refuse it: nothing is sent. */
  beforeEnqueue?(message: Message): void | Promise<void>;
  /** After the broker took it (`duplicate`: a job with that id was already known, nothing sent). */
  afterEnqueue?(message: Message, duplicate: boolean): void | Promise<void>;
}

/**
 * How dray's connections to a `rediss://` URL check the server (node:tls options of the same names).
 * Certificates and keys are PEM, as text or a Buffer of it; pool threads and child processes get text.
 */
export interface TlsSettings {
  /** The CA that signed the server's certificate, for a private CA; public ones are trusted anyway. */
  ca?: string | Buffer;
  /** A client certificate and its key, for a server that asks for one (`tls-auth-clients yes`). */
  cert?: string | Buffer;
  key?: string | Buffer;
  /** false accepts any server certificate, so anyone in between can read the traffic: tests only. @default true */
  rejectUnauthorized?: boolean;
}

/** Process-wide settings shared by senders and workers. Set with {@link configure}. */
export interface Settings {
  /**
   * A single Redis as `redis://[user:password@]host:port[/db]` (`rediss://` for TLS), or a Redis
   * Cluster as `redis+cluster://[user:password@]host:port,host:port` (`rediss+cluster://`): some of
   * its nodes, the client finds the others. @default process env REDIS_URL, else "redis://127.0.0.1:6379"
   */
  redisUrl: string;
  /**
   * A Redis Cluster by some of its nodes, for code that has them as a list. Setting it makes
   * redisUrl the equivalent `redis+cluster://` URL, with redisUrl's scheme (TLS or not) and
   * credentials: pool threads and child processes get that URL. @default none
   */
  cluster?: { nodes: ClusterNodeAddress[] } | undefined;
  /**
   * Key namespace: apps with different prefixes on one Redis never see each other's keys. No `{` or
   * `}`: dray puts the prefix inside the hash tags that choose a key's cluster slot (keys.ts).
   * @default env DRAY_PREFIX, else "dray"
   */
  prefix: string;
  logger: Logger;
  /** Senders' middleware: `beforeEnqueue` / `afterEnqueue` run on every send from this process. @default [] */
  middleware: SenderMiddleware[];
  /**
   * The largest return value a worker keeps (bytes of JSON); a bigger one is refused and the job
   * recorded as failed with ResultTooLarge. @default env DRAY_MAX_RESULT_BYTES, else 1_048_576 (1 MiB)
   */
  maxResultBytes: number;
  /**
   * TLS for `rediss://` URLs (a `redis://` URL stays plain text whatever is set here), for every
   * connection dray makes: brokers, subscribers, result waiters, handlers' `ctx.redis` in pool threads
   * and child processes. Without it, the runtime's public CAs decide. @default env DRAY_REDIS_CA (a path to a
   * PEM file, read when settings are first made) as `{ ca }`, else none
   */
  tls?: TlsSettings | undefined;
  /**
   * Durable sends: every enqueue from this process (send, sendMany, groups, a pipeline's next step)
   * resolves only once `replicas` replicas of the master that took it acknowledge it (Redis `WAIT`,
   * on the same node as the write), and rejects with ReplicationTimeout when they do not within
   * `timeoutMs` (the job is queued then, but a failover of that master may lose it). Without it a
   * send acknowledged by a master that dies before its replica got it is lost (replication is
   * asynchronous). Costs one replica round trip per send. @default env DRAY_REPLICA_ACKS
   * (`<replicas>[:<timeoutMs>]`, e.g. `1` or `1:500`), else off
   */
  replicaAcks?: ReplicaAcks | undefined;
}

let current: Settings | undefined;

export function settings(): Settings {
  current ??= {
    redisUrl: env("REDIS_URL") || "redis://127.0.0.1:6379",
    prefix: checkPrefix(env("DRAY_PREFIX") || "dray", "DRAY_PREFIX"),
    logger: createLogger(),
    middleware: [],
    maxResultBytes: Number(env("DRAY_MAX_RESULT_BYTES")) || 1_048_576,
    tls: tlsFromEnv(),
    replicaAcks: replicaAcksFromEnv(env("DRAY_REPLICA_ACKS")),
  };
  return current;
}

function tlsFromEnv(): TlsSettings | undefined {
  const path = env("DRAY_REDIS_CA");
  if (!path) return undefined;
  try {
    return { ca: readTextFile(path) };
  } catch (error) {
    // Read once, here: a worker that started without its CA would fail every connection instead.
    throw new ConfigError(`DRAY_REDIS_CA: cannot read "${path}": ${(error as Error).message}`, { cause: error });
  }
}

/**
 * The TLS settings as text, for a pool thread or child process: a Buffer reaches a thread as a bare
 * Uint8Array and a child (JSON over IPC) as `{ type, data }`, neither of which node:tls reads as PEM.
 */
export function portableTls(tls: TlsSettings | undefined): TlsSettings | undefined {
  if (!tls) return undefined;
  const text = (v: string | Buffer | undefined) => (v === undefined || typeof v === "string" ? v : new TextDecoder().decode(v));
  const out: TlsSettings = {};
  if (tls.ca !== undefined) out.ca = text(tls.ca);
  if (tls.cert !== undefined) out.cert = text(tls.cert);
  if (tls.key !== undefined) out.key = text(tls.key);
  if (tls.rejectUnauthorized !== undefined) out.rejectUnauthorized = tls.rejectUnauthorized;
  return out;
}

/**
 * `prefix`, if it can name dray's keys: a `{` or `}` in it would end the hash tag `{<prefix>:<queue>}`
 * early, and a queue's keys would then fall in different cluster slots.
 */
export function checkPrefix(prefix: string, what = "prefix"): string {
  if (/[{}]/.test(prefix)) throw new ConfigError(`${what} "${prefix}" has a { or }: dray puts the prefix in the hash tags of its keys`);
  return prefix;
}

const listeners = new Set<() => void>();

/** Change settings in code; the default broker is rebuilt on next use. */
export function configure(patch: Partial<Settings>): Settings {
  const next = { ...settings(), ...patch };
  if (patch.prefix !== undefined) checkPrefix(patch.prefix);
  if (patch.replicaAcks !== undefined) next.replicaAcks = checkReplicaAcks(patch.replicaAcks);
  if (next.cluster) next.redisUrl = clusterUrl(next.redisUrl, next.cluster.nodes);
  current = next;
  for (const listener of listeners) listener();
  return current;
}

/** Called when settings change (the default broker drops its connection). */
export function onConfigure(listener: () => void): void {
  listeners.add(listener);
}

/** How many replicas must have a send before it resolves, and how long to wait for them. */
export interface ReplicaAcks {
  /** Replicas of the master that must acknowledge each send; at least 1. */
  replicas: number;
  /** How long a send waits for them before it rejects with ReplicationTimeout. @default 1000 */
  timeoutMs?: number;
}

export const replicaAcksSchema = z.object({
  replicas: z.number().int().min(1),
  // WAIT's 0 means "forever": a send would hang as long as the replica is away.
  timeoutMs: z.number().int().min(1).default(1000),
}).strict();

/** Validated {@link ReplicaAcks}, or undefined for off; `what` names the source in the error. */
export function checkReplicaAcks(value: ReplicaAcks | undefined, what = "replicaAcks"): Required<ReplicaAcks> | undefined {
  if (value === undefined) return undefined;
  const parsed = replicaAcksSchema.safeParse(value);
  if (!parsed.success) throw new ConfigError(`${what}: ${z.prettifyError(parsed.error)}`);
  return parsed.data;
}

/**
 * `DRAY_REPLICA_ACKS=<replicas>[:<timeoutMs>]` (e.g. `1` or `1:500`), or undefined when unset, empty
 * or 0 (off).
 */
export function replicaAcksFromEnv(raw: string | undefined): Required<ReplicaAcks> | undefined {
  if (!raw || raw.trim() === "0") return undefined;
  const match = /^\s*(\d+)\s*(?::\s*(\d+)\s*)?$/.exec(raw);
  if (!match) throw new ConfigError(`DRAY_REPLICA_ACKS: "${raw}" is not <replicas>[:<timeoutMs>], e.g. 1 or 1:500`);
  return checkReplicaAcks({ replicas: Number(match[1]), ...(match[2] ? { timeoutMs: Number(match[2]) } : {}) }, "DRAY_REPLICA_ACKS");
}
