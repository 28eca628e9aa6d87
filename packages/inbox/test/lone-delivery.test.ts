// A lone delivery must not pay for group commit: when the batch that forms holds one delivery, it
// runs exactly the statements of a transaction of its own (what `maxBatchSize: 1` sends), on pg and
// on kysely: no savepoint, no RETURNING, the same round trips. The pool the consumer gets records
// every statement its clients are sent; each case compares group commit on with group commit off.
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { MetricsRegistry, type Queryable } from '@mailroom/core';
import type { HandlerFunction } from '@mailroom/inbox';
import { testUrls } from '../../../test/helpers.js';
import { WAIT, consumerFor, effects, publish, setupEnv, type Env } from './support.js';

let env: Env;
beforeAll(async () => {
  env = await setupEnv();
});
afterAll(async () => {
  await env.cleanup();
});

/** A statement as sent, with its literals ('…', E'…') and whitespace normalised, so two consumers' statements compare. */
function normalise(text: string): string {
  return text.replace(/E?'(?:[^']|'')*'/g, '?').replace(/\s+/g, ' ').trim();
}

/** A pg Pool whose clients record every statement they are sent (while `recording`). */
function recordingPool(): { pool: pg.Pool; statements: string[]; recording: { on: boolean } } {
  const pool = new pg.Pool({ connectionString: testUrls().databaseUrl, max: 4 });
  pool.on('error', () => undefined);
  const statements: string[] = [];
  const recording = { on: false };
  const patched = new WeakSet<pg.PoolClient>();
  pool.on('acquire', (client) => {
    if (patched.has(client)) return;
    patched.add(client);
    const query = client.query.bind(client) as (...args: unknown[]) => unknown;
    (client as unknown as { query: (...args: unknown[]) => unknown }).query = (...args: unknown[]) => {
      const first = args[0];
      const text = typeof first === 'string' ? first : typeof (first as { text?: unknown })?.text === 'string' ? (first as { text: string }).text : '?';
      if (recording.on) statements.push(normalise(text));
      return query(...args);
    };
  });
  return { pool, statements, recording };
}

type Handle = HandlerFunction<{ orderId: string; total: number }>;

/**
 * Runs one consumer on a recording pool (through kysely when asked), publishes one message at a
 * time (each waits until the consumer settled the one before: a lone delivery) and returns the
 * statements each message cost, with the consumer's stats and broken-batch count.
 */
async function lone(label: string, options: { maxBatchSize: number; driver: 'pg' | 'kysely'; handle: Handle; settled: (stats: Record<string, number>) => boolean }) {
  const { pool, statements, recording } = recordingPool();
  const db = options.driver === 'pg' ? pool : new Kysely<Record<string, never>>({ dialect: new PostgresDialect({ pool }) });
  const metrics = new MetricsRegistry();
  const consumer = consumerFor(env, options.handle, {
    name: env.broker.name(`${label}-${options.driver}-${options.maxBatchSize}`),
    db: db as Queryable,
    maxBatchSize: options.maxBatchSize,
    metrics,
    retry: { maxAttempts: 3, initialDelayMs: 50 },
    retention: { cleanupIntervalMs: 0 },
  });
  try {
    await consumer.start();
    recording.on = true;
    const id = await publish(env, { orderId: label, total: 1 });
    // Counted after the commit and the ack (or the confirmed retry copy and the ack).
    await vi.waitFor(() => expect(options.settled({ ...consumer.stats })).toBe(true), WAIT);
    recording.on = false;
    const broken = /mailroom_inbox_broken_batches_total\{[^}]*\} ([0-9]+)/.exec(await metrics.render())?.[1] ?? '0';
    return { id, statements: [...statements], stats: { ...consumer.stats }, broken: Number(broken) };
  } finally {
    await consumer.stop();
    if (db !== pool) await (db as Kysely<Record<string, never>>).destroy();
    else await pool.end();
  }
}

const s = () => `"${env.db.schema}"`;
const writes: Handle = async ({ db, message }) => {
  await db.query(`INSERT INTO ${s()}.effects (message_id, note) VALUES ($1, 'lone')`, [message.messageId]);
};

describe('a lone delivery with group commit on', () => {
  for (const driver of ['pg', 'kysely'] as const) {
    it(`${driver}: sends the statements of a transaction of its own (no savepoint), as maxBatchSize 1 does`, async () => {
      const settled = (stats: Record<string, number>) => stats.handled === 1;
      const on = await lone('lone-ok', { maxBatchSize: 32, driver, handle: writes, settled });
      const off = await lone('lone-ok', { maxBatchSize: 1, driver, handle: writes, settled });
      expect(on.statements.join('\n')).not.toMatch(/SAVEPOINT|RETURNING/);
      expect(on.statements).toEqual(off.statements);
      // pg: BEGIN and the inbox insert in one round trip, the handler's insert, COMMIT.
      if (driver === 'pg') expect(on.statements).toHaveLength(3);
      expect(await effects(env, on.id)).toBe(1);
      expect(on.broken).toBe(0);
    });

    it(`${driver}: a handler that throws is rolled back (its write and the inbox row) and retried, as maxBatchSize 1 does`, async () => {
      const failsOnce: Handle = async (ctx) => {
        await writes(ctx);
        if (ctx.message.attempt === 1) throw new Error('fails once');
      };
      const settled = (stats: Record<string, number>) => stats.handled === 1 && stats.failures === 1;
      const on = await lone('lone-throw', { maxBatchSize: 32, driver, handle: failsOnce, settled });
      const off = await lone('lone-throw', { maxBatchSize: 1, driver, handle: failsOnce, settled });
      expect(on.statements.join('\n')).not.toMatch(/SAVEPOINT|RETURNING/);
      expect(on.statements).toEqual(off.statements);
      expect(on.stats).toMatchObject({ handled: 1, failures: 1, retries: 1, duplicates: 0 });
      // Attempt 1's write was rolled back with its inbox row: attempt 2 was handled, once.
      expect(await effects(env, on.id)).toBe(1);
      expect(on.broken).toBe(0);
    });

    it(`${driver}: a handler that swallows a failed statement is not acked as handled; it is retried`, async () => {
      const poisons: Handle = async (ctx) => {
        await writes(ctx);
        if (ctx.message.attempt === 1) await ctx.db.query('SELECT 1/0').catch(() => undefined);
      };
      const settled = (stats: Record<string, number>) => stats.handled === 1 && stats.failures === 1;
      const on = await lone('lone-poison', { maxBatchSize: 32, driver, handle: poisons, settled });
      expect(on.statements.join('\n')).not.toMatch(/SAVEPOINT|RETURNING/);
      expect(on.stats).toMatchObject({ handled: 1, failures: 1, retries: 1 });
      expect(await effects(env, on.id)).toBe(1);
    });
  }
});
