import { ANOMALY_KINDS, type Anomalies, type CheckResult, type Finding, type LatencyQuantiles } from './check-result.js';
import type { HistoryTally } from './history-tally.js';

/** What a checker found, for {@link checkVerdict} to turn into a result. */
export interface VerdictInput {
  tally: HistoryTally;
  /** Why the run cannot be judged: the tally's reasons and the checker's own. */
  unjudgeable: string[];
  anomalies: Anomalies;
  findings: Finding[];
  /** The counts that depend on the workload's final state. */
  counts: { committedEvents: number; effects: number; injectedDuplicates: number; injectedPoison: number; injectedHostile: number; deadLetters: number };
  /** Commit-to-effect (or commit-to-end) latencies in ms, in any order. */
  latencies: number[];
  /** Ids listed per anomaly (findings: three times as many), at most. */
  maxIds: number;
}

function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return 0;
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return Math.round((sorted[index] as number) * 10) / 10;
}

function quantiles(latencies: number[]): LatencyQuantiles {
  const sorted = [...latencies].sort((a, b) => a - b);
  return { count: sorted.length, p50: quantile(sorted, 0.5), p90: quantile(sorted, 0.9), p99: quantile(sorted, 0.99), max: quantile(sorted, 1) };
}

/** A checker's result: valid when it could judge and found no anomaly; lists trimmed to `maxIds`. */
export function checkVerdict(v: VerdictInput): CheckResult {
  const counts = Object.fromEntries(ANOMALY_KINDS.map((k) => [k, v.anomalies[k].length])) as { [K in keyof Anomalies]: number };
  const trimmed = Object.fromEntries(ANOMALY_KINDS.map((k) => [k, v.anomalies[k].slice(0, v.maxIds)])) as unknown as Anomalies;
  const t = v.tally;
  return {
    valid: v.unjudgeable.length === 0 && ANOMALY_KINDS.every((k) => v.anomalies[k].length === 0),
    unjudgeable: v.unjudgeable,
    counts: {
      transactions: t.transactions,
      committedTransactions: t.committedTransactions,
      rolledBackTransactions: t.rolledBackTransactions,
      unknownOutcomeTransactions: t.unknownOutcomeTransactions,
      committedEvents: v.counts.committedEvents,
      effects: v.counts.effects,
      duplicateDeliveries: t.duplicateDeliveries,
      injectedDuplicates: v.counts.injectedDuplicates,
      injectedPoison: v.counts.injectedPoison,
      injectedHostile: v.counts.injectedHostile,
      deadLetters: v.counts.deadLetters,
      faults: Object.values(t.faults).reduce((a, b) => a + b, 0),
      ...counts,
    },
    faults: t.faults,
    anomalies: trimmed,
    findings: v.findings.slice(0, v.maxIds * 3),
    latencyMs: quantiles(v.latencies),
  };
}
