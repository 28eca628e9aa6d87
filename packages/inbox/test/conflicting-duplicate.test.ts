// Issue 9, defect 8: a second message with the id of one already handled but another payload
// was acked as a plain duplicate, with no metric and no log line. The inbox row now keeps a hash
// of the body; a duplicate whose body hashes differently is a conflicting duplicate: counted,
// logged with both hashes, emitted, and still acked (the first one won).
import { createHash } from 'node:crypto';
import { Kysely, PostgresDialect } from 'kysely';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { MetricsRegistry, type Logger } from '@mailroom/core';
import { createConsumer, handler } from '@mailroom/inbox';
import { testUrls } from '../../../test/helpers.js';
import { OrderPlaced, WAIT, consumerFor, deadLetterTopology, effects, publish, queueDepth, recordEffect, setupEnv, type Env } from './support.js';

let env: Env;
beforeAll(async () => {
  env = await setupEnv();
});
afterAll(async () => {
  await env.cleanup();
});

const sha256 = (payload: unknown): string => createHash('sha256').update(JSON.stringify(payload)).digest('hex');

function recordingLogger(): Logger & { lines: Array<{ level: string; message: string; fields?: Record<string, unknown> }> } {
  const lines: Array<{ level: string; message: string; fields?: Record<string, unknown> }> = [];
  const at =
    (level: string) =>
    (message: string, fields?: Record<string, unknown>): void => {
      lines.push({ level, message, ...(fields ? { fields } : {}) });
    };
  return { lines, debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}

async function inboxHash(name: string, id: string): Promise<string | null> {
  const result = await env.db.pool.query<{ h: string | null }>(
    `SELECT encode(payload_hash, 'hex') AS h FROM "${env.db.schema}".inbox WHERE consumer = $1 AND message_id = $2`,
    [name, id],
  );
  return result.rows[0]?.h ?? null;
}

describe('same id, different payload (issue 9, defect 8)', () => {
  for (const driver of ['pg', 'kysely'] as const) {
    it(`a conflicting duplicate is counted, logged with both hashes, emitted and acked; a true duplicate is not a conflict (${driver})`, async () => {
      const metrics = new MetricsRegistry();
      const logger = recordingLogger();
      const db = driver === 'pg' ? env.db.pool : new Kysely<Record<string, never>>({ dialect: new PostgresDialect({ pool: env.db.pool }) });
      const consumer =
        driver === 'pg'
          ? consumerFor(env, recordEffect(env.db.schema), { metrics, logger })
          : createConsumer({
              name: env.broker.name(`conflict-kysely`),
              db,
              amqp: testUrls().amqpUrl,
              schema: env.db.schema,
              deadLetters: deadLetterTopology(env),
              metrics,
              logger,
              handlers: [handler(OrderPlaced(env.exchange), recordEffect(env.db.schema))],
            });
      if (driver === 'kysely') env.consumers.push(consumer);
      const conflicts: Array<{ messageId: string; storedHash: string; receivedHash: string }> = [];
      consumer.on('conflictingDuplicate', (info) => conflicts.push({ messageId: info.message.messageId, storedHash: info.storedHash, receivedHash: info.receivedHash }));
      await consumer.start();
      const first = { orderId: 'c-1', total: 10 };
      const other = { orderId: 'c-1', total: 99_999 };
      const id = await publish(env, first);
      await vi.waitFor(async () => expect(await inboxHash(consumer.name, id), 'the inbox row with its hash').toBe(sha256(first)), WAIT);
      await publish(env, first, { messageId: id });
      await publish(env, other, { messageId: id });
      await vi.waitFor(() => expect(consumer.stats).toMatchObject({ handled: 1, duplicates: 2, conflictingDuplicates: 1 }), WAIT);
      expect(await queueDepth(env, consumer.queue), 'both duplicates acked').toBe(0);
      expect(await effects(env, id), 'the first one won').toBe(1);
      expect(await inboxHash(consumer.name, id)).toBe(sha256(first));
      expect(conflicts).toEqual([{ messageId: id, storedHash: sha256(first), receivedHash: sha256(other) }]);
      const text = await metrics.render();
      expect(text).toContain(`mailroom_inbox_conflicting_duplicates_total{consumer="${consumer.name}"} 1`);
      expect(text).toContain(`mailroom_inbox_duplicates_total{consumer="${consumer.name}"} 2`);
      const warned = logger.lines.filter((l) => l.level === 'warn' && l.message.includes(id));
      expect(warned).toHaveLength(1);
      expect(JSON.stringify(warned[0])).toContain(sha256(first));
      expect(JSON.stringify(warned[0])).toContain(sha256(other));
      await consumer.stop();
    });
  }

  it('an inbox row written before migration 6 (no hash) makes a plain duplicate, never a conflict', async () => {
    const consumer = consumerFor(env, recordEffect(env.db.schema));
    await consumer.start();
    const id = crypto.randomUUID();
    await env.db.pool.query(`INSERT INTO "${env.db.schema}".inbox (consumer, message_id) VALUES ($1, $2)`, [consumer.name, id]);
    await publish(env, { orderId: 'old', total: 1 }, { messageId: id });
    await vi.waitFor(() => expect(consumer.stats).toMatchObject({ duplicates: 1, conflictingDuplicates: 0 }), WAIT);
    await consumer.stop();
  });
});
