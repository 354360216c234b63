import type { RedisClient } from "./connection.ts";
import { pausedKey, workersKey } from "./keys.ts";
import type { Control, WorkerInfo } from "./types.ts";

/**
 * Paused queues and live workers on Redis: two keys per prefix (see keys.ts), plain commands (no
 * script: nothing here needs two keys at once). A worker's entry carries its own expiry, since a
 * hash field cannot expire on Redis 7; readers skip lapsed entries and delete them.
 */
export class RedisControl implements Control {
  readonly #redis: RedisClient;
  readonly #paused: string;
  readonly #workers: string;

  constructor(redis: RedisClient, prefix: string) {
    this.#redis = redis;
    this.#paused = pausedKey(prefix);
    this.#workers = workersKey(prefix);
  }

  async pause(queue: string): Promise<void> {
    await this.#redis.sadd(this.#paused, queue);
  }

  async resume(queue: string): Promise<boolean> {
    return (await this.#redis.srem(this.#paused, queue)) > 0;
  }

  async paused(): Promise<string[]> {
    return (await this.#redis.smembers(this.#paused)).sort();
  }

  async heartbeat(info: WorkerInfo): Promise<void> {
    await this.#redis.hset(this.#workers, info.id, JSON.stringify(info));
  }

  async removeWorker(id: string): Promise<void> {
    await this.#redis.hdel(this.#workers, id);
  }

  async workers(): Promise<WorkerInfo[]> {
    const now = Date.now();
    const live: WorkerInfo[] = [];
    const lapsed: string[] = [];
    for (const [id, json] of Object.entries(await this.#redis.hgetall(this.#workers))) {
      const info = parseWorker(json);
      if (info && info.expiresAt > now) live.push(info);
      else lapsed.push(id, json);
    }
    // Only entries still as read: a stalled worker that beat again in between keeps its new one.
    if (lapsed.length > 0) await this.#redis.eval(PRUNE_LAPSED, 1, this.#workers, ...lapsed);
    return live.sort((a, b) => a.startedAt - b.startedAt || a.id.localeCompare(b.id));
  }
}

/** HDEL each (field, value) pair of ARGV whose field still holds that value. */
const PRUNE_LAPSED = `
for i = 1, #ARGV, 2 do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i + 1] then redis.call('HDEL', KEYS[1], ARGV[i]) end
end
return 0`;

/** Paused queues and live workers in memory, for the MemoryBroker: the same rules. */
export class MemoryControl implements Control {
  readonly #paused = new Set<string>();
  readonly #workers = new Map<string, WorkerInfo>();

  async pause(queue: string): Promise<void> {
    this.#paused.add(queue);
  }

  async resume(queue: string): Promise<boolean> {
    return this.#paused.delete(queue);
  }

  async paused(): Promise<string[]> {
    return [...this.#paused].sort();
  }

  async heartbeat(info: WorkerInfo): Promise<void> {
    this.#workers.set(info.id, structuredClone(info));
  }

  async removeWorker(id: string): Promise<void> {
    this.#workers.delete(id);
  }

  async workers(): Promise<WorkerInfo[]> {
    const now = Date.now();
    for (const [id, info] of this.#workers) if (info.expiresAt <= now) this.#workers.delete(id);
    return [...this.#workers.values()].map((w) => structuredClone(w))
      .sort((a, b) => a.startedAt - b.startedAt || a.id.localeCompare(b.id));
  }
}

/** An entry as stored; undefined for one that is not a worker's (written by something else). */
function parseWorker(json: string): WorkerInfo | undefined {
  try {
    const info = JSON.parse(json) as WorkerInfo;
    return typeof info?.id === "string" && typeof info.expiresAt === "number" ? info : undefined;
  } catch {
    return undefined;
  }
}
