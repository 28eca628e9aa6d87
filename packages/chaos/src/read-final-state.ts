import { quoteIdentifier } from '@mailroom/core/internal';
import type { AdminLinks } from './admin-links.js';
import type { FinalState } from './final-state.js';
import { queueCounts, queuedMessageIds } from './queue-probe.js';
import type { RunResources } from './run-resources.js';

/**
 * Reads what really happened, once every process stopped: the domain rows, what is left in the
 * outbox, the inbox, the effect ledger, the dead-letter store, and what still waits on the broker.
 */
export async function readFinalState(links: AdminLinks, r: RunResources): Promise<FinalState> {
  const s = quoteIdentifier(r.schema);
  const db = links.pool;
  const domain = await db.query<{ event_id: string; key: string; seq: number; created_at: Date }>(`SELECT event_id, key, seq, created_at FROM ${s}.chaos_domain`);
  const outbox = await db.query<{ message_id: string; attempts: number; last_error: string | null }>(`SELECT message_id, attempts, last_error FROM ${s}.outbox`);
  const inbox = await db.query<{ message_id: string }>(`SELECT message_id FROM ${s}.inbox WHERE consumer = $1`, [r.consumerName]);
  const ledger = await db.query<{ id: string; event_id: string; key: string | null; applied_at: Date }>(
    `SELECT id, event_id, key, applied_at FROM ${s}.chaos_ledger ORDER BY id`,
  );
  const dead = await db.query<{ message_id: string; source: string; reason: string }>(`SELECT message_id, source, reason FROM ${s}.dead_letters`);
  const connection = await links.connection();
  const work = [r.queue, ...r.delayQueues];
  const queuedIds = await queuedMessageIds(connection, work);
  return {
    domain: domain.rows.map((row) => ({ eventId: row.event_id, key: row.key, seq: row.seq, createdAt: row.created_at.getTime() })),
    outbox: outbox.rows.map((row) => ({ messageId: row.message_id, attempts: row.attempts, lastError: row.last_error })),
    inbox: inbox.rows.map((row) => row.message_id),
    ledger: ledger.rows.map((row) => ({ id: Number(row.id), eventId: row.event_id, key: row.key, seq: null, appliedAt: row.applied_at.getTime() })),
    queues: await queueCounts(connection, [...work, r.deadLetters]),
    queuedIds,
    deadLetters: dead.rows.map((row) => ({ messageId: row.message_id, source: row.source, reason: row.reason })),
  };
}
