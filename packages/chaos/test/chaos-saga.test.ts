// The saga workload under chaos (CI): producers commit orders, each the start of an orchestrated
// saga; two orchestrator processes (one queue), inventory and payments run as real processes, the
// relays publish the commands and the saga's timeouts (scheduled messages); the nemesis kills,
// pauses and crashes them, breaks links and terminates backends, so timeouts fire during faults.
// The checker must find every saga ended (confirmed or cancelled, instance completed, stock and
// payment settled) within the bound, no step or compensation applied twice, no order both
// charged and cancelled, stock conserved. Then the harness's own self-test: a compensation made
// non-idempotent on purpose must be caught. Planted final states check the checker alone.
// The child processes run the BUILT packages: `pnpm build` first (pnpm test does).
import { describe, expect, it } from 'vitest';
import { checkSaga, emptyFinalState, formatSummary, runChaos, SAGA_FAULTS, type ChaosReport, type HistoryOp, type SagaFinalState } from '@mailroom/chaos';
import { testUrls } from '../../../test/helpers.js';

function show(report: ChaosReport): string {
  const summary = formatSummary(report);
  console.log(summary);
  return `${summary}\n${JSON.stringify(report.diagnostics ?? {}, null, 1).slice(0, 4000)}`;
}

describe('chaos: the saga workload', () => {
  it('seed 20261202, 30 s of process, link and backend faults on orchestrators, participants and relays: every saga ends, nothing twice, no money for a cancelled order', { timeout: 120_000 }, async () => {
    const { databaseUrl, amqpUrl } = testUrls();
    const report = await runChaos({
      databaseUrl,
      amqpUrl,
      workload: 'saga',
      seed: 20261202,
      durationMs: 30_000,
      faultIntervalMs: 700,
      faultConcurrency: 2,
      transactionsPerSecond: 12,
      drainTimeoutMs: 40_000,
    });
    const text = show(report);
    expect(report.valid, text).toBe(true);
    expect(report.drained).toBe(true);
    const saga = report.check.saga;
    expect(saga).toBeDefined();
    if (saga === undefined) return;
    expect(saga.orders).toBeGreaterThan(100);
    expect(saga.orders).toBe(report.check.counts.committedEvents);
    // Every outcome happened: confirmed, out of stock, declined, and timeouts (the slow card's, and
    // those the faults caused), some of them while a fault was on.
    expect(saga.confirmed).toBeGreaterThan(0);
    expect(saga.cancelled['payment-declined'] ?? 0).toBeGreaterThan(0);
    expect(saga.cancelled['charge-timeout'] ?? 0).toBeGreaterThan(0);
    expect(saga.timeoutsDuringFaults).toBeGreaterThan(0);
    // Bounded: every saga ended within 30 s of its order's commit plus the drain's time (the backlog
    // a loaded machine leaves); the checker flags each one that did not.
    expect(report.check.latencyMs.max).toBeLessThanOrEqual(saga.boundMs);
    // The faults hit the saga services: kills, pauses and crash points that fired.
    for (const kind of ['kill-consumer', 'pause-consumer', 'crash-consumer', 'kill-relay', 'terminate-backends']) expect(report.check.faults[kind] ?? 0, kind).toBeGreaterThan(0);
    expect(Object.keys(report.check.faults).every((k) => (SAGA_FAULTS as readonly string[]).includes(k))).toBe(true);
    expect(report.processes.filter((p) => p.name.startsWith('orchestrator-')).reduce((a, p) => a + p.starts, 0)).toBeGreaterThan(2);
  });

  it('flags a compensation that is not idempotent (the release gives stock back outside its transaction; the injected failures after it make the retry give it back again)', { timeout: 90_000 }, async () => {
    const { databaseUrl, amqpUrl } = testUrls();
    const report = await runChaos({
      databaseUrl,
      amqpUrl,
      workload: 'saga',
      seed: 11,
      durationMs: 6000,
      faults: [],
      handlerFailureRate: 0.3,
      transactionsPerSecond: 15,
      drainTimeoutMs: 20_000,
      saga: { defect: 'leaky-compensation', declinedRate: 0.5 },
    });
    const text = show(report);
    expect(report.valid, text).toBe(false);
    const stock = report.check.findings.filter((f) => f.anomaly === 'sagaViolation' && f.id.startsWith('stock '));
    expect(stock.length, text).toBeGreaterThan(0);
    expect(stock[0]?.detail).toMatch(/unaccounted for/);
    // The steps themselves (their ledger rows, in their transactions) were applied once each.
    expect(report.check.counts.duplicatedEffect).toBe(0);
  });

  it('refuses the events workload\'s injected messages and ordering with the saga workload', async () => {
    const { databaseUrl, amqpUrl } = testUrls();
    await expect(runChaos({ databaseUrl, amqpUrl, workload: 'saga', faults: ['poison'] })).rejects.toThrow(/does not inject poison/);
    await expect(runChaos({ databaseUrl, amqpUrl, workload: 'saga', ordering: true })).rejects.toThrow(/without ordering/);
  });
});

