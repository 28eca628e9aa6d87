import type { CommitValue, HistoryOp } from './history.js';
import type { FinalState } from './final-state.js';

/** Options of {@link check}. */
export interface CheckOptions {
  /** Whether events of one key must take effect in commit order. Default: false. */
  ordering?: boolean;
  /** Ids listed per anomaly in the report, at most. Default: 50. */
  maxIds?: number;
}

/** The safety anomalies, each a list of event ids. Any non-empty list makes the run invalid. */
export interface Anomalies {
  /** Committed, acknowledged to the producer, and never applied (nor stuck, nor dead-lettered). */
  lostAcknowledged: string[];
  /** Committed with an unknown outcome for the producer (the COMMIT reply was lost), and never applied. */
  lostUnknown: string[];
  /** Applied more than once (more than one ledger row). */
  duplicatedEffect: string[];
  /** Applied or marked handled although its transaction never committed. */
  phantom: string[];
  /** Applied before an event of the same key that committed earlier (ordering on). */
  reordered: string[];
  /** Committed and not applied after the drain, but still in the outbox or a queue. */
  stuck: string[];
  /** A committed (non-poison) event in the dead-letter store. */
  unexpectedDeadLetter: string[];
  /** An injected poison message that took effect or did not end in the dead-letter store. */
  escapedPoison: string[];
}

/** Latency quantiles in ms, from the domain commit to the first effect. */
export interface LatencyQuantiles {
  count: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

/** What the checker concludes. */
export interface CheckResult {
  /** True when every anomaly list is empty and the run could be judged. */
  valid: boolean;
  /** Why the run could not be judged (empty when it could). */
  unjudgeable: string[];
  counts: {
    transactions: number;
    committedTransactions: number;
    rolledBackTransactions: number;
    unknownOutcomeTransactions: number;
    committedEvents: number;
    effects: number;
    /** Deliveries the inbox found duplicates (allowed: they commit nothing). */
    duplicateDeliveries: number;
    injectedDuplicates: number;
    injectedPoison: number;
    deadLetters: number;
    faults: number;
  } & { [K in keyof Anomalies]: number };
  /** Injected faults by kind (`ok` or `info` nemesis operations). */
  faults: Record<string, number>;
  anomalies: Anomalies;
  latencyMs: LatencyQuantiles;
}

/** The anomaly names, in report order. */
export const ANOMALY_KINDS: ReadonlyArray<keyof Anomalies> = [
  'lostAcknowledged',
  'lostUnknown',
  'duplicatedEffect',
  'phantom',
  'reordered',
  'stuck',
  'unexpectedDeadLetter',
  'escapedPoison',
];

function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return 0;
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return Math.round((sorted[index] as number) * 10) / 10;
}

/**
 * Judges a run: the history says what each producer was told, the final state what really
 * happened. Pure: the planted-history tests call it directly.
 */
