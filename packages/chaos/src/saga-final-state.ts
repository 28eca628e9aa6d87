import { quoteIdentifier } from '@mailroom/core/internal';
import type { AdminLinks } from './admin-links.js';
import type { RunResources } from './run-resources.js';
import { CHAOS_SAGA_NAME } from './saga-orchestrator.js';

/** What the saga workload left, read once every process stopped: the saga checker's source of truth. */
export interface SagaFinalState {
  orders: Array<{ id: string; sku: string; qty: number; amount: number; card: string; status: string; cancelReason: string | null; createdAt: number; settledAt: number | null }>;
  reservations: Array<{ orderId: string; sku: string; qty: number; status: string }>;
  payments: Array<{ orderId: string; amount: number | null; status: string }>;
  stock: Array<{ sku: string; initial: number; available: number }>;
  /** One row per step or compensation applied, in insertion order. */
  ledger: Array<{ orderId: string; action: string; messageId: string; process: string }>;
  /** The saga instances (one per order that started one). */
  instances: Array<{ id: string; status: string }>;
  /** Messages that reached an instance after it ended: recorded in its history as ignored. */
  ignored: number;
}

/** A saga final state with nothing in it: what the checker judges when the run never got to its final reads. */
export function emptySagaState(): SagaFinalState {
  return { orders: [], reservations: [], payments: [], stock: [], ledger: [], instances: [], ignored: 0 };
}

/** Reads the saga workload's tables and the saga instances of the run's schema. */
export async function readSagaState(links: AdminLinks, r: RunResources): Promise<SagaFinalState> {
  const s = quoteIdentifier(r.schema);
  const db = links.pool;
  const orders = await db.query<{ id: string; sku: string; qty: number; amount: string; card: string; status: string; cancel_reason: string | null; created_at: Date; settled_at: Date | null }>(
    `SELECT id, sku, qty, amount, card, status, cancel_reason, created_at, settled_at FROM ${s}.saga_orders`,
  );
  const reservations = await db.query<{ order_id: string; sku: string; qty: number; status: string }>(`SELECT order_id, sku, qty, status FROM ${s}.saga_reservations`);
  const payments = await db.query<{ order_id: string; amount: string | null; status: string }>(`SELECT order_id, amount, status FROM ${s}.saga_payments`);
  const stock = await db.query<{ sku: string; initial: number; available: number }>(`SELECT sku, initial, available FROM ${s}.saga_stock`);
  const ledger = await db.query<{ order_id: string; action: string; message_id: string; process: string }>(`SELECT order_id, action, message_id, process FROM ${s}.saga_ledger ORDER BY id`);
  const instances = await db.query<{ id: string; status: string }>(`SELECT id, status FROM ${s}.sagas WHERE saga = $1`, [CHAOS_SAGA_NAME]);
  const ignored = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${s}.saga_history WHERE saga = $1 AND outcome = 'ignored'`, [CHAOS_SAGA_NAME]);
  return {
    orders: orders.rows.map((o) => ({
      id: o.id,
      sku: o.sku,
      qty: o.qty,
      amount: Number(o.amount),
      card: o.card,
      status: o.status,
      cancelReason: o.cancel_reason,
      createdAt: o.created_at.getTime(),
      settledAt: o.settled_at?.getTime() ?? null,
    })),
    reservations: reservations.rows.map((x) => ({ orderId: x.order_id, sku: x.sku, qty: x.qty, status: x.status })),
    payments: payments.rows.map((x) => ({ orderId: x.order_id, amount: x.amount === null ? null : Number(x.amount), status: x.status })),
    stock: stock.rows,
    ledger: ledger.rows.map((x) => ({ orderId: x.order_id, action: x.action, messageId: x.message_id, process: x.process })),
    instances: instances.rows,
    ignored: ignored.rows[0]?.n ?? 0,
  };
}
