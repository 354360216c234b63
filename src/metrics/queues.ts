/**
 * Per-queue gauges, read at scrape time through queueOverview (src/operations.ts), the same answer
 * `dray queues` prints. Many scrapers cost Redis one overview a second; with Redis away a scrape
 * waits a second at most and the queue gauges are left out, while the counters still answer.
 */
import type { Registry } from "prom-client";
import type { Broker } from "../broker/types.ts";
import { queueOverview, type QueueOverview } from "../operations.ts";
import { within } from "../timers.ts";
import { promClient } from "./registry.ts";

export interface QueueGaugeOptions {
  /** Reuse an overview this long, ms. @default 1_000 */
  cacheMs?: number;
  /** Leave the queue gauges out rather than wait longer for Redis, ms. @default 1_000 */
  timeoutMs?: number;
  /** Redis answered (health.ts counts it as a sign of life). */
  onAnswer?: () => void;
}

/** queueOverview, at most one at a time and once per `cacheMs`; undefined when Redis did not answer in time. */
export function cachedOverview(broker: Broker, options: QueueGaugeOptions = {}): () => Promise<QueueOverview[] | undefined> {
  const cacheMs = options.cacheMs ?? 1_000;
  const timeoutMs = options.timeoutMs ?? 1_000;
  let last: QueueOverview[] | undefined;
  let at = -Infinity;
  let reading: Promise<QueueOverview[] | undefined> | undefined;
  let since = 0;
  return async () => {
    if (Date.now() - at < cacheMs) return last;
    if (!reading) {
      since = Date.now();
      reading = queueOverview(broker).then(
        (overview) => {
          options.onAnswer?.();
          return overview;
        },
        () => undefined,
      ).then((overview) => {
        [last, at, reading] = [overview, Date.now(), undefined];
        return overview;
      });
    } else if (Date.now() - since >= timeoutMs) {
      // One read is still waiting for Redis: no second one behind it, and no scrape waits for it again.
      return undefined;
    }
    return await within(reading, timeoutMs - (Date.now() - since));
  };
}

const gauges: Array<[name: string, help: string, value: (q: QueueOverview) => number]> = [
  ["dray_queue_ready", "Jobs waiting in the queue, ready to run", (q) => q.ready],
  ["dray_queue_running", "Jobs of the queue held by a worker (all workers)", (q) => q.running],
  ["dray_queue_delayed", "Jobs of the queue waiting for their time (delays, retry backoffs)", (q) => q.delayed],
  ["dray_queue_dead", "Dead letters of the queue", (q) => q.dead],
  ["dray_queue_paused", "1 when the queue is paused, else 0", (q) => (q.paused ? 1 : 0)],
];

export function queueGauges(registry: Registry, overview: () => Promise<QueueOverview[] | undefined>): void {
  const { Gauge } = promClient();
  for (const [name, help, value] of gauges) {
    new Gauge({
      name, help, labelNames: ["queue"], registers: [registry],
      async collect() {
        const queues = await overview();
        this.reset();
        for (const q of queues ?? []) this.set({ queue: q.queue }, value(q));
      },
    });
  }
}
