/**
 * The worker's Prometheus metrics, kept as Dramatiq's middleware/prometheus.py keeps them: counted
 * in the worker on the outcome of each job, labels `queue` and `actor`, served on a port (server.ts),
 * never a Redis write per job. prom-client formats them: it loads with the first registry made (see
 * `lazy`), so a worker without metrics never pays for it. Its default metrics (collectDefaultMetrics)
 * are not used: they lean on perf_hooks and /proc, and some Bun and Deno versions throw there (Bun
 * 1.2.3-1.2.4 at the call, Deno of early 2025 at each scrape), and current ones answer zeros (heap
 * spaces and handles on Bun 1.4, RSS and open fds on Deno 2.9). The two process metrics a job runtime
 * needs are made here from src/runtime/.
 */
import type { Registry } from "prom-client";
import type { Actor } from "../actor.ts";
import type { Events, WorkerEventMap } from "../events.ts";
import type { PoolHooks } from "../executor/types.ts";
import { cpuSeconds, lazy, rssBytes } from "../runtime/mod.ts";
import { PlainHistogram, type HistogramSeries } from "./histogram.ts";

export const promClient = lazy<typeof import("prom-client")>("prom-client");

/** A registry of its own, not prom-client's global one: an app's own metrics stay apart. */
export function newRegistry(): Registry {
  const registry = new (promClient().Registry)();
  const { Counter, Gauge } = promClient();
  new Counter({
    name: "dray_process_cpu_seconds_total", help: "CPU time this process used, user plus system, seconds", registers: [registry],
    collect() {
      this.reset();
      this.inc(cpuSeconds() ?? 0);
    },
  });
  new Gauge({
    name: "dray_process_resident_memory_bytes", registers: [registry],
    help: "Resident memory of this process and its pool threads (not its child processes), bytes",
    collect() {
      this.set(rssBytes());
    },
  });
  return registry;
}

const outcomes = ["completed", "retried", "dead", "failed", "aborted", "deferred", "skipped"] as const;
type Outcome = (typeof outcomes)[number];

/** One (queue, actor) pair: its labels, made once, and plain counts. */
interface Series {
  labels: { queue: string; actor: string };
  counts: Record<Outcome, number>;
  kills: number;
  duration: HistogramSeries;
  wait: HistogramSeries;
}

const durationBuckets = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];
const waitBuckets = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 60, 300, 3600];

/** What the pool gauges read at scrape time. */
export interface PoolView {
  running(): number;
  hosts?(): number;
}

/**
 * Jobs by outcome, time-limit kills, durations and waits, and the pool. Counting a job is a lookup
 * in two maps and a few additions: no allocation, no Redis. prom-client reads the counts at scrape
 * time (`collect`, PlainHistogram.get) and formats them.
 */
export class JobMetrics {
  readonly #series = new Map<string, Map<string, Series>>();
  readonly #registry: Registry;
  readonly #duration: PlainHistogram;
  readonly #wait: PlainHistogram;
  #restarts = 0;
  /** Given to the executor: it calls these where it stops a job's host. */
  readonly poolHooks: PoolHooks = {
    timeLimitKill: (job) => void this.#of(job.queue, job.actor).kills++,
    hostReplaced: () => void this.#restarts++,
  };

