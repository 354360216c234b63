/**
 * A histogram counted in plain arrays and handed to prom-client's registry, which formats it like
 * its own. prom-client's Histogram.observe builds a label key string and two objects per call, about
 * 300 ns; twice per job (duration, wait) that is a cost the worker's hot path would feel. Here an
 * observation is a short scan of the bounds and two additions, and the series' labels are looked up
 * by the caller once (see registry.ts).
 */
import type { Metric, Registry } from "prom-client";

/** One labelled series: counts per bucket (not cumulative; the last is +Inf), their sum and count. */
export interface HistogramSeries {
  counts: Float64Array;
  sum: number;
  count: number;
}

type Labels = Record<string, string>;

export class PlainHistogram {
  readonly type = "histogram";
  readonly aggregator = "sum";
  readonly name: string;
  readonly help: string;
  readonly #bounds: readonly number[];
  readonly #series: () => Iterable<[Labels, HistogramSeries]>;

  /** `series`: every series to export, with its labels, read at scrape time. */
  constructor(registry: Registry, o: { name: string; help: string; bounds: number[]; series: () => Iterable<[Labels, HistogramSeries]> }) {
    this.name = o.name;
    this.help = o.help;
    this.#bounds = [...o.bounds].sort((a, b) => a - b);
    this.#series = o.series;
    // The registry reads a metric through get() (and name, type): the shape of prom-client's own.
    registry.registerMetric(this as unknown as Metric);
  }

  series(): HistogramSeries {
    return { counts: new Float64Array(this.#bounds.length + 1), sum: 0, count: 0 };
  }

  observe(s: HistogramSeries, value: number): void {
    const bounds = this.#bounds;
    let i = 0;
    while (i < bounds.length && value > bounds[i]!) i++;
    s.counts[i]!++;
    s.sum += value;
    s.count++;
  }

  /** What prom-client's Histogram.get() returns: cumulative buckets up to +Inf, then sum and count. */
  async get(): Promise<{ name: string; help: string; type: string; aggregator: string; values: unknown[] }> {
    const values: unknown[] = [];
    for (const [labels, s] of this.#series()) {
      let cumulative = 0;
      this.#bounds.forEach((le, i) => {
        cumulative += s.counts[i]!;
        values.push({ metricName: `${this.name}_bucket`, labels: { ...labels, le }, value: cumulative });
      });
      values.push({ metricName: `${this.name}_bucket`, labels: { ...labels, le: "+Inf" }, value: s.count });
      values.push({ metricName: `${this.name}_sum`, labels, value: s.sum });
      values.push({ metricName: `${this.name}_count`, labels, value: s.count });
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }

  /** Zeroes every series (registry.resetMetrics() calls this). */
  reset(): void {
    for (const [, s] of this.#series()) {
      s.counts.fill(0);
      s.sum = 0;
      s.count = 0;
    }
  }
}
