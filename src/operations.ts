/**
 * The operator's side of dray, in one place: what `dray queues` and `dray workers` print, what the
 * metrics endpoint exports, and what a dashboard shows and steers all come through here, so that
 * "how many are dead" has one answer. Everything goes through the broker, so a MemoryBroker in a
 * user's tests answers alike.
 */
import type { Broker, QueueStats, WorkerInfo } from "./broker/types.ts";
import { useBroker } from "./client.ts";
import { ConfigError } from "./errors.ts";
import { NAME_PATTERN } from "./message.ts";

export type { WorkerInfo } from "./broker/types.ts";

/** A queue's counts and whether it is paused. */
export interface QueueOverview extends QueueStats {
  paused: boolean;
}

/** Every queue workers declared or an operator paused, by name, with its counts. */
export async function queueOverview(broker: Broker = useBroker()): Promise<QueueOverview[]> {
  const [declared, paused] = await Promise.all([broker.queues(), broker.control.paused()]);
  const names = [...new Set([...declared, ...paused])].sort();
  const stats = broker.statsMany ? await broker.statsMany(names) : await Promise.all(names.map((queue) => broker.stats(queue)));
  return stats.map((s) => ({ ...s, paused: paused.includes(s.queue) }));
}

/**
 * Stops every worker reading `queue` within a second; running jobs finish, and sends, delays and
 * retries still land. `declared` is false when no worker has declared the queue yet: the pause
 * holds for the workers that will.
 */
export async function pauseQueue(queue: string, broker: Broker = useBroker()): Promise<{ declared: boolean }> {
  checkQueue(queue);
  await broker.control.pause(queue);
  return { declared: (await broker.queues()).includes(queue) };
}

/** Workers read `queue` again within a second. `wasPaused` is false when it was not paused. */
export async function resumeQueue(queue: string, broker: Broker = useBroker()): Promise<{ wasPaused: boolean }> {
  checkQueue(queue);
  return { wasPaused: await broker.control.resume(queue) };
}

/** The workers alive now (their heartbeat has not lapsed), oldest first. */
export function getWorkers(broker: Broker = useBroker()): Promise<WorkerInfo[]> {
  return broker.control.workers();
}

function checkQueue(queue: string): void {
  if (typeof queue !== "string" || !NAME_PATTERN.test(queue)) {
    throw new ConfigError(`queue name ${JSON.stringify(queue)} is invalid: use 1-200 letters, digits and _ . : -`);
  }
}
