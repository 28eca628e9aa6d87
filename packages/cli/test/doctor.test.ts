// `mailroom doctor` (issue 13): pending migrations, the database alone without a broker URL, and
// with one the broker's permissions (configure, write, read, bind on a temporary name under a
// prefix) and plugins, each reported; exit 1 only for a real problem.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, randomName, spawnNode, testUrls, type TestDatabase } from '../../../test/helpers.js';

const CLI = fileURLToPath(new URL('../dist/main.js', import.meta.url));

let db: TestDatabase;
const users: string[] = [];

beforeAll(async () => {
  db = await createTestDatabase();
});
afterAll(async () => {
  for (const user of users) rabbitmqctl('delete_user', user);
  await db?.close();
});

function rabbitmqctl(...args: string[]): string {
  return execFileSync('rabbitmqctl', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
}

interface Report {
  ok: boolean;
  checks: Array<{ name: string; status: 'ok' | 'fail' | 'skip' | 'note'; message: string; fix?: string }>;
}

async function doctor(args: string[], env: Record<string, string>): Promise<{ code: number | null; output: string }> {
  const child = spawnNode(CLI, ['doctor', ...args], { MAILROOM_DATABASE_URL: testUrls().databaseUrl, MAILROOM_SCHEMA: db.schema, MAILROOM_AMQP_URL: '', ...env });
  const exit = await child.exited;
  return { code: exit.code, output: child.output() };
}

async function doctorJson(args: string[], env: Record<string, string>): Promise<{ code: number | null; report: Report }> {
  const { code, output } = await doctor(['--json', ...args], env);
  return { code, report: JSON.parse(output) as Report };
}

const status = (report: Report, name: string): string | undefined => report.checks.find((c) => c.name === name)?.status;

/** A broker user allowed only these permission patterns on vhost `/`; deleted after the file. */
function brokerUser(configure: string, write: string, read: string): string {
  const user = `mailroom_doctor_${randomBytes(4).toString('hex')}`;
  const password = randomBytes(8).toString('hex');
  rabbitmqctl('add_user', user, password);
  users.push(user);
  rabbitmqctl('set_permissions', '-p', '/', user, configure, write, read);
  const url = new URL(testUrls().amqpUrl);
  url.username = user;
  url.password = password;
  return url.toString();
}

describe('mailroom doctor without a broker URL', () => {
  it('checks the database alone: an unmigrated schema fails, a migrated one passes, the broker is skipped', async () => {
    const fresh = await createTestDatabase({ migrate: false });
    try {
      const before = await doctor([], { MAILROOM_SCHEMA: fresh.schema });
      expect(before.code).toBe(1);
      expect(before.output).toMatch(/^ok {4}PostgreSQL \d+/m);
      expect(before.output).toContain(`FAIL  schema "${fresh.schema}" is not migrated`);
      expect(before.output).toContain('fix: run `mailroom migrate`');
      expect(before.output).toMatch(/^skip {2}RabbitMQ: not checked \(MAILROOM_AMQP_URL is not set/m);
    } finally {
      await fresh.close();
    }
    const after = await doctor([], {});
    expect(after.code).toBe(0);
    expect(after.output).toMatch(new RegExp(`^ok {4}schema "${db.schema}" is up to date`, 'm'));
    expect(after.output).toMatch(/^ok {4}"[^"]+"\.outbox: 0 rows waiting/m);
    expect(after.output).not.toMatch(/FAIL/);
  });

  it('names pending migrations, and notes migrations newer than this mailroom', async () => {
    const s = await createTestDatabase();
    try {
      const last = await s.pool.query<{ id: number; name: string }>(`SELECT id, name FROM "${s.schema}".mailroom_migrations ORDER BY id DESC LIMIT 1`);
      const { id, name } = last.rows[0] as { id: number; name: string };
      await s.pool.query(`DELETE FROM "${s.schema}".mailroom_migrations WHERE id = $1`, [id]);
      await s.pool.query(`INSERT INTO "${s.schema}".mailroom_migrations (id, name) VALUES (999, 'from the future')`);
      const { code, report } = await doctorJson([], { MAILROOM_SCHEMA: s.schema });
      expect(code).toBe(1);
      expect(report.ok).toBe(false);
      expect(report.checks.find((c) => c.name === 'migrations')).toMatchObject({
        status: 'fail',
        message: `schema "${s.schema}": 1 migration pending: ${id} ${name}`,
        fix: 'run `mailroom migrate`',
      });
      expect(report.checks.find((c) => c.name === 'migrations:newer')).toMatchObject({ status: 'note' });
      expect(status(report, 'rabbitmq')).toBe('skip');
    } finally {
      await s.close();
    }
  });

  it('refuses bad arguments with exit 2: an unknown plugin, a reserved or hostile prefix, an unknown flag', async () => {
    for (const args of [['--plugin', 'rabbitmq_management'], ['--prefix', 'amq.x'], ['--prefix', 'a\nb'], ['--prefix', 'x'.repeat(201)], ['--prefix'], ['--frobnicate']]) {
      const { code, output } = await doctor(args, {});
      expect(code, args.join(' ')).toBe(2);
      expect(output).toMatch(/^mailroom doctor: /);
    }
  });
});

describe('mailroom doctor with a broker URL', () => {
  const { amqpUrl } = testUrls();

  it('with full permissions: configure, write, read and bind pass and the temporary names are gone after', async () => {
    const prefix = `${randomName('dr')}.`;
    const { code, report } = await doctorJson(['--prefix', prefix], { MAILROOM_AMQP_URL: amqpUrl });
    expect(report.checks.filter((c) => c.name.startsWith('permission:')).map((c) => [c.name, c.status])).toEqual([
      ['permission:configure', 'ok'],
      ['permission:write', 'ok'],
      ['permission:read', 'ok'],
      ['permission:bind', 'ok'],
    ]);
    // The consistent-hash plugin is always looked at, but only noted when missing: nothing needs it yet.
    expect(['ok', 'note']).toContain(status(report, 'plugin:rabbitmq_consistent_hash_exchange'));
    expect(code).toBe(0);
    expect(report.ok).toBe(true);
    expect(rabbitmqctl('list_exchanges', 'name')).not.toContain(prefix);
    expect(rabbitmqctl('list_queues', 'name')).not.toContain(prefix);
  });

  it('a plugin the configuration needs and that is not enabled fails, with the command that enables it', async () => {
    const enabled = rabbitmqctl('eval', 'rabbit_plugins:active().');
    const plugin = ['rabbitmq_random_exchange', 'rabbitmq_recent_history_exchange', 'rabbitmq_sharding'].find((p) => !enabled.includes(p));
    expect(plugin, 'a plugin that is not enabled on the test broker').toBeDefined();
    const { code, output } = await doctor(['--plugin', plugin as string], { MAILROOM_AMQP_URL: amqpUrl });
    expect(code).toBe(1);
    expect(output).toMatch(new RegExp(`^FAIL  ${plugin} is not enabled \\(RabbitMQ does not know exchange type x-`, 'm'));
    expect(output).toContain(`fix: rabbitmq-plugins enable ${plugin}`);
    // The probe's connection was closed by the broker (503): the other checks still ran and passed.
    expect(output).toMatch(/^ok {4}bind on /m);
  });

  it('a user without configure on the prefix: configure fails, the rest is skipped, not failed', async () => {
    const prefix = `${randomName('dr')}.`;
    const url = brokerUser('^$', '.*', '.*');
    const { code, report } = await doctorJson(['--prefix', prefix], { MAILROOM_AMQP_URL: url });
    expect(code).toBe(1);
    expect(status(report, 'rabbitmq')).toBe('ok');
    const configure = report.checks.find((c) => c.name === 'permission:configure');
    expect(configure?.status).toBe('fail');
    expect(configure?.message).toMatch(/403|ACCESS.REFUSED/);
    expect(configure?.fix).toContain(`names starting with "${prefix}"`);
    expect(['permission:write', 'permission:read', 'permission:bind'].map((n) => status(report, n))).toEqual(['skip', 'skip', 'skip']);
    expect(JSON.stringify(report)).not.toContain(new URL(url).password);
  });

  it('a user that may configure and read but not write: write and bind fail, read passes', async () => {
    const prefix = `${randomName('dr')}.`;
    const escaped = prefix.replace(/[.]/g, '\\.');
    const url = brokerUser(`^${escaped}.*`, '^$', '.*');
    const { code, report } = await doctorJson(['--prefix', prefix], { MAILROOM_AMQP_URL: url });
    expect(code).toBe(1);
    expect(report.checks.filter((c) => c.name.startsWith('permission:')).map((c) => [c.name, c.status])).toEqual([
      ['permission:configure', 'ok'],
      ['permission:write', 'fail'],
      ['permission:read', 'ok'],
      ['permission:bind', 'fail'],
    ]);
    expect(report.checks.find((c) => c.name === 'permission:write')?.message).toMatch(/ACCESS.REFUSED/);
    expect(rabbitmqctl('list_exchanges', 'name')).not.toContain(prefix);
    expect(rabbitmqctl('list_queues', 'name')).not.toContain(prefix);
  });

  it('a broker that cannot be reached fails the broker check and says where, without the password', async () => {
    const { code, output } = await doctor([], { MAILROOM_AMQP_URL: 'amqp://someone:s3cret-pw@127.0.0.1:1' });
    expect(code).toBe(1);
    expect(output).toMatch(/^FAIL  Cannot connect to RabbitMQ at amqp:\/\/someone:\*\*\*@127\.0\.0\.1:1/m);
    expect(output).not.toContain('s3cret-pw');
  });
});
