// Commits events the way a producer does: BEGIN, enqueue, COMMIT on a client of `pool`.
import type pg from 'pg';
import type { OutgoingMessage } from '@mailroom/core';
import { enqueue } from '@mailroom/outbox';

/** Enqueues `messages` in one transaction of their own on a client of `pool`, and commits. */
export async function commitEvents(pool: pg.Pool, schema: string, messages: OutgoingMessage | OutgoingMessage[]): Promise<void> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    await enqueue(client, messages, { schema });
    await client.query('COMMIT');
  } finally {
    client.release();
  }
}
