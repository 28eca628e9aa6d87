// The checker on planted histories: a harness that cannot fail proves nothing, so every anomaly
// it promises to find is planted here once, on top of a history that is valid.
import { describe, expect, it } from 'vitest';
import { DEAD_LETTER_REASON } from '@mailroom/core';
import { check, formatSummary, parseHistory, type ChaosReport, type FinalState, type HistoryOp } from '@mailroom/chaos';

const id = (n: number): string => `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`;

/** Three committed transactions on key k0 (seq 1..3), one rolled back, one unknown outcome that committed. */
function baseline(): { history: HistoryOp[]; state: FinalState } {
  const history: HistoryOp[] = [];
  let time = 0;
  const op = (type: HistoryOp['type'], process: string, f: string, value?: unknown): void => {
    history.push({ time: (time += 1), type, process, f, ...(value !== undefined ? { value } : {}) });
  };
  const tx = (n: number, type: HistoryOp['type']): void => {
    const value = { tx: `t${n}`, events: [{ id: id(n), key: 'k0' }] };
    op('invoke', 'producer-1', 'commit', value);
    op(type, 'producer-1', 'commit', value);
  };
  tx(1, 'ok');
  tx(2, 'ok');
  tx(9, 'fail'); // rolled back
  tx(3, 'info'); // COMMIT reply lost; the domain table says it committed
  op('invoke', 'nemesis', 'kill-relay');
  op('ok', 'nemesis', 'kill-relay', { target: 'relay-1' });
  op('invoke', 'nemesis', 'inject-poison', { id: id(100) });
  op('ok', 'nemesis', 'inject-poison', { id: id(100) });
  op('info', 'consumer-1', 'duplicate-delivery', { id: id(1) });
  const domain = [1, 2, 3].map((n) => ({ eventId: id(n), key: 'k0', seq: n, createdAt: 1000 + n * 10 }));
  const ledger = [1, 2, 3].map((n) => ({ id: n, eventId: id(n), key: 'k0', seq: null, appliedAt: 1000 + n * 10 + n * 5 }));
  const state: FinalState = {
    domain,
    outbox: [],
    inbox: [1, 2, 3].map(id),
    ledger,
    queues: [{ queue: 'work', messages: 0 }],
    queuedIds: [],
    deadLetterQueuedIds: [],
    deadLetters: [{ messageId: id(100), source: 'work', reason: DEAD_LETTER_REASON.invalidPayload, attempts: 1, exchange: 'chaos.x', routingKey: 'chaos.event', eventId: id(100) }],
    // Single deliveries are not listed; one event delivered twice (a redelivery after a kill) is allowed.
    deliveries: [{ route: 'work-queue', messageId: id(1), total: 2, afterMark: 0, peakPerSecond: 2, requeues: 0 }],
  };
  return { history, state };
}

