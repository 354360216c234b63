/**
 * `/healthz`: whether this process can do its work. Redis counts as away once it has not answered
 * for `downAfterMs`: a blip (a failover, a restart) does not fail a probe, a real outage does. It is
 * asked with a cheap command at most once a second, one at a time, never waited for more than a
 * second; the worker's own reads count as answers too.
 */
import { within } from "../timers.ts";

export interface HealthOptions {
  /** Away for longer than this and the process is unavailable, ms. @default 5_000 */
  downAfterMs?: number;
  /** How long a check waits for Redis, ms. @default 1_000 */
  timeoutMs?: number;
  /** Ask Redis at most this often, ms. @default 1_000 */
  everyMs?: number;
}

export interface RedisStatus {
  ok: boolean;
  /** Why it is not ok, or what went wrong lately while it still counts as up. */
  error?: string;
}

/** What `/healthz` answers, 200 when `status` is "ok", else 503. */
export interface HealthReport {
  status: "ok" | "unavailable";
  /** Why it is unavailable. */
  reason?: string;
  redis: RedisStatus;
  /** A worker's pool: how many threads or processes can run jobs (absent for a scheduler). */
  pool?: { ok: boolean; hosts: number | null };
  /** Since Redis last answered this process (a read, a probe), ms. */
  lastReadAgeMs: number;
}

/** Redis as this process sees it. `probe` is any cheap command (one that waits out an outage is fine). */
export class RedisHealth {
  readonly #probe: () => Promise<unknown>;
  readonly #o: Required<HealthOptions>;
  /** Counted from the start: a process that never reached Redis is unavailable after the same while. */
  #answeredAt = Date.now();
  #error: string | undefined;
  #probing: Promise<void> | undefined;
  #probedAt = -Infinity;

  constructor(probe: () => Promise<unknown>, options: HealthOptions = {}) {
    this.#probe = probe;
    this.#o = { downAfterMs: 5_000, timeoutMs: 1_000, everyMs: 1_000, ...options };
  }

  /** Redis answered (a read, an overview). */
  answered(): void {
    this.#answeredAt = Date.now();
    this.#error = undefined;
  }

  /** A command failed (the supervisor's `broker:error`). */
  failed(error: unknown): void {
    this.#error = error instanceof Error ? error.message : String(error);
  }

  get lastAnswerAgeMs(): number {
    return Date.now() - this.#answeredAt;
  }

  async check(): Promise<RedisStatus> {
    const { timeoutMs, everyMs, downAfterMs } = this.#o;
    if (!this.#probing && Date.now() - this.#probedAt >= everyMs) {
      this.#probedAt = Date.now();
      this.#probing = this.#probe().then(() => this.answered(), (error) => this.failed(error))
        .finally(() => (this.#probing = undefined));
    }
    // A probe that has waited its while already is not waited for again: the answer is "no answer".
    const left = timeoutMs - (Date.now() - this.#probedAt);
    if (this.#probing && left > 0) await within(this.#probing, left);
    const age = this.lastAnswerAgeMs;
    if (age <= downAfterMs) return this.#error ? { ok: true, error: this.#error } : { ok: true };
    return { ok: false, error: `no answer from Redis for ${age} ms${this.#error ? ` (last error: ${this.#error})` : ""}` };
  }
}

/**
 * The pool as health sees it: no host that can run jobs for longer than `downAfterMs` (a thread
 * replaced after a kill is back within that) is unavailable.
 */
export class PoolHealth {
  readonly #hosts: (() => number) | undefined;
  readonly #downAfterMs: number;
  #emptySince: number | undefined;

  /** `hosts` undefined: no pool (inline), always ok. */
  constructor(hosts: (() => number) | undefined, downAfterMs = 5_000) {
    this.#hosts = hosts;
    this.#downAfterMs = downAfterMs;
  }

  check(): { ok: boolean; hosts: number | null; error?: string } {
    if (!this.#hosts) return { ok: true, hosts: null };
    const hosts = this.#hosts();
    if (hosts > 0) {
      this.#emptySince = undefined;
      return { ok: true, hosts };
    }
    this.#emptySince ??= Date.now();
    const empty = Date.now() - this.#emptySince;
    if (empty <= this.#downAfterMs) return { ok: true, hosts };
    return { ok: false, hosts, error: `no thread or process can run jobs for ${empty} ms` };
  }
}

/** The report `/healthz` sends: unavailable when Redis or the pool is, and why. */
export async function healthReport(redis: RedisHealth, pool?: PoolHealth): Promise<HealthReport> {
  const r = await redis.check();
  const p = pool?.check();
  const reasons = [...(r.ok ? [] : [`redis: ${r.error}`]), ...(p && !p.ok ? [`pool: ${p.error}`] : [])];
  return {
    status: reasons.length === 0 ? "ok" : "unavailable",
    ...(reasons.length > 0 ? { reason: reasons.join("; ") } : {}),
    redis: r,
    ...(p ? { pool: { ok: p.ok, hosts: p.hosts } } : {}),
    lastReadAgeMs: redis.lastAnswerAgeMs,
  };
}