describe('checkSaga on planted final states', () => {
  const order = 'a0000000-0000-4000-8000-000000000001';
  const history: HistoryOp[] = [
    { time: 0, type: 'invoke', process: 'producer-1', f: 'commit', value: { tx: 'p.1', events: [{ id: order, key: order }] } },
    { time: 1, type: 'ok', process: 'producer-1', f: 'commit', value: { tx: 'p.1', events: [{ id: order, key: order }] } },
  ];
  const base = (): SagaFinalState => ({
    orders: [{ id: order, sku: 's0', qty: 2, amount: 10, card: 'good', status: 'confirmed', cancelReason: null, createdAt: 1000, settledAt: 1200 }],
    reservations: [{ orderId: order, sku: 's0', qty: 2, status: 'committed' }],
    payments: [{ orderId: order, amount: 10, status: 'charged' }],
    stock: [{ sku: 's0', initial: 5, available: 3 }],
    ledger: ['start', 'reserve', 'charging', 'charge', 'confirm', 'commit'].map((action, i) => ({ orderId: order, action, messageId: `b000000${i}-0000-4000-8000-000000000000`, process: 'p' })),
    instances: [{ id: order, status: 'completed' }],
    ignored: 0,
  });
  const judge = (saga: SagaFinalState) => checkSaga(history, saga, emptyFinalState(), { boundMs: 30_000, maxAttempts: 12 });

  it('a consistent saga is valid', () => {
    const result = judge(base());
    expect(result.valid, JSON.stringify(result.findings)).toBe(true);
    expect(result.saga).toMatchObject({ orders: 1, confirmed: 1 });
  });

  it('flags an order both charged and cancelled, with its stock kept', () => {
    const saga = base();
    saga.orders[0] = { ...saga.orders[0]!, status: 'cancelled', cancelReason: 'charge-timeout' };
    const result = judge(saga);
    expect(result.valid).toBe(false);
    expect(result.findings.filter((f) => f.anomaly === 'sagaViolation').map((f) => f.detail)).toEqual([
      expect.stringContaining('both charged and cancelled'),
      expect.stringContaining('its stock is committed'),
    ]);
  });

  it('flags a compensation applied twice, by one message or by two', () => {
    const saga = base();
    saga.ledger.push({ orderId: order, action: 'charge', messageId: 'b0000003-0000-4000-8000-000000000000', process: 'q' });
    saga.ledger.push({ orderId: order, action: 'release', messageId: 'c0000001-0000-4000-8000-000000000000', process: 'q' });
    saga.ledger.push({ orderId: order, action: 'release', messageId: 'c0000002-0000-4000-8000-000000000000', process: 'q' });
    const result = judge(saga);
    expect(result.counts.duplicatedEffect).toBe(2);
    expect(result.findings.map((f) => f.detail).join('\n')).toMatch(/one message applied 2 times[\s\S]*release applied 2 times/);
  });

  it('flags a saga that did not end, one that ended late, and stock that is not conserved', () => {
    const saga = base();
    saga.orders[0] = { ...saga.orders[0]!, settledAt: 1000 + 31_000 };
    saga.instances[0] = { id: order, status: 'running' };
    saga.stock[0] = { sku: 's0', initial: 5, available: 4 };
    const result = judge(saga);
    expect(result.counts.stuck).toBe(1);
    expect(result.findings.find((f) => f.anomaly === 'stuck')?.detail).toContain('the saga instance is running');
    expect(result.findings.filter((f) => f.anomaly === 'sagaViolation').map((f) => f.detail)).toEqual([
      expect.stringContaining('ended 31000 ms after its order committed'),
      expect.stringContaining('-1 unaccounted for'),
    ]);
  });

  it('flags an acknowledged order whose saga never started, and an order of a rolled-back transaction', () => {
    const saga = base();
    saga.ledger = [];
    saga.instances = [];
    const rolledBack = 'a0000000-0000-4000-8000-000000000002';
    saga.orders.push({ ...saga.orders[0]!, id: rolledBack });
    const result = checkSaga(
      [...history, { time: 2, type: 'invoke', process: 'producer-2', f: 'commit', value: { tx: 'p.2', events: [{ id: rolledBack, key: rolledBack }] } }, { time: 3, type: 'fail', process: 'producer-2', f: 'commit', value: { tx: 'p.2', events: [{ id: rolledBack, key: rolledBack }] } }],
      saga,
      emptyFinalState(),
      { boundMs: 30_000, maxAttempts: 12 },
    );
    expect(result.anomalies.lostAcknowledged).toContain(order);
    expect(result.anomalies.phantom).toContain(rolledBack);
  });
});
