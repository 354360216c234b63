import type { CronJob } from "./cron.ts";

/**
 * A tick older than this is missed even when the tick after it is not due yet: a daily job found
 * an hour late after an outage follows its catch-up policy instead of running as if on time.
 */
export const LATE_LIMIT = 60_000;

export interface TickPlan {
  /** Ticks to enqueue, oldest first. */
  ticks: number[];
  /** What the last tick handled becomes: the newest due tick, run or skipped. */
  last: number;
  /** How many of `ticks` are missed ticks run by the catch-up policy. */
  caughtUp: number;
  /** Missed ticks the catch-up policy passed over (a lower bound: older ones are not enumerated). */
  skipped: number;
}

/**
 * Which ticks to enqueue, given the last tick handled and the time now (both by the Redis clock).
 * Pure, so the same inputs give every ticker the same answer; the tick script then enqueues only
 * ticks newer than what Redis holds, so two tickers acting on one plan cannot double a tick.
 *
 * The newest due tick is on time while its successor is not due yet (and it is under LATE_LIMIT
 * late); every older due tick was missed, and the cron's catch-up policy decides about those.
 */
export function planTicks(job: CronJob, last: number, now: number): TickPlan {
  const { catchUp, maxCatchUp } = job.options;
  const dueOf = (n: number) => job.previousTicks(n, now).filter((t) => t > last && t <= now);
  // Newest first. Two tell on-time from missed; "all" looks further back only when something was missed.
  let due = dueOf(2);
  if (catchUp === "all" && due.length === 2) due = dueOf(maxCatchUp + 1);
  const newest = due[0];
  if (newest === undefined) return { ticks: [], last, caughtUp: 0, skipped: 0 };
  const onTime = now - newest < LATE_LIMIT ? [newest] : [];
  const missed = onTime.length > 0 ? due.slice(1) : due;
  const caught = catchUp === "all" ? missed.slice(0, maxCatchUp) : catchUp === "last" ? missed.slice(0, 1) : [];
  const ticks = [...caught.reverse(), ...onTime];
  return { ticks, last: newest, caughtUp: caught.length, skipped: missed.length - caught.length };
}