describe('checker', () => {
  it('finds nothing in a valid history, and counts what happened', () => {
    const { history, state } = baseline();
    const result = check(history, state, { ordering: true });
    expect(result.unjudgeable).toEqual([]);
    expect(result.valid).toBe(true);
    expect(result.counts).toMatchObject({
      transactions: 4,
      committedTransactions: 2,
      rolledBackTransactions: 1,
      unknownOutcomeTransactions: 1,
      committedEvents: 3,
      effects: 3,
      duplicateDeliveries: 1,
      injectedPoison: 1,
      injectedHostile: 0,
      faults: 1,
      escapedHostile: 0,
      poisonLoop: 0,
      unexpectedExit: 0,
    });
    expect(result.findings).toEqual([]);
    expect(result.faults).toEqual({ 'kill-relay': 1 });
    expect(result.latencyMs).toMatchObject({ count: 3, p50: 10, max: 15 });
  });

  it('flags a lost event, telling an acknowledged commit from an unknown outcome', () => {
    const { history, state } = baseline();
    state.ledger = state.ledger.filter((l) => l.eventId !== id(2) && l.eventId !== id(3));
    state.inbox = [id(1)];
    const result = check(history, state);
    expect(result.valid).toBe(false);
    expect(result.anomalies.lostAcknowledged).toEqual([id(2)]);
    expect(result.anomalies.lostUnknown).toEqual([id(3)]);
  });

  it('flags an acknowledged commit missing from the domain table as lost', () => {
    const { history, state } = baseline();
    state.domain = state.domain.filter((d) => d.eventId !== id(1));
    state.ledger = state.ledger.filter((l) => l.eventId !== id(1));
    state.inbox = [id(2), id(3)];
    expect(check(history, state).anomalies.lostAcknowledged).toEqual([id(1)]);
  });

  it('flags a double effect', () => {
    const { history, state } = baseline();
    state.ledger.push({ id: 4, eventId: id(2), key: 'k0', seq: null, appliedAt: 2000 });
    const result = check(history, state);
    expect(result.valid).toBe(false);
    expect(result.anomalies.duplicatedEffect).toEqual([id(2)]);
    expect(result.counts.duplicatedEffect).toBe(1);
  });

  it('flags a phantom: the effect of a rolled-back transaction', () => {
    const { history, state } = baseline();
    state.ledger.push({ id: 4, eventId: id(9), key: 'k0', seq: null, appliedAt: 2000 });
    const result = check(history, state);
    expect(result.valid).toBe(false);
    expect(result.anomalies.phantom).toEqual([id(9)]);
  });

  it('flags a phantom: a rolled-back transaction whose rows are in the domain table', () => {
    const { history, state } = baseline();
    state.domain.push({ eventId: id(9), key: 'k0', seq: 4, createdAt: 1100 });
    state.ledger.push({ id: 4, eventId: id(9), key: 'k0', seq: null, appliedAt: 1200 });
    expect(check(history, state).anomalies.phantom).toEqual([id(9)]);
  });

  it('flags a reorder within a key when ordering is on, and only then', () => {
    const { history, state } = baseline();
    // seq 3 took effect before seq 2
    state.ledger = [
      { id: 1, eventId: id(1), key: 'k0', seq: null, appliedAt: 1015 },
      { id: 2, eventId: id(3), key: 'k0', seq: null, appliedAt: 1040 },
      { id: 3, eventId: id(2), key: 'k0', seq: null, appliedAt: 1045 },
    ];
    const ordered = check(history, state, { ordering: true });
    expect(ordered.valid).toBe(false);
    expect(ordered.anomalies.reordered).toEqual([id(2)]);
    expect(check(history, state, { ordering: false }).valid).toBe(true);
  });

  it('does not call a duplicate effect of an earlier event a reorder (the first effect counts)', () => {
    const { history, state } = baseline();
    state.ledger.push({ id: 4, eventId: id(1), key: 'k0', seq: null, appliedAt: 2000 });
    const result = check(history, state, { ordering: true });
    expect(result.anomalies.reordered).toEqual([]);
    expect(result.anomalies.duplicatedEffect).toEqual([id(1)]);
  });

  it('flags a stuck event: committed, no effect, still in the outbox or in a queue', () => {
    const { history, state } = baseline();
    state.ledger = state.ledger.filter((l) => l.eventId === id(1));
    state.outbox = [{ messageId: id(2), attempts: 7, lastError: 'no publisher confirm before the deadline' }];
    state.queuedIds = [id(3)];
    const result = check(history, state);
    expect(result.valid).toBe(false);
    expect(result.anomalies.stuck.sort()).toEqual([id(2), id(3)]);
    expect(result.anomalies.lostAcknowledged).toEqual([]);
  });

  it('flags an unexpected dead letter and an escaped poison message', () => {
    const { history, state } = baseline();
    state.deadLetters = [{ messageId: id(2), source: 'work', reason: DEAD_LETTER_REASON.maxAttempts }];
    state.ledger = state.ledger.filter((l) => l.eventId !== id(2));
    const result = check(history, state);
    expect(result.anomalies.unexpectedDeadLetter).toEqual([id(2)]);
    expect(result.anomalies.lostAcknowledged).toEqual([]);
    expect(result.anomalies.escapedPoison).toEqual([id(100)]);
  });

  it('flags poison that took effect', () => {
    const { history, state } = baseline();
    state.ledger.push({ id: 4, eventId: id(100), key: null, seq: null, appliedAt: 2000 });
    expect(check(history, state).anomalies.escapedPoison).toEqual([id(100)]);
  });

  it('cannot judge an empty history or a transaction without completion', () => {
    const { state } = baseline();
    expect(check([], state).unjudgeable).toContain('the history holds no producer transaction');
    const open: HistoryOp[] = [{ time: 1, type: 'invoke', process: 'producer-1', f: 'commit', value: { tx: 't', events: [{ id: id(1), key: 'k0' }] } }];
    const result = check(open, state);
    expect(result.valid).toBe(false);
    expect(result.unjudgeable.join()).toMatch(/no completion/);
  });

  it('reads a JSONL history and summarises a report readably', () => {
    const { history, state } = baseline();
    const parsed = parseHistory(history.map((op) => JSON.stringify(op)).join('\n'));
    state.ledger.push({ id: 4, eventId: id(2), key: 'k0', seq: null, appliedAt: 2000 });
    const result = check(parsed, state);
    const report: ChaosReport = {
      valid: result.valid,
      seed: 42,
      startedAt: '',
      finishedAt: '',
      elapsedMs: 1000,
      config: {},
      phases: {},
      drained: true,
      processes: [],
      check: result,
      verify: [],
      notProved: ['your handler\'s effects were not checked'],
    };
    const summary = formatSummary(report);
    expect(summary).toContain('INVALID (seed 42');
    expect(summary).toContain('duplicated effect 1');
    expect(summary).toContain(id(2));
    expect(summary).toContain("not proved: your handler's effects were not checked");
  });
});
