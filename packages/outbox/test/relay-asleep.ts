// Shared by the tests of the relay's wake-up: one event committed in a transaction of its own, and
// the wait until the relay is registered as asleep (the advisory lock that makes the outbox's
// insert trigger NOTIFY, see migration 9).
import { expect, vi } from 'vitest';
import type pg from 'pg';
import type { OutgoingMessage } from '@mailroom/core';
import { enqueue } from '@mailroom/outbox';

/** Commits `message` through `enqueue` in a transaction of its own; returns its message id. */
export async function commitEvent(pool: pg.Pool, schema: string, message: OutgoingMessage): Promise<string> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    await enqueue(client, message, { schema });
    await client.query('COMMIT');
  } finally {
    client.release();
  }
  return message.messageId;
}

/** Waits until a relay on `schema` holds the "asleep" lock (its last busy worker went to sleep). */
export async function waitUntilAsleep(pool: pg.Pool, schema: string): Promise<void> {
  await vi.waitFor(
    async () => {
      const { rows } = await pool.query(
        `SELECT 1 FROM pg_catalog.pg_locks WHERE locktype = 'advisory' AND classid = 1661022995 AND objsubid = 2 AND mode = 'ShareLock' AND granted
           AND objid::bigint = (pg_catalog.hashtext($1)::bigint + 4294967296) % 4294967296`,
        [schema],
      );
      expect(rows).toHaveLength(1);
    },
    { timeout: 10_000, interval: 20 },
  );
}
