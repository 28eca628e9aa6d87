// The checker's newer anomalies on planted histories (issue 9): escaped hostile messages, poison
// loops and unexpected process exits. Each is planted once on top of a valid history, and the
// valid case next to it shows what is allowed.
import { describe, expect, it } from 'vitest';
import { DEAD_LETTER_REASON } from '@mailroom/core';
import { check, formatSummary, type ChaosReport, type FinalState, type HistoryOp, type HostileInjection } from '@mailroom/chaos';

const id = (n: number): string => `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`;

/** Two committed events on k0 (both applied), a heal at t=1000, and room for planted operations. */
function baseline(): { history: HistoryOp[]; state: FinalState; op: (type: HistoryOp['type'], process: string, f: string, value?: unknown, time?: number) => void } {
  const history: HistoryOp[] = [];
  let clock = 0;
  const op = (type: HistoryOp['type'], process: string, f: string, value?: unknown, time?: number): void => {
    clock = time ?? clock + 1;
    history.push({ time: clock, type, process, f, ...(value !== undefined ? { value } : {}) });
  };
  for (const n of [1, 2]) {
    const value = { tx: `t${n}`, events: [{ id: id(n), key: 'k0' }] };
    op('invoke', 'producer-1', 'commit', value);
    op('ok', 'producer-1', 'commit', value);
  }
  const state: FinalState = {
    domain: [1, 2].map((n) => ({ eventId: id(n), key: 'k0', seq: n, createdAt: 1000 + n })),
    outbox: [],
    inbox: [id(1), id(2)],
    ledger: [1, 2].map((n) => ({ id: n, eventId: id(n), key: 'k0', seq: null, appliedAt: 1100 + n })),
    queues: [],
    queuedIds: [],
    deadLetterQueuedIds: [],
    deadLetters: [],
    deliveries: [],
  };
  return { history, state, op };
}

/** Plants an injection (invoke + ok) and returns it. */
function inject(op: ReturnType<typeof baseline>['op'], h: HostileInjection): HostileInjection {
  op('invoke', 'nemesis', 'inject-hostile', h);
  op('ok', 'nemesis', 'inject-hostile', h);
  return h;
}

const nulType = (n: number): HostileInjection => ({ id: id(n), kind: 'hostile-nul', variant: 'NUL in the type', messageId: id(n), expect: { deadLetter: true } });
const heal = (op: ReturnType<typeof baseline>['op']): void => {
  op('invoke', 'nemesis', 'heal', undefined, 1000);
  op('ok', 'nemesis', 'heal', undefined, 1001);
};