export function check(history: readonly HistoryOp[], state: FinalState, options: CheckOptions = {}): CheckResult {
  const unjudgeable: string[] = [];
  const acknowledged = new Set<string>();
  const failed = new Set<string>();
  const unknown = new Set<string>();
  const invoked = new Set<string>();
  const poison = new Set<string>();
  const faults: Record<string, number> = {};
  let transactions = 0;
  let committedTx = 0;
  let rolledBackTx = 0;
  let unknownTx = 0;
  let duplicateDeliveries = 0;
  let injectedDuplicates = 0;

  for (const op of history) {
    if (op.f === 'commit') {
      const value = op.value as CommitValue | undefined;
      const ids = value?.events.map((e) => e.id) ?? [];
      if (op.type === 'invoke') {
        transactions += 1;
        for (const id of ids) invoked.add(id);
      } else if (op.type === 'ok') {
        committedTx += 1;
        for (const id of ids) acknowledged.add(id);
      } else if (op.type === 'fail') {
        rolledBackTx += 1;
        for (const id of ids) failed.add(id);
      } else {
        unknownTx += 1;
        for (const id of ids) unknown.add(id);
      }
    } else if (op.f === 'inject-poison' && op.type === 'ok') {
      const id = (op.value as { id?: string } | undefined)?.id;
      if (id !== undefined) poison.add(id);
    } else if (op.f === 'inject-duplicate' && op.type === 'ok') {
      injectedDuplicates += 1;
    } else if (op.f === 'duplicate-delivery') {
      duplicateDeliveries += 1;
    }
    if (op.process === 'nemesis' && (op.type === 'ok' || op.type === 'info') && op.f !== 'heal' && !op.f.startsWith('inject-')) {
      faults[op.f] = (faults[op.f] ?? 0) + 1;
    }
  }
  if (transactions === 0) unjudgeable.push('the history holds no producer transaction');
  for (const id of invoked) {
    if (!acknowledged.has(id) && !failed.has(id) && !unknown.has(id)) unjudgeable.push(`transaction of event ${id} has no completion in the history`);
  }

  const committed = new Map(state.domain.map((d) => [d.eventId, d]));
  if (state.domain.length === 0 && committedTx > 0) unjudgeable.push('the final read found no domain rows although transactions committed');
  const effects = new Map<string, number>();
  for (const row of state.ledger) effects.set(row.eventId, (effects.get(row.eventId) ?? 0) + 1);
  const outbox = new Set(state.outbox.map((r) => r.messageId));
  const queued = new Set(state.queuedIds);
  const inbox = new Set(state.inbox);
  const deadByMessage = new Map<string, FinalState['deadLetters']>();
  for (const d of state.deadLetters) deadByMessage.set(d.messageId, [...(deadByMessage.get(d.messageId) ?? []), d]);

  const anomalies: Anomalies = {
    lostAcknowledged: [],
    lostUnknown: [],
    duplicatedEffect: [],
    phantom: [],
    reordered: [],
    stuck: [],
    unexpectedDeadLetter: [],
    escapedPoison: [],
  };

  // A commit the producer was told about must be in the domain table.
  for (const id of acknowledged) if (!committed.has(id)) anomalies.lostAcknowledged.push(id);
  for (const [id] of committed) {
    if (failed.has(id)) anomalies.phantom.push(id); // rolled back for the producer, yet committed
    const n = effects.get(id) ?? 0;
    if (n > 1) anomalies.duplicatedEffect.push(id);
    if (deadByMessage.has(id)) anomalies.unexpectedDeadLetter.push(id);
    if (n === 0 && !deadByMessage.has(id)) {
      if (outbox.has(id) || queued.has(id)) anomalies.stuck.push(id);
      else if (acknowledged.has(id) || !unknown.has(id)) anomalies.lostAcknowledged.push(id);
      else anomalies.lostUnknown.push(id);
    }
  }
  // Effects, inbox rows or queued copies of events that never committed.
  const phantoms = new Set<string>();
  for (const id of new Set([...effects.keys(), ...inbox, ...queued])) {
    if (!committed.has(id) && !poison.has(id)) phantoms.add(id);
  }
  for (const id of phantoms) if (!anomalies.phantom.includes(id)) anomalies.phantom.push(id);
  // Dead letters that belong to nothing the harness published.
  for (const id of deadByMessage.keys()) {
    if (!committed.has(id) && !poison.has(id) && !anomalies.unexpectedDeadLetter.includes(id)) anomalies.unexpectedDeadLetter.push(id);
  }
  for (const id of poison) {
    if ((effects.get(id) ?? 0) > 0 || !deadByMessage.has(id)) anomalies.escapedPoison.push(id);
  }

  if (options.ordering === true) {
    // Per key: the first effect of each event, in ledger order, must follow commit (seq) order.
    const seen = new Set<string>();
    const lastSeq = new Map<string, number>();
    for (const row of [...state.ledger].sort((a, b) => a.id - b.id)) {
      const domain = committed.get(row.eventId);
      if (domain === undefined || seen.has(row.eventId)) continue;
      seen.add(row.eventId);
      const previous = lastSeq.get(domain.key);
      if (previous !== undefined && domain.seq < previous) anomalies.reordered.push(row.eventId);
      else lastSeq.set(domain.key, domain.seq);
    }
  }

  const latencies: number[] = [];
  const firstEffect = new Map<string, number>();
  for (const row of state.ledger) {
    const t = firstEffect.get(row.eventId);
    if (t === undefined || row.appliedAt < t) firstEffect.set(row.eventId, row.appliedAt);
  }
  for (const [id, t] of firstEffect) {
    const d = committed.get(id);
    if (d !== undefined) latencies.push(Math.max(0, t - d.createdAt));
  }
  latencies.sort((a, b) => a - b);

  const maxIds = options.maxIds ?? 50;
  const counts = Object.fromEntries(ANOMALY_KINDS.map((k) => [k, anomalies[k].length])) as { [K in keyof Anomalies]: number };
  const trimmed = Object.fromEntries(ANOMALY_KINDS.map((k) => [k, anomalies[k].slice(0, maxIds)])) as unknown as Anomalies;
  const faultTotal = Object.values(faults).reduce((a, b) => a + b, 0);
  return {
    valid: unjudgeable.length === 0 && ANOMALY_KINDS.every((k) => anomalies[k].length === 0),
    unjudgeable,
    counts: {
      transactions,
      committedTransactions: committedTx,
      rolledBackTransactions: rolledBackTx,
      unknownOutcomeTransactions: unknownTx,
      committedEvents: committed.size,
      effects: state.ledger.length,
      duplicateDeliveries,
      injectedDuplicates,
      injectedPoison: poison.size,
      deadLetters: state.deadLetters.length,
      faults: faultTotal,
      ...counts,
    },
    faults,
    anomalies: trimmed,
    latencyMs: {
      count: latencies.length,
      p50: quantile(latencies, 0.5),
      p90: quantile(latencies, 0.9),
      p99: quantile(latencies, 0.99),
      max: quantile(latencies, 1),
    },
  };
}
