import { checkExits } from './check-exits.js';
import { checkLoops } from './check-loops.js';
import { noAnomalies, type Anomalies, type CheckResult, type Finding, type SagaOutcomes } from './check-result.js';
import { checkVerdict } from './check-verdict.js';
import type { FinalState } from './final-state.js';
import type { HistoryOp } from './history.js';
import { tallyHistory } from './history-tally.js';
import type { SagaFinalState } from './saga-final-state.js';

/** Options of {@link checkSaga}. */
export interface SagaCheckOptions {
  /** Every saga must end within this many ms of its order's commit. */
  boundMs: number;
  /** The consumers' attempts per message (the loop check's budget). */
  maxAttempts: number;
  /** Deliveries of one message within one second that make a hot loop. Default: 20. */
  hotLoopPerSecond?: number;
  /** Ids listed per anomaly, at most. Default: 50. */
  maxIds?: number;
  /** The wall-clock time (ms) of the history's zero, to place the sagas' ends among the faults. Default: none (not counted). */
  historyStartMs?: number;
}

/**
 * When the nemesis's faults were on, in history time: from each fault's invoke to its completion,
 * plus a second (a killed process is restarted about then; a link heals and reconnects).
 */
function faultWindows(history: readonly HistoryOp[]): Array<[number, number]> {
  const open = new Map<string, number[]>();
  const windows: Array<[number, number]> = [];
  for (const op of history) {
    if (op.process !== 'nemesis' || op.f === 'heal' || op.f.startsWith('inject-')) continue;
    if (op.type === 'invoke') open.set(op.f, [...(open.get(op.f) ?? []), op.time]);
    else {
      const started = open.get(op.f)?.shift();
      if (started !== undefined && op.type !== 'fail') windows.push([started, op.time + 1000]);
    }
  }
  return windows;
}

/**
 * Ledger actions that change something: each may happen at most once per order. The others
 * (`late-*`, `*-refused`, `*-nothing`, `answer-after-void`) are a step that found its work done.
 */
function isEffect(action: string): boolean {
  return !action.startsWith('late-') && !action.endsWith('-refused') && !action.endsWith('-nothing') && action !== 'answer-after-void';
}

/**
 * Judges a saga run: the history says which orders committed (each the start of one saga), the
 * final state what became of them. Every committed order must have ended — confirmed or
 * cancelled, its saga instance completed, its reservation and payment settled — within the
 * bound; no step or compensation may have been applied twice; no order may be both charged and
 * cancelled, nor confirmed without its charge and its stock; stock is conserved per SKU. Pure:
 * the planted-history tests call it directly.
 */
