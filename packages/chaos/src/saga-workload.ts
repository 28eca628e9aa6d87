import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { delayQueueName, quoteIdentifier } from '@mailroom/core/internal';
import { enqueue } from '@mailroom/outbox';
import { retryDelays } from '@mailroom/inbox';
import { CHAOS_RETRY } from './chaos-event.js';
import type { CommitValue, History } from './history.js';
import { runProducers, type PlannedTransaction, type ProducerConfig } from './producer-loop.js';
import type { Random } from './random.js';
import type { RunResources } from './run-resources.js';
import { sagaContracts, type SagaCard } from './saga-contracts.js';

/** The saga workload's services: the orchestrator and its two participants, each a consumer of its own queue. */
export const SAGA_ROLES = ['orchestrator', 'inventory', 'payments'] as const;

/** One service of the saga workload. */
export type SagaRole = (typeof SAGA_ROLES)[number];

/** The queue, its delay queues and the inbox consumer name of each saga service of a run. */
export function sagaQueues(r: RunResources): Record<SagaRole, { queue: string; delayQueues: string[]; consumer: string }> {
  const of = (role: SagaRole): { queue: string; delayQueues: string[]; consumer: string } => {
    const queue = `chaos.${r.runId}.${role}`;
    return { queue, delayQueues: [...new Set(retryDelays(CHAOS_RETRY))].map((ms) => delayQueueName(queue, ms)), consumer: `chaos-${r.runId}-${role}` };
  };
  return { orchestrator: of('orchestrator'), inventory: of('inventory'), payments: of('payments') };
}

/** Every work and delay queue of the saga services. */
export function sagaWorkQueues(r: RunResources): string[] {
  return Object.values(sagaQueues(r)).flatMap((q) => [q.queue, ...q.delayQueues]);
}

/** The SKUs of the saga workload: `s0` … `s<n - 1>`. */
export function sagaSkus(n: number): string[] {
  return Array.from({ length: Math.floor(n) }, (_, i) => `s${i}`);
}

/**
 * The saga workload's tables: the orders (written by the producers, settled by the
 * orchestrator), the stock and reservations (inventory), the payments, and the step ledger: one
 * row per step or compensation applied, in that step's transaction, deliberately without a
 * unique constraint, so a step applied twice stays visible.
 */
export function sagaTablesSql(schema: string, skus: number, stockPerSku: number): string {
  const s = quoteIdentifier(schema);
  return `
    CREATE TABLE ${s}.saga_orders (
      id uuid PRIMARY KEY,
      sku text NOT NULL,
      qty integer NOT NULL,
      amount numeric(12, 2) NOT NULL,
      card text NOT NULL,
      producer integer NOT NULL,
      tx text NOT NULL,
      status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'confirmed', 'cancelled')),
      cancel_reason text,
      created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
      settled_at timestamptz
    );
    CREATE TABLE ${s}.saga_stock (sku text PRIMARY KEY, initial integer NOT NULL, available integer NOT NULL CHECK (available >= 0));
    INSERT INTO ${s}.saga_stock (sku, initial, available) SELECT 's' || i, ${Math.floor(stockPerSku)}, ${Math.floor(stockPerSku)} FROM generate_series(0, ${Math.floor(skus) - 1}) AS i;
    CREATE TABLE ${s}.saga_reservations (
      order_id uuid PRIMARY KEY,
      sku text NOT NULL,
      qty integer NOT NULL,
      status text NOT NULL CHECK (status IN ('reserved', 'rejected', 'released', 'committed'))
    );
    CREATE TABLE ${s}.saga_payments (
      order_id uuid PRIMARY KEY,
      amount numeric(12, 2),
      status text NOT NULL CHECK (status IN ('pending', 'charged', 'declined', 'voided', 'refunded'))
    );
    CREATE TABLE ${s}.saga_ledger (
      id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
      order_id uuid NOT NULL,
      action text NOT NULL,
      message_id uuid NOT NULL,
      process text NOT NULL,
      pid integer NOT NULL,
      applied_at timestamptz NOT NULL DEFAULT clock_timestamp()
    );
  `;
}

/** What the saga producers need. */
export interface SagaWorkloadConfig extends ProducerConfig {
  schema: string;
  exchange: string;
  skus: number;
  rollbackRate: number;
  /** Shares of declined and slow cards (the rest answer at once). */
  declinedRate: number;
  slowRate: number;
}

/**
 * Producer workers of the saga workload: each transaction creates one order and commits its
 * `OrderPlaced` with it (the start of a saga), or (a share of them) rolls back. Every
 * transaction is an invoke and an ok / fail / info `commit` in the history; its one event is the
 * order (id and key: the order id).
 */
export function startSagaWorkload(config: SagaWorkloadConfig, history: History, stopSignal: AbortSignal): Promise<void> {
  const s = quoteIdentifier(config.schema);
  const { OrderPlaced } = sagaContracts(config.exchange);
  const plan = (random: Random, p: number, tx: string): PlannedTransaction => {
    const orderId = randomUUID();
    const value: CommitValue = { tx, events: [{ id: orderId, key: orderId }] };
    const roll = random.next();
    const card: SagaCard = roll < config.declinedRate ? 'declined' : roll < config.declinedRate + config.slowRate ? 'slow' : 'good';
    const sku = `s${random.int(0, config.skus - 1)}`;
    const qty = random.int(1, 3);
    const amount = random.int(1, 500);
    const rollback = random.chance(config.rollbackRate);
    const write = async (client: pg.PoolClient): Promise<void> => {
      await client.query(`INSERT INTO ${s}.saga_orders (id, sku, qty, amount, card, producer, tx) VALUES ($1, $2, $3, $4, $5, $6, $7)`, [orderId, sku, qty, amount, card, p + 1, tx]);
      await enqueue(client, OrderPlaced.create({ orderId, sku, qty, amount, card }, { messageId: orderId, key: orderId }), { schema: config.schema });
    };
    return { value, rollback, write };
  };
  return runProducers(config, { seedFactor: 37, plan }, history, stopSignal);
}