  constructor(registry: Registry) {
    this.#registry = registry;
    const { Counter } = promClient();
    const series = () => this.#all();
    new Counter({
      name: "dray_jobs_total", help: "Jobs settled by this worker, by outcome", labelNames: ["queue", "actor", "outcome"],
      registers: [registry],
      collect() {
        this.reset();
        for (const s of series()) for (const outcome of outcomes) this.inc({ ...s.labels, outcome }, s.counts[outcome]);
      },
    });
    new Counter({
      name: "dray_time_limit_kills_total", help: "Threads terminated or processes killed for a job over its time limit",
      labelNames: ["queue", "actor"], registers: [registry],
      collect() {
        this.reset();
        for (const s of series()) this.inc(s.labels, s.kills);
      },
    });
    this.#duration = new PlainHistogram(registry, {
      name: "dray_job_duration_seconds", help: "How long completed jobs ran, seconds", bounds: durationBuckets,
      series: () => this.#pairs((s) => s.duration),
    });
    this.#wait = new PlainHistogram(registry, {
      name: "dray_job_wait_seconds", help: "From a job entering its queue ready (sent, due, retried) to its start, seconds",
      bounds: waitBuckets, series: () => this.#pairs((s) => s.wait),
    });
  }

  /** Every actor's series from the start, at zero: a rate over a series that appears later misses its first jobs. */
  seed(actors: Iterable<Actor>): void {
    for (const a of actors) this.#of(a.options.queue, a.name);
  }

  /**
   * Counts outcomes from the supervisor's events rather than a middleware's afterProcess: the
   * settler emits them once per job with the final decision, as it hands it to Redis, whatever path
   * decided it (a handler's outcome, a crash or a kill of its host, the age limit, an unknown actor,
   * a malformed entry), so the counts agree with the log lines written beside them. afterProcess
   * sees neither those that never ran nor the final word: after-hooks run in reverse, so a later
   * middleware can still turn a retry into a dead letter, and a lease lost meanwhile discards the
   * outcome altogether. Returns a function that stops counting.
   */
  watch(events: Events<WorkerEventMap>): () => void {
    const offs = [
      events.on("job:start", (e) => {
        // The entry's time is by the broker's clock: a little skew must not make a wait negative.
        this.#wait.observe(this.#of(e.queue, e.actor).wait, Math.max(0, Date.now() - e.enqueuedAt) / 1000);
      }),
      events.on("job:complete", (e) => {
        const s = this.#of(e.queue, e.actor);
        s.counts.completed++;
        this.#duration.observe(s.duration, e.duration / 1000);
      }),
      events.on("job:retry", (e) => void this.#of(e.queue, e.actor).counts.retried++),
      events.on("job:dead", (e) => void this.#of(e.queue, e.actor).counts.dead++),
      events.on("job:discarded", (e) => void this.#of(e.queue, e.actor).counts[e.status]++),
      events.on("job:returned", (e) => {
        // Other returns (a host stopped under it, shutdown) are not an outcome: the job runs again.
        if (e.reason.startsWith("deferred")) this.#of(e.queue, e.actor).counts.deferred++;
      }),
    ];
    return () => offs.forEach((off) => off());
  }

  /** The pool's gauges, read at scrape time; `hosts` only where there is a pool (not inline). */
  watchPool(pool: PoolView): void {
    const { Counter, Gauge } = promClient();
    const registers = [this.#registry];
    new Gauge({ name: "dray_jobs_running", help: "Jobs running in this worker now", registers, collect() {
      this.set(pool.running());
    } });
    if (!pool.hosts) return;
    const hosts = pool.hosts.bind(pool);
    const restarts = () => this.#restarts;
    new Gauge({ name: "dray_pool_hosts", help: "Threads or processes of the pool ready to run jobs", registers, collect() {
      this.set(hosts());
    } });
    new Counter({
      name: "dray_pool_restarts_total", help: "Threads or processes replaced after a kill, a crash or the memory cap", registers,
      collect() {
        this.reset();
        this.inc(restarts());
      },
    });
  }

  #of(queue: string, actor: string): Series {
    let byActor = this.#series.get(queue);
    if (!byActor) this.#series.set(queue, (byActor = new Map()));
    let s = byActor.get(actor);
    if (!s) {
      const counts = { completed: 0, retried: 0, dead: 0, failed: 0, aborted: 0, deferred: 0, skipped: 0 };
      s = { labels: { queue, actor }, counts, kills: 0, duration: this.#duration.series(), wait: this.#wait.series() };
      byActor.set(actor, s);
    }
    return s;
  }

  *#all(): Iterable<Series> {
    for (const byActor of this.#series.values()) yield* byActor.values();
  }

  *#pairs(histogram: (s: Series) => HistogramSeries): Iterable<[Series["labels"], HistogramSeries]> {
    for (const s of this.#all()) yield [s.labels, histogram(s)];
  }
}