describe('checker: escaped hostile messages', () => {
  it('accepts a hostile message that ended as its dead letter, found by the eventId under a derived id', () => {
    const { history, state, op } = baseline();
    inject(op, { id: id(50), kind: 'hostile-headers', variant: 'near-limit headers, invalid id', messageId: 'not-a-uuid-1', expect: { deadLetter: true } });
    state.deadLetters.push({ messageId: id(9050), source: 'work', reason: DEAD_LETTER_REASON.invalidMessageId, attempts: 1, exchange: 'x', routingKey: 'r', eventId: id(50) });
    const result = check(history, state);
    expect(result.findings).toEqual([]);
    expect(result.valid).toBe(true);
    expect(result.counts.injectedHostile).toBe(1);
  });

  it('flags one that took effect (deep JSON handled as if it were fine)', () => {
    const { history, state, op } = baseline();
    inject(op, { id: id(51), kind: 'deep-json', variant: 'JSON 5000 levels deep', messageId: id(51), expect: { deadLetter: true } });
    state.ledger.push({ id: 3, eventId: id(51), key: 'hostile', seq: null, appliedAt: 1200 });
    state.inbox.push(id(51));
    const result = check(history, state);
    expect(result.valid).toBe(false);
    expect(result.anomalies.escapedHostile).toEqual([id(51)]);
    expect(result.anomalies.phantom).toEqual([]); // judged as hostile, not as a phantom
    expect(result.findings[0]?.detail).toMatch(/deep-json \(JSON 5000 levels deep\): took effect 1 time/);
  });

  it('flags one lost, one stuck in the work queue, one stuck in the dead-letter queue, one still in the outbox, one parked by the sink', () => {
    const { history, state, op } = baseline();
    for (const n of [52, 53, 54]) inject(op, nulType(n));
    inject(op, { id: id(55), kind: 'unpublishable-row', variant: 'routing key over 255 bytes', messageId: id(55), expect: { deadLetter: true } });
    inject(op, { id: id(56), kind: 'hostile-nul', variant: 'NUL in the key, invalid id', messageId: 'not-a-uuid-2', expect: { deadLetter: true } });
    state.queuedIds = [id(53)];
    state.deadLetterQueuedIds = [id(54)];
    state.outbox = [{ messageId: id(55), attempts: 40, lastError: 'short string too long' }];
    state.parkedIds = [id(9056), id(56)]; // a derived id, and the hostile marker header
    const result = check(history, state);
    expect(result.anomalies.escapedHostile).toEqual([id(52), id(53), id(54), id(55), id(56)]);
    expect(result.anomalies.phantom).toEqual([]);
    expect(result.anomalies.stuck).toEqual([]);
    const details = result.findings.map((f) => f.detail);
    expect(details[0]).toMatch(/lost: no dead letter/);
    expect(details[1]).toMatch(/still in a work or retry queue/);
    expect(details[2]).toMatch(/still in the dead-letter queue after the drain: no sink stored it/);
    expect(details[3]).toMatch(/still in the outbox/);
    expect(details[4]).toMatch(/parked by the sink: the store refused even its minimal row/);
  });

  it('flags forged retry state and forged dead letters whose claims were believed, not the ones refused', () => {
    const { history, state, op } = baseline();
    const forged = { source: 'chaos.forged.source', exchange: 'amq.topic', routingKey: 'chaos.forged.destination' };
    inject(op, { id: id(56), kind: 'forged-retry', variant: 'attempt 99', messageId: id(56), expect: { deadLetter: true, forged: { exchange: forged.exchange }, maxAttempts: 12 } });
    inject(op, { id: id(57), kind: 'forged-dead-letter', variant: 'straight to the DLX', messageId: id(57), expect: { deadLetter: true, forged } });
    inject(op, { id: id(58), kind: 'forged-retry', variant: 'attempt 99', messageId: id(58), expect: { deadLetter: true, forged: { exchange: forged.exchange }, maxAttempts: 12 } });
    inject(op, { id: id(59), kind: 'forged-dead-letter', variant: 'straight to the DLX', messageId: id(59), expect: { deadLetter: true, forged } });
    state.deadLetters.push(
      // believed: 100 attempts after one delivery, the forged destination, the forged source
      { messageId: id(56), source: 'work', reason: DEAD_LETTER_REASON.maxAttempts, attempts: 100, exchange: 'amq.topic', routingKey: forged.routingKey, eventId: id(56) },
      { messageId: id(57), source: forged.source, reason: DEAD_LETTER_REASON.nonRetryable, attempts: 1, exchange: 'amq.topic', routingKey: forged.routingKey, eventId: id(57) },
      // refused: every attempt used, its real origin; kept as unsealed under a derived id
      { messageId: id(58), source: 'work', reason: DEAD_LETTER_REASON.maxAttempts, attempts: 12, exchange: '', routingKey: 'work', eventId: id(58) },
      { messageId: id(9059), source: 'unsealed', reason: DEAD_LETTER_REASON.unsealed, attempts: 0, exchange: null, routingKey: null, eventId: id(59) },
    );
    const result = check(history, state);
    expect(result.anomalies.escapedHostile).toEqual([id(56), id(57)]);
    expect(result.anomalies.unexpectedDeadLetter).toEqual([]);
    const details = result.findings.map((f) => f.detail).join('\n');
    expect(details).toMatch(/100 attempts \(at most 12 allowed\): the forged attempt count was believed/);
    expect(details).toMatch(/forged destination "amq.topic"/);
    expect(details).toMatch(/dead letter of "chaos.forged.source": the forged source was believed/);
  });

  it('flags a conflicting duplicate accepted silently, and accepts one a consumer reported', () => {
    const { history, state, op } = baseline();
    inject(op, { id: id(1), kind: 'conflicting-duplicate', variant: 'same id, another payload', messageId: id(1), expect: { deadLetter: false, conflict: true } });
    inject(op, { id: id(2), kind: 'conflicting-duplicate', variant: 'same id, another payload', messageId: id(2), expect: { deadLetter: false, conflict: true } });
    op('info', 'consumer-1', 'duplicate-delivery', { id: id(1) });
    op('info', 'consumer-1', 'conflicting-delivery', { id: id(2) });
    const result = check(history, state);
    expect(result.anomalies.escapedHostile).toEqual([id(1)]);
    expect(result.findings[0]?.detail).toMatch(/accepted silently as a plain duplicate/);
    // A second effect of a conflicting copy is a double effect like any other.
    state.ledger.push({ id: 3, eventId: id(2), key: 'k0', seq: null, appliedAt: 1300 });
    expect(check(history, state).anomalies.duplicatedEffect).toEqual([id(2)]);
  });
});

