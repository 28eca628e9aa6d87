// Dead letters end to end: a consumer gives up on a message, the sink stores it, the handler is
// fixed, and `mailroom dlq replay` (the built CLI: run `pnpm build` first) sends it back through
// the outbox and the relay with its message id.
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createDeadLetterSink, type DeadLetterSink } from '@mailroom/dlq';
import { createRelay, type Relay } from '@mailroom/outbox';
import { NonRetryableError } from '@mailroom/inbox';
import { spawnNode, testUrls } from '../../../test/helpers.js';
import { consumerFor, deadLetters, effects, publish, setupEnv, type Env } from '../../inbox/test/support.js';

const cli = fileURLToPath(new URL('../../cli/dist/main.js', import.meta.url));
let env: Env;
let relay: Relay;
let sink: DeadLetterSink;
beforeAll(async () => {
  env = await setupEnv();
  relay = createRelay({ database: env.db.pool, amqp: testUrls().amqpUrl, schema: env.db.schema, pollIntervalMs: 100 });
  await relay.start();
  // The consumers' dead letters reach the store through a sink of their own (the consumer does not drain them).
  sink = createDeadLetterSink({ db: env.db.pool, schema: env.db.schema, amqp: testUrls().amqpUrl, topology: { exchange: env.broker.name('dead'), queue: env.broker.name('dead') } });
  await sink.start();
});
afterAll(async () => {
  await sink.stop();
  await relay.stop();
  await env.cleanup();
});

const WAIT = { timeout: 30_000, interval: 50 };

async function mailroom(...args: string[]): Promise<{ code: number | null; output: string }> {
  const child = spawnNode(cli, args, { MAILROOM_DATABASE_URL: testUrls().databaseUrl, MAILROOM_SCHEMA: env.db.schema });
  const exit = await child.exited;
  return { code: exit.code, output: child.output() };
}

describe('mailroom dlq replay (must show 5)', () => {
  it('after fixing the handler, a replay has one effect with the same message id; a second replay still one', async () => {
    let fixed = false;
    const handledIds: string[] = [];
    const consumer = consumerFor(env, async ({ db, message, payload }) => {
      if (!fixed) throw new NonRetryableError(`no customer for order ${payload.orderId}`);
      handledIds.push(message.messageId);
      await db.query(`INSERT INTO "${env.db.schema}".effects (message_id, note) VALUES ($1, 'replayed')`, [message.messageId]);
    });
    await consumer.start();
    const id = await publish(env, { orderId: 'o-404', total: 12 }, { key: 'customer-9' });
    await vi.waitFor(async () => expect(await deadLetters(env)).toHaveLength(1), WAIT);

    const listed = await mailroom('dlq', 'list', '--json', '--source', consumer.queue);
    expect(listed.code).toBe(0);
    const rows = JSON.parse(listed.output) as Array<{ id: string; messageId: string; reason: string; fingerprint: string; key: string }>;
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ messageId: id, reason: 'non-retryable', key: 'customer-9' });
    const rowId = rows[0]?.id as string;

    const groups = await mailroom('dlq', 'groups', '--json');
    expect(JSON.parse(groups.output)).toEqual([expect.objectContaining({ fingerprint: rows[0]?.fingerprint, count: 1, pending: 1 })]);

    const dry = await mailroom('dlq', 'replay', rowId, '--dry-run');
    expect(dry.output).toContain(`would replay 1 message(s): ${id}`);
    expect((await relay.backlog()).rows).toBe(0);

    fixed = true;
    const first = await mailroom('dlq', 'replay', rowId);
    expect(first.code).toBe(0);
    expect(first.output).toContain(`replayed 1 message(s): ${id}`);
    await vi.waitFor(async () => expect(await effects(env, id)).toBe(1), WAIT);
    expect(handledIds).toEqual([id]);

    const shown = JSON.parse((await mailroom('dlq', 'show', id, '--json')).output) as { replayedAt: string | null };
    expect(shown.replayedAt).not.toBeNull();

    const second = await mailroom('dlq', 'replay', '--group', rows[0]?.fingerprint as string);
    expect(second.output).toContain(`replayed 1 message(s): ${id}`);
    // The second replay arrives as a duplicate: nothing commits, so the consumer's stats are the state to wait on.
    await vi.waitFor(() => expect(consumer.stats).toMatchObject({ handled: 1, duplicates: 1, deadLettered: 1 }), WAIT);
    await sleep(300);
    expect(await effects(env, id)).toBe(1);
    await consumer.stop();
  });

  it('refuses a dead letter older than the inbox retention window unless --force, and says why', async () => {
    // A consumer registered with a one-hour window (its retry horizon is far shorter).
    const consumer = consumerFor(env, async () => undefined, { retention: { windowMs: 3_600_000, cleanupIntervalMs: 0 } });
    await consumer.start();
    await consumer.stop();
    const old = await env.db.pool.query<{ id: string }>(
      `INSERT INTO "${env.db.schema}".dead_letters (message_id, source, reason, error, attempts, first_failed_at, last_failed_at, type, exchange, routing_key, payload, fingerprint)
       VALUES (gen_random_uuid(), 'relay', 'unpublishable', 'too large', 1, now() - interval '2 days', now() - interval '2 days', 'order.placed', $1, 'order.nowhere', '{"orderId":"old","total":1}', 'f-old')
       RETURNING id::text`,
      [env.exchange],
    );
    const oldId = old.rows[0]?.id as string;
    const refused = await mailroom('dlq', 'replay', oldId);
    expect(refused.code).toBe(1);
    expect(refused.output).toMatch(/older than the inbox retention window of consumer "[^"]+" \(1\.0 hours; the oldest is 2\.0 days old\)/);
    expect(refused.output).toContain('--force');
    expect((await relay.backlog()).rows).toBe(0);
    const forced = await mailroom('dlq', 'replay', oldId, '--force', '--json');
    expect(JSON.parse(forced.output)).toMatchObject({ count: 1, dryRun: false, skipped: [] });
    const discarded = await mailroom('dlq', 'discard', oldId, '--yes');
    expect(discarded.output).toContain('discarded 1 dead letter(s)');
    const usage = await mailroom('dlq', 'replay');
    expect(usage.code).toBe(2);
    expect(usage.output).toContain('replay needs ids or --group G');
  });
});
