import { quoteIdentifier } from '@mailroom/core/internal';
import type { AdminLinks } from './admin-links.js';
import type { FinalState } from './final-state.js';
import { HOSTILE_HEADER } from './hostile-messages.js';
import { queueCounts, queuedMessageIds } from './queue-probe.js';
import type { RunResources } from './run-resources.js';
import type { DeliveryTally } from './wire-tap.js';

/**
 * The SQL expression of a dead letter's `eventId`: the harness's hostile marker header, else the
 * `eventId` in its payload or body. It names what the harness sent when the letter's own id was
 * derived (an id that was no UUID, an unsealed letter).
 */
export function letterEventIdSql(alias: string): string {
  return `COALESCE(${alias}.headers->>'${HOSTILE_HEADER}',
    substring(COALESCE(${alias}.payload::text, encode(${alias}.body, 'escape')) from '"eventId": ?"([0-9a-fA-F-]{36})"'))`;
}

/**
 * Reads what really happened, once every process stopped: the domain rows, what is left in the
 * outbox, the inbox, the effect ledger, the dead-letter store, what still waits on the broker,
 * and what the wire tap counted.
 */
export async function readFinalState(links: AdminLinks, r: RunResources, deliveries: DeliveryTally[] = []): Promise<FinalState> {
  const s = quoteIdentifier(r.schema);
  const db = links.pool;
  const domain = await db.query<{ event_id: string; key: string; seq: number; created_at: Date }>(`SELECT event_id, key, seq, created_at FROM ${s}.chaos_domain`);
  const outbox = await db.query<{ message_id: string; attempts: number; last_error: string | null }>(`SELECT message_id, attempts, last_error FROM ${s}.outbox`);
  const inbox = await db.query<{ message_id: string }>(`SELECT message_id FROM ${s}.inbox WHERE consumer = $1`, [r.consumerName]);
  const ledger = await db.query<{ id: string; event_id: string; key: string | null; applied_at: Date }>(
    `SELECT id, event_id, key, applied_at FROM ${s}.chaos_ledger ORDER BY id`,
  );
  const dead = await db.query<{ message_id: string; source: string; reason: string; attempts: number; exchange: string | null; routing_key: string | null; event_id: string | null }>(
    `SELECT message_id, source, reason, attempts, exchange, routing_key, ${letterEventIdSql('d')} AS event_id FROM ${s}.dead_letters d`,
  );
  const connection = await links.connection();
  const work = [r.queue, ...r.delayQueues, ...r.partitionQueues];
  const queuedIds = await queuedMessageIds(connection, work);
  const deadLetterQueuedIds = await queuedMessageIds(connection, [r.deadLetters], HOSTILE_HEADER);
  const parkedIds = await queuedMessageIds(connection, [r.parkedDeadLetters], HOSTILE_HEADER);
  return {
    domain: domain.rows.map((row) => ({ eventId: row.event_id, key: row.key, seq: row.seq, createdAt: row.created_at.getTime() })),
    outbox: outbox.rows.map((row) => ({ messageId: row.message_id, attempts: row.attempts, lastError: row.last_error })),
    inbox: inbox.rows.map((row) => row.message_id),
    ledger: ledger.rows.map((row) => ({ id: Number(row.id), eventId: row.event_id, key: row.key, seq: null, appliedAt: row.applied_at.getTime() })),
    queues: await queueCounts(connection, [...work, r.deadLetters, r.parkedDeadLetters]),
    queuedIds,
    deadLetterQueuedIds,
    parkedIds,
    deadLetters: dead.rows.map((row) => ({
      messageId: row.message_id,
      source: row.source,
      reason: row.reason,
      attempts: row.attempts,
      exchange: row.exchange,
      routingKey: row.routing_key,
      eventId: row.event_id?.toLowerCase() ?? null,
    })),
    deliveries,
  };
}
