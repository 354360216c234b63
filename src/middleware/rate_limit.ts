import { rateLimitSchema, type RateLimitOptions } from "../actor.ts";
import { ConfigError } from "../errors.ts";
import type { Decision, Middleware, ProcessInfo } from "../middleware.ts";

/** How long past its time limit a crashed worker's concurrency slot stays taken, ms. */
const leaseMargin = 30_000;

export interface RateLimiterOptions extends RateLimitOptions {
  /** The actors it applies to (by name). @default every actor */
  actors?: string[];
}

/**
 * Rate limits checked before a job runs, shared by every worker through the broker (Dramatiq's
 * ConcurrentRateLimiter and WindowRateLimiter, BullMQ's limiter):
 *
 * - `concurrency: N` — a slot per running job (a Redis sorted set of leases, so the slot of a worker
 *   that died frees itself after the actor's time limit plus a margin); released when the job ends.
 * - `perWindow: N, window: ms` — a sliding window log: a job starts only if fewer than N started in
 *   the last `window` ms, so no window of that length ever holds more than N starts.
 *
 * A job over a limit is deferred: back to the delayed set without being charged an attempt, holding
 * no slot while it waits (for a window limit, exactly until the oldest start ages out).
 */
export function rateLimiter(options: RateLimiterOptions): Middleware {
  const { actors, ...limit } = options;
  const parsed = rateLimitSchema.safeParse(limit);
  if (!parsed.success) {
    throw new ConfigError(`invalid rate limit: ${parsed.error.issues.map((i) => `${i.path.join(".") || "options"}: ${i.message}`).join("; ")}`);
  }
  const only = actors ? new Set(actors) : undefined;
  return limiter(`rateLimiter(${typeof limit.key === "string" ? limit.key : actors?.join(",") ?? "all"})`,
    (info) => (!only || only.has(info.actor.name) ? parsed.data : undefined));
}

/** The limits given as actor options (`rateLimit`); part of the default middleware. */
export const rateLimits: Middleware = limiter("rateLimits", (info) => info.actor.options.rateLimit);

function limiter(name: string, limitsOf: (info: ProcessInfo) => RateLimitOptions | undefined): Middleware {
  // The concurrency slot a job holds, from before it runs to after.
  const held = new WeakMap<ProcessInfo, { key: string; token: string }>();
  const release = async (info: ProcessInfo) => {
    const slot = held.get(info);
    if (!slot) return;
    held.delete(info);
    try {
      await info.broker.limits.release(slot.key, slot.token);
    } catch {
      // The lease runs out by itself; failing the job over it would be worse.
    }
  };
  const acquire = async (info: ProcessInfo, limits: RateLimitOptions): Promise<Decision | undefined> => {
    const { message } = info.delivery;
    const key = typeof limits.key === "function" ? String(limits.key(message.payload as never)) : limits.key ?? info.actor.name;
    // Unique per run: a worker that lost the job's lease and the one that reclaimed it (same job, same
    // entry) each hold a slot of their own, and releasing one never frees the other's. It names the
    // worker, so a slot left taken says whose lease it waits for.
    const run = crypto.randomUUID().slice(0, 8);
    const token = `${message.id}:${info.delivery.ref.entryId}:${info.broker.consumer ? `${info.broker.consumer}/${run}` : run}`;
    const backoff = limits.backoff ?? 500;
    if (limits.concurrency !== undefined) {
      const slotKey = `${key}:running`;
      const rule = { kind: "concurrent", limit: limits.concurrency, leaseMs: info.actor.options.timeLimit + leaseMargin } as const;
      if ((await info.broker.limits.acquire(slotKey, rule, token)) !== 0) return { kind: "defer", delay: jitter(backoff) };
      held.set(info, { key: slotKey, token });
    }
    if (limits.perWindow !== undefined) {
      const rule = { kind: "window", limit: limits.perWindow, windowMs: limits.window ?? 1_000 } as const;
      const wait = await info.broker.limits.acquire(`${key}:window`, rule, token);
      if (wait !== 0) {
        await release(info);
        // Due when the oldest start leaves the window; a little spread so the deferred do not all
        // come back in the same millisecond.
        return { kind: "defer", delay: wait > 0 ? wait + Math.floor(Math.random() * Math.min(50, wait)) : jitter(backoff) };
      }
    }
    return undefined;
  };
  // Synchronous when the actor has no limit or holds no slot: most jobs then cost no promise here.
  const releaseHeld = (info: ProcessInfo) => (held.has(info) ? release(info) : undefined);
  return {
    name,
    beforeProcess(info) {
      const limits = limitsOf(info);
      return limits ? acquire(info, limits) : undefined;
    },
    afterProcess: releaseHeld,
    // Settled without running (a later middleware decided, a hook threw, the lease was lost): the
    // slot must come back now, not when its lease runs out.
    afterSkip: releaseHeld,
  };
}

function jitter(ms: number): number {
  return Math.round(ms / 2 + Math.random() * (ms / 2));
}
