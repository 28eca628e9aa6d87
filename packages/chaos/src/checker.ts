import { CHAOS_RETRY } from './chaos-event.js';
import { checkExits } from './check-exits.js';
import { checkHostile, injectedHostile, lettersOf } from './check-hostile.js';
import { checkLoops } from './check-loops.js';
import { noAnomalies, type Anomalies, type CheckOptions, type CheckResult, type Finding } from './check-result.js';
import { checkVerdict } from './check-verdict.js';
import type { HistoryOp } from './history.js';
import { tallyHistory } from './history-tally.js';
import type { FinalState } from './final-state.js';

/**
 * Judges a run: the history says what each producer was told, the final state what really
 * happened. Pure: the planted-history tests call it directly.
 */
export function check(history: readonly HistoryOp[], state: FinalState, options: CheckOptions = {}): CheckResult {
  const tally = tallyHistory(history, 'event');
  const { acknowledged, failed, unknown, poison } = tally;
  const unjudgeable = [...tally.unjudgeable];
  const committed = new Map(state.domain.map((d) => [d.eventId, d]));
  if (state.domain.length === 0 && tally.committedTransactions > 0) unjudgeable.push('the final read found no domain rows although transactions committed');
  const effects = new Map<string, number>();
  for (const row of state.ledger) effects.set(row.eventId, (effects.get(row.eventId) ?? 0) + 1);
  const outbox = new Set(state.outbox.map((r) => r.messageId));
  const queued = new Set(state.queuedIds);
  const inbox = new Set(state.inbox);
  const deadByMessage = new Map<string, FinalState['deadLetters']>();
  for (const d of state.deadLetters) deadByMessage.set(d.messageId, [...(deadByMessage.get(d.messageId) ?? []), d]);
  // Hostile messages are judged by their own rules (checkHostile), never as phantoms or stray dead letters.
  const hostile = injectedHostile(history);
  const hostileIds = new Set(hostile.flatMap((h) => [h.id, h.messageId]));
  const hostileLetters = new Set(hostile.flatMap((h) => lettersOf(h, state.deadLetters)));

  const anomalies: Anomalies = noAnomalies();

  // A commit the producer was told about must be in the domain table.
  for (const id of acknowledged) if (!committed.has(id)) anomalies.lostAcknowledged.push(id);
  for (const [id] of committed) {
    if (failed.has(id)) anomalies.phantom.push(id); // rolled back for the producer, yet committed
    const n = effects.get(id) ?? 0;
    if (n > 1) anomalies.duplicatedEffect.push(id);
    if (deadByMessage.get(id)?.some((d) => !hostileLetters.has(d)) === true) anomalies.unexpectedDeadLetter.push(id);
    if (n === 0 && !deadByMessage.has(id)) {
      if (outbox.has(id) || queued.has(id)) anomalies.stuck.push(id);
      else if (acknowledged.has(id) || !unknown.has(id)) anomalies.lostAcknowledged.push(id);
      else anomalies.lostUnknown.push(id);
    }
  }
  // Effects, inbox rows or queued copies of events that never committed.
  const phantoms = new Set<string>();
  for (const id of new Set([...effects.keys(), ...inbox, ...queued])) {
    if (!committed.has(id) && !poison.has(id) && !hostileIds.has(id)) phantoms.add(id);
  }
  for (const id of phantoms) if (!anomalies.phantom.includes(id)) anomalies.phantom.push(id);
  // Dead letters that belong to nothing the harness published.
  for (const [id, letters] of deadByMessage) {
    const stray = letters.some((d) => !hostileLetters.has(d));
    if (stray && !committed.has(id) && !poison.has(id) && !anomalies.unexpectedDeadLetter.includes(id)) anomalies.unexpectedDeadLetter.push(id);
  }
  for (const id of poison) {
    if ((effects.get(id) ?? 0) > 0 || !deadByMessage.has(id)) anomalies.escapedPoison.push(id);
  }
  const findings: Finding[] = [
    ...checkHostile(history, state, effects),
    ...checkLoops(history, state, { maxAttempts: options.maxAttempts ?? CHAOS_RETRY.maxAttempts, hotLoopPerSecond: options.hotLoopPerSecond ?? 20 }),
    ...checkExits(history),
  ];
  for (const f of findings) if (!anomalies[f.anomaly].includes(f.id)) anomalies[f.anomaly].push(f.id);

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

  return checkVerdict({
    tally,
    unjudgeable,
    anomalies,
    findings,
    counts: {
      committedEvents: committed.size,
      effects: state.ledger.length,
      injectedDuplicates: tally.injectedDuplicates,
      injectedPoison: poison.size,
      injectedHostile: hostile.length,
      deadLetters: state.deadLetters.length,
    },
    latencies,
    maxIds: options.maxIds ?? 50,
  });
}