describe('checker: poison loops', () => {
  it('flags a hot loop on the wire: many deliveries of one message within a second', () => {
    const { history, state, op } = baseline();
    inject(op, { ...nulType(60), kind: 'hostile-headers', variant: 'near-limit headers' });
    state.deliveries = [{ route: 'work-queue', messageId: id(60), total: 9000, afterMark: 4000, peakPerSecond: 250, requeues: 8999 }];
    state.queuedIds = [id(60)];
    const result = check(history, state);
    expect(result.anomalies.poisonLoop).toEqual([id(60)]);
    expect(result.findings.find((f) => f.anomaly === 'poisonLoop')?.detail).toMatch(/delivered from the work-queue 250 times within one second .*given back 8999 time/);
  });

  it('flags, after the heal, more deliveries than the attempts allow, a dead letter the sink keeps giving back, and a row published again and again', () => {
    const { history, state, op } = baseline();
    heal(op);
    state.deliveries = [
      { route: 'work-queue', messageId: id(61), total: 30, afterMark: 15, peakPerSecond: 2, requeues: 0 },
      { route: 'dead-letter-queue', messageId: id(62), total: 70, afterMark: 60, peakPerSecond: 1, requeues: 69 },
      { route: 'relay-publish', messageId: id(1), total: 9, afterMark: 6, peakPerSecond: 1, requeues: 0 },
    ];
    const result = check(history, state, { maxAttempts: 12 });
    expect(result.anomalies.poisonLoop).toEqual([id(61), id(62), id(1)]);
    expect(result.findings.map((f) => f.detail)).toEqual([
      expect.stringMatching(/work-queue 15 times after the heal; 12 attempts allow 14/),
      expect.stringMatching(/dead-letter-queue 60 times after the heal/),
      expect.stringMatching(/published 6 times after the heal/),
    ]);
  });

  it('allows what faults explain: many deliveries before the heal at a calm rate, and the attempts after it', () => {
    const { history, state, op } = baseline();
    heal(op);
    state.deliveries = [
      { route: 'work-queue', messageId: id(1), total: 25, afterMark: 14, peakPerSecond: 10, requeues: 6 },
      { route: 'dead-letter-queue', messageId: id(2), total: 8, afterMark: 3, peakPerSecond: 3, requeues: 5 },
    ];
    expect(check(history, state, { maxAttempts: 12 }).anomalies.poisonLoop).toEqual([]);
  });

  it("flags handler runs and requeues after the heal that never touch the wire (retries in place), from the consumers' reports", () => {
    const { history, state, op } = baseline();
    op('info', 'consumer-1', 'requeued', { id: id(2), error: 'terminating connection' }, 500); // before the heal: a fault explains it
    heal(op);
    for (let i = 0; i < 15; i += 1) op('info', 'consumer-1', 'handler-run', { id: id(1), attempt: 1, run: i + 2 });
    for (let i = 0; i < 4; i += 1) op('info', 'consumer-1', 'requeued', { id: id(2), error: 'invalid byte sequence' });
    const result = check(history, state, { maxAttempts: 12 });
    expect(result.anomalies.poisonLoop).toEqual([id(1), id(2)]);
    expect(result.findings.map((f) => f.detail)).toEqual([expect.stringMatching(/handler ran 15 more times after the heal/), expect.stringMatching(/requeued 4 times after the heal/)]);
  });
});

describe('checker: unexpected exits', () => {
  it('flags every exit the harness did not cause, with its code or signal and last output; kills and crash points are fine', () => {
    const { history, state, op } = baseline();
    op('info', 'relay-1', 'exit', { pid: 11, code: null, signal: 'SIGKILL', cause: 'killed' });
    op('info', 'consumer-1', 'exit', { pid: 12, code: null, signal: 'SIGKILL', cause: 'crash-point' });
    op('info', 'relay-2', 'exit', { pid: 13, code: 1, signal: null, cause: 'unexpected' });
    op('info', 'relay-2', 'unexpected-exit', { pid: 13, code: 1, signal: null, ready: true, lastLines: ["node:events:502", "      throw er; // Unhandled 'error' event"] }, 41_400);
    const result = check(history, state);
    expect(result.valid).toBe(false);
    expect(result.anomalies.unexpectedExit).toEqual(['relay-2 (pid 13)']);
    const detail = result.findings[0]?.detail ?? '';
    expect(detail).toMatch(/^exit code 1, 41.4 s into the run; last output:/);
    expect(detail).toContain("Unhandled 'error' event");

    const report: ChaosReport = { valid: false, seed: 90210, startedAt: '', finishedAt: '', elapsedMs: 1, config: {}, phases: {}, drained: true, processes: [], check: result, verify: [] };
    const summary = formatSummary(report);
    expect(summary).toContain('unexpected exits 1');
    expect(summary).toContain('relay-2 (pid 13): exit code 1');
    expect(summary).toContain("throw er; // Unhandled 'error' event");
  });
});
