// Least privilege by feature: `mailroom grants` gives each role what its component always uses,
// and `--ordering`, `--saga`, `--archive` add what those features need. Against the real
// PostgreSQL and RabbitMQ with real login roles (random names, dropped at the end): a consumer
// role with only the required grants runs a consumer end to end; a relay without any grant on
// outbox_archive runs with the archive off; `mailroom saga cleanup` as the operator needs `--saga`.
// Runs the BUILT CLI (dist/main.js): `pnpm build` first.
import { randomBytes, randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import type { ConfirmChannel } from 'amqplib';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { defineMessage, migrate, type OutgoingMessage } from '@mailroom/core';
import { assertGrants, componentGrants, envelopeHeaders, grantsScript, missingGrants } from '@mailroom/core/internal';
import { NonRetryableError, createConsumer, handler, type Consumer } from '@mailroom/inbox';
import { createRelay, enqueue, listHistory } from '@mailroom/outbox';
import { createTestBroker, randomName, spawnNode, testUrls, type TestBroker } from '../../../test/helpers.js';

const CLI = fileURLToPath(new URL('../dist/main.js', import.meta.url));
const { databaseUrl, amqpUrl } = testUrls();
const WAIT = { timeout: 30_000, interval: 50 } as const;

type Role = 'consumer' | 'relay' | 'operator';
const ROLES: readonly Role[] = ['consumer', 'relay', 'operator'];
const schema = randomName('gf');
const tag = randomBytes(4).toString('hex');
const roleName = (role: Role): string => `mr_gf_${tag}_${role}`;
const password = randomBytes(12).toString('hex');
const admin = new pg.Pool({ connectionString: databaseUrl, max: 2 });
admin.on('error', () => undefined);
const pools = new Map<Role, pg.Pool>();
const pool = (role: Role): pg.Pool => pools.get(role) as pg.Pool;
const stoppers: Array<() => Promise<unknown>> = [];
const consumers: Consumer[] = [];
let broker: TestBroker;
let publisher: ConfirmChannel;
let exchange: string;

function urlOf(role: Role): string {
  const url = new URL(databaseUrl);
  url.username = roleName(role);
  url.password = password;
  return url.toString();
}

const Task = (ex: string) => defineMessage('gf.task', z.object({ mode: z.enum(['ok', 'retry', 'fail']) }), { exchange: ex, routingKey: 'gf.task' });

/** The required grants only: what `mailroom grants --consumer C --relay R --operator O` prints. */
const minimalScript = (): string => grantsScript(schema, { consumer: roleName('consumer'), relay: roleName('relay'), operator: roleName('operator') });

/** Every privilege `role` holds on mailroom's tables, as `table:PRIVILEGE`. */
async function held(role: Role): Promise<string[]> {
  const result = await admin.query<{ t: string; p: string }>(
    'SELECT table_name AS t, privilege_type AS p FROM information_schema.role_table_grants WHERE table_schema = $1 AND grantee = $2',
    [schema, roleName(role)],
  );
  return result.rows.map((r) => `${r.t}:${r.p}`).sort();
}

/** Takes back every privilege of `role` on the tables and grants the required ones again (the owner's script is additive). */
async function resetGrants(role: Role): Promise<void> {
  await admin.query(`REVOKE ALL ON ALL TABLES IN SCHEMA "${schema}" FROM ${roleName(role)}`);
  await admin.query(minimalScript());
}

async function count(sql: string, params: unknown[] = []): Promise<number> {
  return Number((await admin.query<{ n: string }>(`SELECT count(*)::text AS n FROM ${sql}`, params)).rows[0]?.n ?? 0);
}

async function enqueueAsAdmin(messages: OutgoingMessage[]): Promise<void> {
  const client = await admin.connect();
  try {
    await client.query('BEGIN');
    await enqueue(client, messages, { schema });
    await client.query('COMMIT');
  } finally {
    client.release();
  }
}

async function runCli(args: string[], role?: Role): Promise<{ code: number | null; output: string }> {
  const child = spawnNode(CLI, args, { MAILROOM_DATABASE_URL: role === undefined ? databaseUrl : urlOf(role), MAILROOM_AMQP_URL: amqpUrl, MAILROOM_SCHEMA: schema });
  const exit = await child.exited;
  return { code: exit.code, output: child.output() };
}

beforeAll(async () => {
  for (const role of ROLES) {
    await admin.query(`CREATE ROLE ${roleName(role)} LOGIN PASSWORD '${password}'`);
    pools.set(role, new pg.Pool({ connectionString: urlOf(role), max: 6 }));
    pool(role).on('error', () => undefined);
  }
  await migrate(admin, { schema });
  await admin.query(minimalScript());
  broker = await createTestBroker();
  publisher = await broker.connection.createConfirmChannel();
  exchange = broker.name('events');
});

afterAll(async () => {
  for (const stop of stoppers.reverse()) await stop().catch(() => undefined);
  if (broker !== undefined) {
    const ch = await broker.connection.createChannel();
    for (const c of consumers) for (const q of [c.queue, ...c.delayQueues]) await ch.deleteQueue(q).catch(() => undefined);
    await ch.deleteQueue(broker.name('dead')).catch(() => undefined);
    for (const name of ['dead', 'events']) await ch.deleteExchange(broker.name(name)).catch(() => undefined);
    await ch.close().catch(() => undefined);
    await broker.close();
  }
  for (const p of pools.values()) await p.end().catch(() => undefined);
  await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  for (const role of ROLES) {
    await admin.query(`DROP OWNED BY ${roleName(role)}`).catch(() => undefined);
    await admin.query(`DROP ROLE IF EXISTS ${roleName(role)}`);
  }
  await admin.end();
});

describe('the grants script by feature', () => {
  it('gives the required grants by default and each feature adds its own; unknown features are refused', async () => {
    const consumer = grantsScript('mailroom', { consumer: 'app' });
    expect(consumer).not.toMatch(/sagas|saga_history|parked_keys|parked_messages/);
    expect(consumer).toContain('GRANT SELECT, INSERT, DELETE ON "mailroom"."inbox" TO "app";');
    const full = grantsScript('mailroom', { consumer: 'app' }, { ordering: true, saga: true });
    expect(full).toContain('GRANT SELECT, INSERT, UPDATE, DELETE ON "mailroom"."parked_keys" TO "app";');
    expect(full).toContain('GRANT SELECT, INSERT, UPDATE, DELETE ON "mailroom"."sagas" TO "app";');
    expect(full).toContain('GRANT SELECT, INSERT, DELETE ON "mailroom"."saga_history" TO "app";');
    expect(grantsScript('mailroom', { relay: 'r' })).not.toContain('outbox_archive');
    expect(grantsScript('mailroom', { relay: 'r' }, { archive: true })).toContain('GRANT INSERT ON "mailroom"."outbox_archive" TO "r";');
    // An operator that cleans sagas up: SELECT (always, for list/show) and UPDATE, DELETE merged on one line.
    expect(grantsScript('mailroom', { operator: 'ops' }, { saga: true })).toContain('GRANT SELECT, UPDATE, DELETE ON "mailroom"."sagas" TO "ops";');
    expect(() => grantsScript('mailroom', { relay: 'r' }, { archives: true } as never)).toThrow('Unknown feature "archives": use ordering, saga, archive.');

    const cli = await runCli(['grants', '--consumer', 'app', '--relay', 'r', '--archive']);
    expect(cli.code, cli.output).toBe(0);
    expect(cli.output).toContain(`GRANT INSERT ON "${schema}"."outbox_archive" TO "r";`);
    expect(cli.output).not.toContain('sagas');
    const bad = await runCli(['grants', '--relay', 'r', '--archived']);
    expect(bad.code).toBe(2);
    expect(bad.output).toContain("Unknown option '--archived'");
    const valued = await runCli(['grants', '--relay', 'r', '--archive=yes']);
    expect(valued.code).toBe(2);
  });
});

describe('a consumer role with only the required grants', () => {
  it('holds no grant on the saga or parking tables, and runs a consumer end to end: handled, retried, dead-lettered', async () => {
    expect(await held('consumer')).toEqual(componentGrants('consumer').flatMap((g) => g.privileges.map((p) => `${g.table}:${p}`)).sort());
    expect(await missingGrants(pool('consumer'), schema, 'consumer')).toEqual([]);
    // What the features would add, named by the check.
    expect(await missingGrants(pool('consumer'), schema, 'consumer', { ordering: true, saga: true })).toEqual([
      ...['SELECT', 'INSERT', 'UPDATE', 'DELETE'].map((privilege) => ({ object: `"${schema}".parked_keys`, privilege })),
      ...['SELECT', 'INSERT', 'UPDATE'].map((privilege) => ({ object: `"${schema}".parked_messages`, privilege })),
      ...['SELECT', 'INSERT', 'UPDATE', 'DELETE'].map((privilege) => ({ object: `"${schema}".sagas`, privilege })),
      ...['SELECT', 'INSERT', 'DELETE'].map((privilege) => ({ object: `"${schema}".saga_history`, privilege })),
    ]);
    await expect(assertGrants(pool('consumer'), schema, 'consumer', { saga: true })).rejects.toThrow(
      `lacks SELECT on "${schema}".sagas, INSERT on "${schema}".sagas, UPDATE on "${schema}".sagas, DELETE on "${schema}".sagas, SELECT on "${schema}".saga_history, INSERT on "${schema}".saga_history, DELETE on "${schema}".saga_history, which the consumer with saga needs (permission denied). Have the owner of mailroom's tables run the output of \`mailroom grants --consumer ${roleName('consumer')} --saga\``,
    );

    const T = Task(exchange);
    const handled: string[] = [];
    const deadLettered: string[] = [];
    let retrying = 0;
    const consumer = createConsumer({
      name: broker.name('minimal'),
      db: pool('consumer'),
      amqp: amqpUrl,
      schema,
      handlers: [
        handler(T, async ({ payload, message }) => {
          if (payload.mode === 'fail') throw new NonRetryableError('never');
          if (payload.mode === 'retry' && message.attempt === 1) throw new Error('later');
        }),
      ],
      retry: { maxAttempts: 3, initialDelayMs: 200 },
      deadLetters: { exchange: broker.name('dead'), queue: broker.name('dead') },
      stopTimeoutMs: 2000,
    });
    consumers.push(consumer);
    stoppers.push(() => consumer.stop());
    consumer.on('handled', (m) => handled.push(m.messageId));
    consumer.on('retrying', () => (retrying += 1));
    consumer.on('deadLettered', (d) => deadLettered.push(d.messageId));
    await consumer.start();
    const ids: Record<string, string> = {};
    for (const mode of ['ok', 'retry', 'fail'] as const) {
      ids[mode] = randomUUID();
      const props = { messageId: ids[mode], type: 'gf.task', contentType: 'application/json', persistent: true, headers: envelopeHeaders({ key: null }) };
      publisher.publish(exchange, 'gf.task', Buffer.from(JSON.stringify({ mode })), props);
    }
    // The same message again: a duplicate commits nothing.
    publisher.publish(exchange, 'gf.task', Buffer.from(JSON.stringify({ mode: 'ok' })), { messageId: ids.ok, type: 'gf.task', contentType: 'application/json', headers: envelopeHeaders({ key: null }) });
    await publisher.waitForConfirms();
    await vi.waitFor(() => expect(handled.sort()).toEqual([ids.ok, ids.retry].sort()), WAIT);
    await vi.waitFor(() => expect(deadLettered).toEqual([ids.fail]), WAIT);
    expect(retrying).toBe(1);
    await vi.waitFor(async () => expect(await count(`"${schema}".inbox WHERE consumer = $1`, [consumer.name])).toBe(2), WAIT);
    // Retention cleanup runs on the required grants too.
    expect(await consumer.cleanup()).toBe(0);
    await consumer.stop();
  });

  it('with ordering on and no --ordering grants, start() refuses naming the parking table (not a loop)', async () => {
    const consumer = createConsumer({
      name: broker.name('ordered'),
      db: pool('consumer'),
      amqp: amqpUrl,
      schema,
      ordering: true,
      bindings: [{ exchange, routingKey: 'gf.ordered' }],
      handlers: [handler(Task(exchange), async () => undefined)],
      stopTimeoutMs: 2000,
    });
    consumers.push(consumer);
    try {
      await expect(consumer.start()).rejects.toThrow(/permission denied for table parked_keys|lacks SELECT on "[^"]+"\.parked_keys/);
    } finally {
      await consumer.stop();
    }
  });
});

describe('the relay and the archive', () => {
  it('archive off: a relay role with no grant on outbox_archive publishes; nothing is archived', async () => {
    expect((await held('relay')).filter((g) => g.startsWith('outbox_archive:'))).toEqual([]);
    const queue = await broker.queueFor(exchange, 'gf.task.relayed');
    const received = broker.collect(queue);
    stoppers.push(() => received.stop());
    const message = defineMessage('gf.task', z.object({ mode: z.string() }), { exchange, routingKey: 'gf.task.relayed' }).create({ mode: 'ok' });
    await enqueueAsAdmin([message]);
    const relay = createRelay({ database: pool('relay'), amqp: amqpUrl, schema, pollIntervalMs: 100 });
    stoppers.push(() => relay.stop());
    const failures: string[] = [];
    relay.on('failure', (f) => failures.push(f.error));
    await relay.start();
    await received.waitForCount(1);
    expect(received.ids()).toEqual([message.messageId]);
    await vi.waitFor(async () => expect(await count(`"${schema}".outbox`)).toBe(0), WAIT);
    await relay.stop();
    expect(failures).toEqual([]);
    expect(await count(`"${schema}".outbox_archive`)).toBe(0);
    const checked = await runCli(['grants', '--check', 'relay'], 'relay');
    expect(checked.code, checked.output).toBe(0);
    expect(checked.output).toContain(`has every grant the relay needs`);
  });

  it('archive on without the grant: the check names INSERT on outbox_archive and the flag that grants it', async () => {
    await expect(assertGrants(pool('relay'), schema, 'relay', { archive: true })).rejects.toThrow(
      `Role "${roleName('relay')}" lacks INSERT on "${schema}".outbox_archive, which the relay with archive needs (permission denied). Have the owner of mailroom's tables run the output of \`mailroom grants --relay ${roleName('relay')} --archive\``,
    );
    const checked = await runCli(['grants', '--check', 'relay', '--archive'], 'relay');
    expect(checked.code, checked.output).toBe(1);
    expect(checked.output).toContain(`FAIL  role "${roleName('relay')}" lacks INSERT on "${schema}".outbox_archive`);
    expect(checked.output).toContain(`mailroom grants --relay ${roleName('relay')} --archive`);
  });

  // createRelay's start() checks the relay's grants with `assertGrants(pool, schema, 'relay')`: it
  // must pass `{ archive: o.archive }` (packages/outbox/src/relay.ts) for a relay with the archive
  // on to refuse here. Without it the relay starts, and each confirmed batch fails to archive,
  // rolls back and is published again at every backoff.
  it('archive on without the grant: start() refuses, naming INSERT on outbox_archive (not a republish loop)', async () => {
    const relay = createRelay({ database: pool('relay'), amqp: amqpUrl, schema, pollIntervalMs: 100, archive: true });
    try {
      await expect(relay.start()).rejects.toThrow(/lacks INSERT on "[^"]+"\.outbox_archive, which the relay with archive needs/);
    } finally {
      await relay.stop();
    }
  });

  it('archive on with --archive: the relay archives what it publishes, and the operator lists it', async () => {
    await admin.query(grantsScript(schema, { relay: roleName('relay') }, { archive: true }));
    try {
      expect(await held('relay')).toContain('outbox_archive:INSERT');
      await assertGrants(pool('relay'), schema, 'relay', { archive: true });
      const queue = await broker.queueFor(exchange, 'gf.task.archived');
      const received = broker.collect(queue);
      stoppers.push(() => received.stop());
      const message = defineMessage('gf.task', z.object({ mode: z.string() }), { exchange, routingKey: 'gf.task.archived' }).create({ mode: 'ok' });
      await enqueueAsAdmin([message]);
      const relay = createRelay({ database: pool('relay'), amqp: amqpUrl, schema, pollIntervalMs: 100, archive: true });
      stoppers.push(() => relay.stop());
      await relay.start();
      await received.waitForCount(1);
      await vi.waitFor(async () => expect(await count(`"${schema}".outbox_archive WHERE message_id = $1`, [message.messageId])).toBe(1), WAIT);
      await relay.stop();
      expect((await listHistory(pool('operator'), { schema })).map((e) => e.messageId)).toContain(message.messageId);
    } finally {
      await resetGrants('relay');
    }
  });
});

describe('mailroom saga cleanup', () => {
  const DAY = 86_400_000;
  /** Instances by id: how long ago they ended (null: running). */
  const seeded: Record<string, number | null> = { 'old-done': 40 * DAY, 'old-failed': 35 * DAY, 'new-done': 3_600_000, running: null };

  beforeAll(async () => {
    for (const [id, endedAgoMs] of Object.entries(seeded)) {
      const status = endedAgoMs === null ? 'running' : id.includes('failed') ? 'failed' : 'completed';
      await admin.query(
        `INSERT INTO "${schema}".sagas (saga, id, status, state, version, created_at, updated_at, completed_at)
         VALUES ('gf-order', $1, $2, '{}', 1, now() - interval '50 days', now(), CASE WHEN $3::float8 IS NULL THEN NULL ELSE now() - $3::float8 * interval '1 millisecond' END)`,
        [id, status, endedAgoMs],
      );
      await admin.query(
        `INSERT INTO "${schema}".saga_history (saga, instance_id, message_id, message_type, outcome, from_version, to_status, to_state, to_version)
         VALUES ('gf-order', $1, $2, 'gf.placed', 'applied', 0, $3, '{}', 1)`,
        [id, randomUUID(), status],
      );
    }
  });

  const remaining = async (): Promise<string[]> => (await admin.query<{ id: string }>(`SELECT id FROM "${schema}".sagas ORDER BY id`)).rows.map((r) => r.id);
  const historyOf = async (): Promise<string[]> =>
    (await admin.query<{ id: string }>(`SELECT instance_id AS id FROM "${schema}".saga_history ORDER BY instance_id`)).rows.map((r) => r.id);

  it('refuses bad durations and misplaced flags clearly (exit 2), before touching the database', async () => {
    const cases: Array<[string[], string]> = [
      [['saga', 'cleanup'], 'cleanup needs --older-than D'],
      [['saga', 'cleanup', '--older-than', 'abc'], '--older-than "abc" is not a duration (e.g. 90s, 10m, 2h, 7d)'],
      [['saga', 'cleanup', '--older-than=-1d'], '--older-than "-1d" is not a duration'],
      [['saga', 'cleanup', '--older-than', '-1d'], "Option '--older-than' argument is ambiguous"],
      [['saga', 'cleanup', '--older-than', '30'], '--older-than "30" is not a duration'],
      [['saga', 'cleanup', '--older-than', '1e3d'], '--older-than "1e3d" is not a duration'],
      [['saga', 'cleanup', '--older-than', '0s'], '--older-than "0s" is shorter than 1s'],
      [['saga', 'cleanup', '--older-than', '500ms'], '--older-than "500ms" is shorter than 1s'],
      [['saga', 'cleanup', '--older-than', '99999999d'], '--older-than "99999999d" is longer than 100 years'],
      [['saga', 'cleanup', '--older-than', `1${'0'.repeat(400)}d`], 'is too long'],
      [['saga', 'cleanup', '--older-than', '30d', 'extra'], 'cleanup takes no arguments (got extra)'],
      [['saga', 'cleanup', '--older-than', '30d', '--status', 'completed'], 'cleanup does not take --status'],
      [['saga', 'list', '--older-than', '30d'], 'list does not take --older-than'],
      [['saga', 'show', 'a', 'b', '--dry-run'], 'show does not take --dry-run'],
      [['saga', 'cleanup', '--older-than'], "Option '--older-than <value>' argument missing"],
      [['saga', 'clean\u001b[2J'], 'unknown subcommand "clean\\u001b[2J": use list, show or cleanup'],
    ];
    for (const [args, message] of cases) {
      const result = await runCli(args, 'operator');
      expect(result.code, args.join(' ')).toBe(2);
      expect(result.output, args.join(' ')).toContain(message);
    }
    expect(await remaining()).toEqual(['new-done', 'old-done', 'old-failed', 'running']);
  });

  it('--dry-run counts on the required grants; removing needs --saga, and then removes only ended instances past the cutoff, with their history', async () => {
    const dry = await runCli(['saga', 'cleanup', '--older-than', '30d', '--dry-run'], 'operator');
    expect(dry.code, dry.output).toBe(0);
    expect(dry.output).toBe('would remove 2 ended instances older than 30d (dry run: nothing removed)\n');
    expect(await remaining()).toEqual(['new-done', 'old-done', 'old-failed', 'running']);

    // Without --saga the operator may read instances but not remove them: a clear error, nothing removed.
    const refused = await runCli(['saga', 'cleanup', '--older-than', '30d'], 'operator');
    expect(refused.code, refused.output).toBe(1);
    expect(refused.output).toContain('permission denied for table sagas');
    expect(await remaining()).toEqual(['new-done', 'old-done', 'old-failed', 'running']);
    const checked = await runCli(['grants', '--check', 'operator', '--saga'], 'operator');
    expect(checked.code, checked.output).toBe(1);
    expect(checked.output).toContain(`lacks DELETE on "${schema}".sagas`);

    await admin.query(grantsScript(schema, { operator: roleName('operator') }, { saga: true }));
    try {
      const removed = await runCli(['saga', 'cleanup', '--older-than', '30d', '--json'], 'operator');
      expect(removed.code, removed.output).toBe(0);
      expect(JSON.parse(removed.output)).toEqual({ dryRun: false, olderThan: '30d', olderThanMs: 30 * DAY, removed: 2 });
      expect(await remaining()).toEqual(['new-done', 'running']);
      expect(await historyOf()).toEqual(['new-done', 'running']);

      const again = await runCli(['saga', 'cleanup', '--older-than', '30m'], 'operator');
      expect(again.code, again.output).toBe(0);
      expect(again.output).toBe('removed 1 ended instance older than 30m, with their history\n');
      // A running instance is never removed, however old.
      expect(await remaining()).toEqual(['running']);
      expect(await historyOf()).toEqual(['running']);
    } finally {
      await resetGrants('operator');
    }
  });
});

describe('mailroom doctor as a least-privilege role', () => {
  it('says the relay role may not read the migrations table (the owner\'s) and still checks the outbox, instead of failing', async () => {
    const asRelay = await runCli(['doctor', '--json'], 'relay');
    const { checks } = JSON.parse(asRelay.output) as { checks: Array<{ name: string; status: string; message: string; fix?: string }> };
    const migrations = checks.find((c) => c.name === 'migrations');
    expect(migrations).toMatchObject({ status: 'note', fix: 'run `mailroom doctor` as the role that runs `mailroom migrate` to check them' });
    expect(migrations?.message).toContain(`role "${roleName('relay')}" may not read`);
    expect(checks.find((c) => c.name === 'outbox')?.status).toBe('ok');
    expect(asRelay.code).toBe(0);
    const asOwner = JSON.parse((await runCli(['doctor', '--json'])).output) as { checks: Array<{ name: string; status: string }> };
    expect(asOwner.checks.find((c) => c.name === 'migrations')?.status).toBe('ok');
  });
});
