import type { Redis, RedisOptions } from "ioredis";
import type { Logger } from "pino";
import { BrokerError, MalformedMessageError } from "../errors.ts";
import { settings } from "../config.ts";
import { lazy } from "../runtime/mod.ts";
import { quietIoredisTracing } from "../runtime/tracing.ts";
import { decodeMessage, type Delivery, type MalformedDelivery } from "../message.ts";
import { ACQUIRE, ENQUEUE, READ, REQUEUE, SETTLE } from "./scripts.ts";
import { ACK, PRUNE, RENEW } from "./lease_scripts.ts";
import { FIND, RUNNING, STATS } from "./browse_scripts.ts";

/** A stream entry as Redis returns it; fields are null when the entry was deleted while pending. */
export type Entry = [string, string[] | null];

/** The command connection with dray's scripts defined on it (see scripts.ts, lease_scripts.ts, browse_scripts.ts and history.ts). */
export type Scripted = Redis & {
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
};

/** Defines the broker's scripts of a fixed key count on `redis` (ioredis sends each by its SHA, loading it on first use). */
export function defineScripts(redis: Redis): Scripted {
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
 * A client of `url`; the one way dray makes one, so that ioredis loads only when needed and every
 * `rediss://` client trusts what settings().tls says (ioredis alone would use Node's public CAs).
 */
export function newRedis(url: string, options: RedisOptions = {}): Redis {
  quietIoredisTracing();
  const tls = /^rediss:/i.test(url) ? settings().tls : undefined;
  return new (ioredis().Redis)(url, tls && !options.tls ? { ...options, tls } : options);
}

export function connect(options: ConnectOptions, name: string): Redis {
  const redisOptions: RedisOptions = {
    connectionName: name,
    maxRetriesPerRequest: options.patient ? null : 2,
    // Reconnect with a capped backoff; a worker keeps trying for as long as it lives.
    retryStrategy: (times) => Math.min(50 * 2 ** Math.min(times, 6), 2_000),
    lazyConnect: false,
    ...(options.autoPipelining ? { enableAutoPipelining: true } : {}),
  };
  const redis = newRedis(options.url, redisOptions);
  let lastLog = 0;
  let refused: BrokerError | undefined;
  redis.on("ready", () => (refused = undefined));
  redis.on("error", (error: Error) => {
    refused = certificateRefused(error, options.url) ?? refused;
    // ioredis emits an error per failed reconnect attempt; one line every 5 s is enough.
    if (Date.now() - lastLog > 5_000) {
      lastLog = Date.now();
      if (refused) options.logger?.error({ err: error, connection: name }, `${refused.message}; retrying`);
      else options.logger?.warn({ err: error, connection: name }, "redis connection error; reconnecting");
    }
  });
  explainFailures(redis, () => refused);
  return redis;
}

/**
 * A refused server certificate, as an error that says what to do. Retrying does not help (the same
 * certificate comes back), so the hint matters more than the retries: a private CA is the usual cause.
 */
function certificateRefused(error: Error, url: string): BrokerError | undefined {
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
 * When the reason is a refused certificate, they fail with that instead, so the CLI and senders
 * report the cause, not the retry count. ioredis rejects them all in its `flushQueue`, a private
 * method: if a later ioredis has none, its own errors stand.
 */
function explainFailures(redis: Redis, reason: () => Error | undefined): void {
  const client = redis as unknown as { flushQueue?: (error: Error, options?: unknown) => void };
  const flush = client.flushQueue;
  if (typeof flush !== "function") return;
  client.flushQueue = function (this: unknown, error: Error, options?: unknown) {
    flush.call(this, reason() ?? error, options);
  };
}

/** Runs a pipeline or MULTI and throws the first command error as a BrokerError. */
export async function execPipeline(pipe: { exec(): Promise<[Error | null, unknown][] | null> }): Promise<unknown[]> {
  const results = await pipe.exec();
  if (!results) throw new BrokerError("transaction aborted");
  return results.map(([error, value]) => {
    if (error) throw new BrokerError(`redis: ${error.message}${refusedBy(error)}`, { cause: error });
    return value;
  });
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