export function checkSaga(history: readonly HistoryOp[], saga: SagaFinalState, state: FinalState, options: SagaCheckOptions): CheckResult {
  const tally = tallyHistory(history, 'order');
  const { acknowledged, failed, unknown } = tally;
  const unjudgeable = [...tally.unjudgeable];

  const anomalies: Anomalies = noAnomalies();
  const findings: Finding[] = [];
  const flag = (anomaly: keyof Anomalies, id: string, detail: string): void => {
    if (!anomalies[anomaly].includes(id)) anomalies[anomaly].push(id);
    findings.push({ anomaly, id, detail });
  };
  const orders = new Map(saga.orders.map((o) => [o.id, o]));
  if (saga.orders.length === 0 && tally.committedTransactions > 0) unjudgeable.push('the final read found no orders although transactions committed');
  const reservations = new Map(saga.reservations.map((r) => [r.orderId, r]));
  const payments = new Map(saga.payments.map((p) => [p.orderId, p]));
  const instances = new Map(saga.instances.map((i) => [i.id, i]));
  const ledgerOf = new Map<string, string[]>();
  const byMessage = new Map<string, { n: number; actions: string[] }>();
  for (const row of saga.ledger) {
    ledgerOf.set(row.orderId, [...(ledgerOf.get(row.orderId) ?? []), row.action]);
    const m = byMessage.get(row.messageId) ?? { n: 0, actions: [] };
    m.n += 1;
    m.actions.push(`${row.action} by ${row.process}`);
    byMessage.set(row.messageId, m);
  }
  const pendingIds = new Set([...state.outbox.map((o) => o.messageId), ...state.queuedIds]);

  // Orders the producers were told committed must exist; orders whose transaction failed must not.
  for (const id of acknowledged) if (!orders.has(id)) flag('lostAcknowledged', id, 'the producer was told it committed; the order is not in the table');
  for (const id of orders.keys()) if (failed.has(id)) flag('phantom', id, 'rolled back for the producer, yet the order exists');
  for (const id of ledgerOf.keys()) if (!orders.has(id)) flag('phantom', id, `steps applied (${(ledgerOf.get(id) ?? []).join(', ')}) for an order that never committed`);

  // No message applied twice; no step or compensation applied twice for one order.
  for (const [messageId, m] of byMessage) if (m.n > 1) flag('duplicatedEffect', messageId, `one message applied ${m.n} times: ${m.actions.join('; ')}`);
  let late = 0;
  for (const [orderId, actions] of ledgerOf) {
    const counts = new Map<string, number>();
    for (const a of actions) {
      if (a.startsWith('late-')) late += 1;
      if (isEffect(a)) counts.set(a, (counts.get(a) ?? 0) + 1);
    }
    for (const [a, n] of counts) if (n > 1) flag('duplicatedEffect', orderId, `${a} applied ${n} times (ledger: ${actions.join(', ')})`);
    const ends = (counts.get('confirm') ?? 0) + (counts.get('cancel') ?? 0);
    if (ends > 1) flag('duplicatedEffect', orderId, `the saga ended ${ends} times (ledger: ${actions.join(', ')})`);
  }

  // Every committed order's saga ended, everything it commanded settled, within the bound.
  const latencies: number[] = [];
  const outcomes: SagaOutcomes = { orders: orders.size, confirmed: 0, cancelled: {}, refunded: 0, late: late + saga.ignored, timeoutsDuringFaults: 0, boundMs: options.boundMs };
  const windows = faultWindows(history);
  for (const o of orders.values()) {
    const actions = ledgerOf.get(o.id) ?? [];
    const instance = instances.get(o.id);
    const reservation = reservations.get(o.id);
    const payment = payments.get(o.id);
    if (!actions.includes('start') && instance === undefined) {
      if (pendingIds.has(o.id)) flag('stuck', o.id, 'its saga never started: the order.placed is still in the outbox or a queue');
      else if (unknown.has(o.id) && !acknowledged.has(o.id)) flag('lostUnknown', o.id, 'committed (unknown outcome for the producer); its saga never started');
      else flag('lostAcknowledged', o.id, 'committed; its saga never started and its order.placed is nowhere');
      continue;
    }
    const open: string[] = [];
    if (o.status === 'pending') open.push('the order is pending');
    if (instance?.status !== 'completed') open.push(`the saga instance is ${instance?.status ?? 'missing'}`);
    if (reservation?.status === 'reserved') open.push('its stock is still only reserved');
    if (payment?.status === 'pending') open.push('its payment is still pending');
    if (open.length > 0) flag('stuck', o.id, `not ended after the drain: ${open.join(', ')} (ledger: ${actions.join(', ')})`);
    if (o.settledAt !== null) {
      const ms = o.settledAt - o.createdAt;
      latencies.push(ms);
      if (ms > options.boundMs) flag('sagaViolation', o.id, `ended ${ms} ms after its order committed; the bound is ${options.boundMs} ms`);
    }
    if (o.status === 'confirmed') {
      outcomes.confirmed += 1;
      if (payment?.status !== 'charged') flag('sagaViolation', o.id, `confirmed, but its payment is ${payment?.status ?? 'missing'}`);
      else if (payment.amount !== o.amount) flag('sagaViolation', o.id, `confirmed for ${o.amount}, charged ${payment.amount}`);
      if (reservation?.status !== 'committed') flag('sagaViolation', o.id, `confirmed, but its reservation is ${reservation?.status ?? 'missing'}`);
    } else if (o.status === 'cancelled') {
      const reason = o.cancelReason ?? '?';
      outcomes.cancelled[reason] = (outcomes.cancelled[reason] ?? 0) + 1;
      if (payment?.status === 'charged') flag('sagaViolation', o.id, `both charged and cancelled (${reason}; ledger: ${actions.join(', ')})`);
      if (payment?.status === 'refunded') outcomes.refunded += 1;
      if (reason.endsWith('-timeout') && o.settledAt !== null && options.historyStartMs !== undefined) {
        const at = o.settledAt - options.historyStartMs;
        if (windows.some(([from, to]) => at >= from && at <= to)) outcomes.timeoutsDuringFaults += 1;
      }
      if (reservation?.status === 'reserved' || reservation?.status === 'committed') flag('sagaViolation', o.id, `cancelled (${reason}), but its stock is ${reservation.status}`);
    }
  }

  // Stock is conserved per SKU: what is gone from the shelf is exactly what is reserved or sold.
  for (const st of saga.stock) {
    const held = saga.reservations.filter((r) => r.sku === st.sku && (r.status === 'reserved' || r.status === 'committed')).reduce((a, r) => a + r.qty, 0);
    if (st.initial - st.available !== held) flag('sagaViolation', `stock ${st.sku}`, `${st.initial} at the start, ${st.available} on the shelf, ${held} reserved or sold: ${st.initial - st.available - held} unaccounted for`);
  }

  // The saga workload injects no poison: every dead letter is unexpected.
  for (const d of state.deadLetters) flag('unexpectedDeadLetter', d.messageId, `dead-lettered by ${d.source} (${d.reason})`);
  for (const f of [...checkLoops(history, state, { maxAttempts: options.maxAttempts, hotLoopPerSecond: options.hotLoopPerSecond ?? 20 }), ...checkExits(history)]) {
    flag(f.anomaly, f.id, f.detail);
  }

  return {
    ...checkVerdict({
      tally,
      unjudgeable,
      anomalies,
      findings,
      // The saga workload injects no messages of its own.
      counts: { committedEvents: orders.size, effects: saga.ledger.length, injectedDuplicates: 0, injectedPoison: 0, injectedHostile: 0, deadLetters: state.deadLetters.length },
      latencies,
      maxIds: options.maxIds ?? 50,
    }),
    saga: outcomes,
  };
}
