import type { Redis, RedisOptions } from "ioredis";
import type { Logger } from "pino";
import { BrokerError, MalformedMessageError } from "../errors.ts";
import { lazy } from "../runtime/mod.ts";
import { quietIoredisTracing } from "../runtime/tracing.ts";
import { decodeMessage, type Delivery, type MalformedDelivery } from "../message.ts";

/** A stream entry as Redis returns it; fields are null when the entry was deleted while pending. */
export type Entry = [string, string[] | null];

/** The command connection with dray's scripts defined on it (see scripts.ts and lease_scripts.ts). */
export type Scripted = Redis & {
  drayRead(...args: (string | number)[]): Promise<unknown[]>;
  drayEnqueue(...args: (string | number)[]): Promise<number>;
  draySettle(...args: (string | number)[]): Promise<number>;
  drayRequeue(...args: (string | number)[]): Promise<number>;
  drayAcquire(...args: (string | number)[]): Promise<number>;
  drayAck(...args: (string | number)[]): Promise<string[]>;
  drayRenew(...args: (string | number)[]): Promise<string[]>;
  drayPrune(...args: (string | number)[]): Promise<number>;
};

export interface ConnectOptions {
  url: string;
  /** Wait for Redis forever (workers) rather than failing a command after a few reconnect attempts. */
  patient?: boolean;
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

/** A client of `url`; the one way dray makes one, so that ioredis loads only when needed. */
export function newRedis(url: string, options: RedisOptions = {}): Redis {
  quietIoredisTracing();
  return new (ioredis().Redis)(url, options);
}

export function connect(options: ConnectOptions, name: string): Redis {
  const redisOptions: RedisOptions = {
    connectionName: name,
    maxRetriesPerRequest: options.patient ? null : 2,
    // Reconnect with a capped backoff; a worker keeps trying for as long as it lives.
    retryStrategy: (times) => Math.min(50 * 2 ** Math.min(times, 6), 2_000),
    lazyConnect: false,
  };
  const redis = newRedis(options.url, redisOptions);
  let lastLog = 0;
  redis.on("error", (error: Error) => {
    // ioredis emits an error per failed reconnect attempt; one line every 5 s is enough.
    if (Date.now() - lastLog > 5_000) {
      lastLog = Date.now();
      options.logger?.warn({ err: error, connection: name }, "redis connection error; reconnecting");
    }
  });
  return redis;
}

/** Runs a pipeline or MULTI and throws the first command error as a BrokerError. */
export async function execPipeline(pipe: { exec(): Promise<[Error | null, unknown][] | null> }): Promise<unknown[]> {
  const results = await pipe.exec();
  if (!results) throw new BrokerError("transaction aborted");
  return results.map(([error, value]) => {
    if (error) throw new BrokerError(`redis: ${error.message}`, { cause: error });
    return value;
  });
}
