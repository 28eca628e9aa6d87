import * as prom from 'prom-client';

/**
 * mailroom's metrics, on prom-client (the maintained Prometheus client for Node): the relay and
 * the consumer count every path that can drop, delay or duplicate a message here, and the
 * sidecar serves `render()` at /metrics. Metrics are declared with their label names; a second
 * declaration of a name in one registry returns the first (several consumers share a registry).
 */
type Labels = Record<string, string>;

/** A monotonically increasing count. */
export interface Counter {
  inc(labels?: Labels, by?: number): void;
}

/** A distribution of observed values in fixed buckets. */
export interface Histogram {
  observe(value: number, labels?: Labels): void;
}

/** A set of metrics rendered together in the Prometheus text format. */
export class MetricsRegistry {
  /** The prom-client registry behind it (to merge with a service's own metrics). */
  readonly registry = new prom.Registry();

  /** Creates a counter; names follow Prometheus conventions (`mailroom_…_total`). */
  counter(name: string, help: string, labelNames: readonly string[] = []): Counter {
    const metric =
      (this.registry.getSingleMetric(name) as prom.Counter | undefined) ?? new prom.Counter({ name, help, labelNames, registers: [this.registry] });
    return {
      inc(labels, by = 1) {
        if (labels === undefined) metric.inc(by);
        else metric.inc(labels, by);
      },
    };
  }

  /**
   * A gauge whose value is read when the registry renders (a database query, say). A collect
   * that throws leaves the gauge empty for that scrape instead of failing the whole page.
   */
  gauge(name: string, help: string, collect: () => Promise<number | Array<{ labels: Labels; value: number }>>, labelNames: readonly string[] = []): void {
    if (this.registry.getSingleMetric(name) !== undefined) return;
    new prom.Gauge({
      name,
      help,
      labelNames,
      registers: [this.registry],
      async collect() {
        this.reset();
        let value: Awaited<ReturnType<typeof collect>>;
        try {
          value = await collect();
        } catch {
          return;
        }
        if (typeof value === 'number') this.set(value);
        else for (const v of value) this.set(v.labels, v.value);
      },
    });
  }

  /** A histogram with the given upper bounds (seconds for latencies). */
  histogram(name: string, help: string, buckets: readonly number[], labelNames: readonly string[] = []): Histogram {
    const metric =
      (this.registry.getSingleMetric(name) as prom.Histogram | undefined) ??
      new prom.Histogram({ name, help, labelNames, buckets: [...buckets], registers: [this.registry] });
    return {
      observe(value, labels) {
        if (labels === undefined) metric.observe(value);
        else metric.observe(labels, value);
      },
    };
  }

  #processMetrics = false;

  /**
   * Adds prom-client's process and Node.js metrics (`process_cpu_seconds_total`,
   * `process_resident_memory_bytes`, `process_start_time_seconds`, heap, event-loop lag, GC) to
   * this registry, once however often it is called. For a process that serves `render()` (the
   * sidecar); a library never calls it, since the service's own registry may have them already.
   */
  collectProcessMetrics(): void {
    if (this.#processMetrics) return;
    this.#processMetrics = true;
    prom.collectDefaultMetrics({ register: this.registry });
  }

  /** Renders every metric in the Prometheus text exposition format. */
  async render(): Promise<string> {
    return this.registry.metrics();
  }
}

/** Latency buckets in seconds, from 0.5 ms to 30 s. */
export const LATENCY_BUCKETS = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30] as const;
