import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type pg from 'pg';
import { quoteIdentifier } from '@mailroom/core/internal';
import { enqueue } from '@mailroom/outbox';
import { chaosEvent } from './chaos-event.js';
import type { CommitValue, History } from './history.js';
import { runProducers, type PlannedTransaction, type ProducerConfig } from './producer-loop.js';
import type { Random } from './random.js';

/** What the producers of the events workload need. */
export interface WorkloadConfig extends ProducerConfig {
  schema: string;
  exchange: string;
  keys: number;
  maxEventsPerTransaction: number;
  rollbackRate: number;
  slowCommitRate: number;
}

/** The workload's keys: `k0` … `k<n - 1>`. */
export function workloadKeys(n: number): string[] {
  return Array.from({ length: Math.floor(n) }, (_, i) => `k${i}`);
}

/** The workload's tables: keys with their sequence, the domain rows, the effect ledger. */
export function workloadTablesSql(schema: string, keys: number): string {
  const s = quoteIdentifier(schema);
  return `
    CREATE TABLE ${s}.chaos_keys (key text PRIMARY KEY, seq integer NOT NULL DEFAULT 0);
    INSERT INTO ${s}.chaos_keys (key) SELECT 'k' || i FROM generate_series(0, ${Math.floor(keys) - 1}) AS i;
    CREATE TABLE ${s}.chaos_domain (
      event_id uuid PRIMARY KEY,
      key text NOT NULL,
      seq integer NOT NULL,
      producer integer NOT NULL,
      tx text NOT NULL,
      created_at timestamptz NOT NULL DEFAULT clock_timestamp()
    );
    -- One row per handler application and deliberately no unique constraint: a double effect stays visible.
    CREATE TABLE ${s}.chaos_ledger (
      id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
      event_id uuid NOT NULL,
      key text,
      consumer text NOT NULL,
      pid integer NOT NULL,
      applied_at timestamptz NOT NULL DEFAULT clock_timestamp()
    );
  `;
}

/**
 * Producer workers: each transaction takes the next sequence number of 1..n keys, inserts a
 * domain row and enqueues an event per key, then commits or (a share of them) rolls back; a
 * share stays open a while before COMMIT. Every transaction is an invoke and an ok / fail / info
 * in the history.
 */
export function startWorkload(config: WorkloadConfig, history: History, stopSignal: AbortSignal): Promise<void> {
  const s = quoteIdentifier(config.schema);
  const contract = chaosEvent(config.exchange);
  const plan = (random: Random, p: number, tx: string): PlannedTransaction => {
    const n = random.int(1, Math.min(config.maxEventsPerTransaction, config.keys));
    const keys = new Set<string>();
    while (keys.size < n) keys.add(`k${random.int(0, config.keys - 1)}`);
    const value: CommitValue = { tx, events: [...keys].sort().map((key) => ({ id: randomUUID(), key })) };
    const rollback = random.chance(config.rollbackRate);
    const holdMs = random.chance(config.slowCommitRate) ? random.int(50, 800) : 0;
    const write = async (client: pg.PoolClient): Promise<void> => {
      for (const e of value.events) {
        await client.query(
          `WITH next AS (UPDATE ${s}.chaos_keys SET seq = seq + 1 WHERE key = $2 RETURNING seq)
           INSERT INTO ${s}.chaos_domain (event_id, key, seq, producer, tx) SELECT $1, $2, seq, $3, $4 FROM next`,
          [e.id, e.key, p + 1, tx],
        );
      }
      await enqueue(
        client,
        value.events.map((e) => contract.create({ eventId: e.id, key: e.key, producer: p + 1 }, { messageId: e.id, key: e.key })),
        { schema: config.schema },
      );
      // Held open after the insert: later transactions get higher ids and commit first.
      if (holdMs > 0) await sleep(holdMs);
    };
    return { value, rollback, write };
  };
  return runProducers(config, { seedFactor: 31, plan }, history, stopSignal);
}
