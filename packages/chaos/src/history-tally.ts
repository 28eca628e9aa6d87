import type { CommitValue, HistoryOp } from './history.js';

/** What both checkers read from the history before they look at the final state. */
export interface HistoryTally {
  /** Event ids whose transaction the producer was told committed. */
  acknowledged: Set<string>;
  /** Event ids whose transaction certainly did not commit (failed before COMMIT, or rolled back). */
  failed: Set<string>;
  /** Event ids whose `COMMIT` reply was lost: committed or not, the final state says. */
  unknown: Set<string>;
  /** Injected poison messages the broker confirmed. */
  poison: Set<string>;
  transactions: number;
  committedTransactions: number;
  rolledBackTransactions: number;
  unknownOutcomeTransactions: number;
  duplicateDeliveries: number;
  injectedDuplicates: number;
  /** Injected faults by kind (`ok` or `info` nemesis operations, the injections and the heal aside). */
  faults: Record<string, number>;
  /** Why the history alone cannot be judged: no transaction at all, or one without a completion. */
  unjudgeable: string[];
}

/**
 * One pass over the history: the producers' transactions by outcome, the injections, the
 * duplicate deliveries and the faults. `noun` names an event in the messages (`event`, `order`).
 */
export function tallyHistory(history: readonly HistoryOp[], noun: string): HistoryTally {
  const t: HistoryTally = {
    acknowledged: new Set(),
    failed: new Set(),
    unknown: new Set(),
    poison: new Set(),
    transactions: 0,
    committedTransactions: 0,
    rolledBackTransactions: 0,
    unknownOutcomeTransactions: 0,
    duplicateDeliveries: 0,
    injectedDuplicates: 0,
    faults: {},
    unjudgeable: [],
  };
  const invoked = new Set<string>();
  for (const op of history) {
    if (op.f === 'commit') {
      const ids = (op.value as CommitValue | undefined)?.events.map((e) => e.id) ?? [];
      if (op.type === 'invoke') {
        t.transactions += 1;
        for (const id of ids) invoked.add(id);
      } else if (op.type === 'ok') {
        t.committedTransactions += 1;
        for (const id of ids) t.acknowledged.add(id);
      } else if (op.type === 'fail') {
        t.rolledBackTransactions += 1;
        for (const id of ids) t.failed.add(id);
      } else {
        t.unknownOutcomeTransactions += 1;
        for (const id of ids) t.unknown.add(id);
      }
    } else if (op.f === 'inject-poison' && op.type === 'ok') {
      const id = (op.value as { id?: string } | undefined)?.id;
      if (id !== undefined) t.poison.add(id);
    } else if (op.f === 'inject-duplicate' && op.type === 'ok') {
      t.injectedDuplicates += 1;
    } else if (op.f === 'duplicate-delivery') {
      t.duplicateDeliveries += 1;
    }
    if (op.process === 'nemesis' && (op.type === 'ok' || op.type === 'info') && op.f !== 'heal' && !op.f.startsWith('inject-')) {
      t.faults[op.f] = (t.faults[op.f] ?? 0) + 1;
    }
  }
  if (t.transactions === 0) t.unjudgeable.push('the history holds no producer transaction');
  for (const id of invoked) {
    if (!t.acknowledged.has(id) && !t.failed.has(id) && !t.unknown.has(id)) t.unjudgeable.push(`transaction of ${noun} ${id} has no completion in the history`);
  }
  return t;
}
