import { quoteIdentifier } from '@mailroom/core/internal';
import type { AdminLinks } from './admin-links.js';
import { queueCounts } from './queue-probe.js';
import type { RunResources } from './run-resources.js';
import { CHAOS_SAGA_NAME } from './saga-orchestrator.js';
import { sagaWorkQueues } from './saga-workload.js';

/**
 * The saga workload's drain progress: `done …` when every order ended, every saga instance
 * completed, no stock is merely reserved, no payment pending, and nothing waits in the outbox
 * (scheduled timeouts and processor answers included) or a work or delay queue.
 */
export function sagaDrainProbe(links: AdminLinks, r: RunResources): () => Promise<string> {
  const s = quoteIdentifier(r.schema);
  return async () => {
    const { rows } = await links.pool.query<{ outbox: number; pending: number; running: number; reserved: number; charging: number; ledger: number }>(
      `SELECT (SELECT count(*) FROM ${s}.outbox)::int AS outbox,
              (SELECT count(*) FROM ${s}.saga_orders WHERE status = 'pending')::int AS pending,
              (SELECT count(*) FROM ${s}.sagas WHERE saga = $1 AND status <> 'completed')::int AS running,
              (SELECT count(*) FROM ${s}.saga_reservations WHERE status = 'reserved')::int AS reserved,
              (SELECT count(*) FROM ${s}.saga_payments WHERE status = 'pending')::int AS charging,
              (SELECT count(*) FROM ${s}.saga_ledger)::int AS ledger`,
      [CHAOS_SAGA_NAME],
    );
    const p = rows[0] as { outbox: number; pending: number; running: number; reserved: number; charging: number; ledger: number };
    const queued = (await queueCounts(await links.connection(), sagaWorkQueues(r))).reduce((a, q) => a + q.messages, 0);
    const done = p.outbox === 0 && p.pending === 0 && p.running === 0 && p.reserved === 0 && p.charging === 0 && queued === 0;
    return `${done ? 'done' : 'waiting'}: outbox ${p.outbox}, orders pending ${p.pending}, sagas running ${p.running}, stock reserved ${p.reserved}, payments pending ${p.charging}, queued ${queued}, steps applied ${p.ledger}`;
  };
}
