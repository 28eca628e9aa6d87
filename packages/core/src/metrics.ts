/**
 * A small metrics registry that renders the Prometheus text format. The relay and the consumer
 * count every path that can drop, delay or duplicate a message here; the sidecar serves it.
 */
type Labels = Record<string, string>;

function labelKey(labels: Labels | undefined): string {
  if (!labels) return '';
  const keys = Object.keys(labels).sort();
  if (keys.length === 0) return '';
  return `{${keys.map((k) => `${k}="${String(labels[k]).replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`).join(',')}}`;
}

/** A monotonically increasing count. */
export interface Counter {
  inc(labels?: Labels, by?: number): void;
  /** The current value for a label set (for tests and summaries). */
  get(labels?: Labels): number;
}

/** A distribution of observed values in fixed buckets. */
export interface Histogram {
  observe(value: number, labels?: Labels): void;
  /** Count and sum of the observations for a label set. */
  get(labels?: Labels): { count: number; sum: number };
}

interface Metric {
  name: string;
  help: string;
  type: 'counter' | 'gauge' | 'histogram';
  render(): Promise<string[]>;
}

/** A set of metrics rendered together. */
export class MetricsRegistry {
  readonly #metrics: Metric[] = [];

  /** Creates a counter; names follow Prometheus conventions (`mailroom_…_total`). */
  counter(name: string, help: string): Counter {
    const values = new Map<string, number>();
    this.#metrics.push({
      name,
      help,
      type: 'counter',
      render: async () => (values.size === 0 ? [`${name} 0`] : [...values].map(([k, v]) => `${name}${k} ${v}`)),
    });
    return {
      inc(labels, by = 1) {
        const key = labelKey(labels);
        values.set(key, (values.get(key) ?? 0) + by);
      },
      get(labels) {
        return values.get(labelKey(labels)) ?? 0;
      },
    };
  }

  /** A gauge whose value is read when the registry renders (a database query, say). */
  gauge(name: string, help: string, collect: () => Promise<number | Array<{ labels: Labels; value: number }>>): void {
    this.#metrics.push({
      name,
      help,
      type: 'gauge',
      render: async () => {
        const value = await collect();
        if (typeof value === 'number') return [`${name} ${value}`];
        return value.map((v) => `${name}${labelKey(v.labels)} ${v.value}`);
      },
    });
  }

  /** A histogram with the given upper bounds (seconds for latencies). */
  histogram(name: string, help: string, buckets: readonly number[]): Histogram {
    const sorted = [...buckets].sort((a, b) => a - b);
    const series = new Map<string, { labels: Labels | undefined; counts: number[]; count: number; sum: number }>();
    this.#metrics.push({
      name,
      help,
      type: 'histogram',
      render: async () => {
        const lines: string[] = [];
        for (const s of series.values()) {
          sorted.forEach((le, i) => lines.push(`${name}_bucket${labelKey({ ...s.labels, le: String(le) })} ${s.counts[i] ?? 0}`));
          lines.push(`${name}_bucket${labelKey({ ...s.labels, le: '+Inf' })} ${s.count}`);
          lines.push(`${name}_sum${labelKey(s.labels)} ${s.sum}`);
          lines.push(`${name}_count${labelKey(s.labels)} ${s.count}`);
        }
        if (series.size === 0) lines.push(`${name}_count 0`, `${name}_sum 0`);
        return lines;
      },
    });
    return {
      observe(value, labels) {
        const key = labelKey(labels);
        let s = series.get(key);
        if (!s) {
          s = { labels, counts: sorted.map(() => 0), count: 0, sum: 0 };
          series.set(key, s);
        }
        for (let i = 0; i < sorted.length; i++) if (value <= (sorted[i] as number)) (s.counts[i] as number)++;
        s.count++;
        s.sum += value;
      },
      get(labels) {
        const s = series.get(labelKey(labels));
        return { count: s?.count ?? 0, sum: s?.sum ?? 0 };
      },
    };
  }

  /** Renders every metric in the Prometheus text exposition format. A failing gauge is skipped. */
  async render(): Promise<string> {
    const out: string[] = [];
    for (const m of this.#metrics) {
      let lines: string[];
      try {
        lines = await m.render();
      } catch {
        continue;
      }
      out.push(`# HELP ${m.name} ${m.help}`, `# TYPE ${m.name} ${m.type}`, ...lines);
    }
    return `${out.join('\n')}\n`;
  }
}

/** Latency buckets in seconds, from 0.5 ms to 30 s. */
export const LATENCY_BUCKETS = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30] as const;
