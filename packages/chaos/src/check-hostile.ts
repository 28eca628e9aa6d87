import type { Finding } from './check-result.js';
import type { FinalDeadLetter, FinalState } from './final-state.js';
import type { HistoryOp } from './history.js';
import type { HostileInjection } from './hostile-injection.js';

/** The hostile messages the history says were injected (confirmed by the broker or committed). */
export function injectedHostile(history: readonly HistoryOp[]): HostileInjection[] {
  return history.filter((op) => op.f === 'inject-hostile' && op.type === 'ok').map((op) => op.value as HostileInjection);
}

/** The dead letters that belong to a hostile message: by its id, its message id as sent, or the `eventId` in the letter. */
export function lettersOf(h: HostileInjection, letters: readonly FinalDeadLetter[]): FinalDeadLetter[] {
  return letters.filter((d) => d.messageId === h.id || d.eventId === h.id || (h.messageId !== '' && d.messageId === h.messageId));
}

/**
 * Holds each hostile message to its one acceptable end: no effect; a dead letter when one is
 * expected, carrying nothing its sender forged; a conflict reported when it is a conflicting
 * duplicate. Returns a finding (anomaly `escapedHostile`) per message that escaped, with why.
 */
export function checkHostile(history: readonly HistoryOp[], state: FinalState, effects: ReadonlyMap<string, number>): Finding[] {
  const findings: Finding[] = [];
  const queued = new Set(state.queuedIds);
  const deadQueued = new Set(state.deadLetterQueuedIds ?? []);
  const parked = new Set(state.parkedIds ?? []);
  const outbox = new Set(state.outbox.map((r) => r.messageId));
  // A consumer's report of a conflicting duplicate (the nemesis's own `conflicting-duplicate` ops are the fault).
  const conflicts = new Set(history.filter((op) => op.f === 'conflicting-delivery').map((op) => (op.value as { id?: string } | undefined)?.id));
  for (const h of injectedHostile(history)) {
    const escaped = (detail: string): void => {
      findings.push({ anomaly: 'escapedHostile', id: h.id, detail: `${h.kind} (${h.variant}): ${detail}` });
    };
    const sent = h.messageId !== '' ? h.messageId : h.id;
    if (h.expect.deadLetter) {
      const n = (effects.get(h.id) ?? 0) + (h.messageId !== h.id ? (effects.get(h.messageId) ?? 0) : 0);
      if (n > 0) escaped(`took effect ${n} time(s); it must end as a dead letter`);
      const letters = lettersOf(h, state.deadLetters);
      if (letters.length === 0 && n === 0) {
        if (outbox.has(h.id)) escaped('still in the outbox after the drain: never published, never dead-lettered');
        else if (queued.has(sent)) escaped('still in a work or retry queue after the drain');
        else if (deadQueued.has(sent) || deadQueued.has(h.id)) escaped('still in the dead-letter queue after the drain: no sink stored it');
        else if (parked.has(sent) || parked.has(h.id)) escaped("parked by the sink: the store refused even its minimal row (kept on the broker, not in the dead-letter store)");
        else escaped('lost: no dead letter, not queued, not in the outbox');
      }
      for (const d of letters) {
        const f = h.expect.forged ?? {};
        if (f.source !== undefined && d.source === f.source) escaped(`stored as a dead letter of ${JSON.stringify(d.source)}: the forged source was believed`);
        if (f.exchange !== undefined && d.exchange === f.exchange) {
          escaped(`stored with the forged destination ${JSON.stringify(d.exchange)}/${JSON.stringify(d.routingKey ?? null)}: a replay would publish it there`);
        }
        if (h.expect.maxAttempts !== undefined && (d.attempts ?? 0) > h.expect.maxAttempts) {
          escaped(`stored with ${d.attempts} attempts (at most ${h.expect.maxAttempts} allowed): the forged attempt count was believed`);
        }
      }
    }
    if (h.expect.conflict === true && !conflicts.has(h.id)) escaped('accepted silently as a plain duplicate (no consumer reported the conflict)');
  }
  return findings;
}
