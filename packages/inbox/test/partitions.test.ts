// Partitioned consumers: the topology on the broker, the leases shared by processes, and the
// must-show run with three consumer processes (real children, one killed with SIGKILL and
// restarted). The children import the BUILT packages: run `pnpm build` before this file.
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { defineMessage } from '@mailroom/core';
import { createConsumer, handler, type Consumer } from '@mailroom/inbox';
import { declareConsumerTopology } from '../src/consumer-topology.js';
import pg from 'pg';
import { spawnNode, startTcpProxy, testUrls, type Child } from '../../../test/helpers.js';
import { WAIT, deadLetterTopology, setupEnv, type Env } from './support.js';

const fixture = fileURLToPath(new URL('./fixtures/partitioned-consumer.mjs', import.meta.url));
const Step = (exchange: string) => defineMessage('key.step', z.object({ key: z.string(), seq: z.number().int() }), { exchange });
const pad = (i: number): string => String(i).padStart(3, '0');

let env: Env;
beforeAll(async () => {
  env = await setupEnv();
  await env.db.pool.query(`CREATE TABLE "${env.db.schema}".key_state (key text PRIMARY KEY, last int NOT NULL)`);
  await env.db.pool.query(
    `CREATE TABLE "${env.db.schema}".key_effects (id bigserial PRIMARY KEY, key text NOT NULL, seq int NOT NULL, prev int NOT NULL, label text NOT NULL)`,
  );
});
afterAll(async () => {
  const ch = await env.broker.connection.createChannel();
  for (const q of queues) await ch.deleteQueue(q).catch(() => undefined);
  for (const x of exchanges) await ch.deleteExchange(x).catch(() => undefined);
  await ch.close().catch(() => undefined);
  await env.cleanup();
});

const queues = new Set<string>();
const exchanges = new Set<string>();
/** Remembers what a partitioned consumer of `name` declares, for the cleanup. */
function declared(name: string, count: number): void {
  for (let i = 0; i < count; i++) queues.add(`${name}.p${pad(i)}`);
  exchanges.add(`${name}.partitions`);
  exchanges.add(eventsOf(name));
}

/** Each test's own source exchange, so that one test's events never reach another's queues. */
const eventsOf = (name: string): string => `${name}.events`;

/** Publishes `key.step` events, confirmed; `perKey` events for each key, in sequence order per key. */
async function publishSteps(keys: string[], perKey: number, exchange: string): Promise<void> {
  const pending: Array<Promise<void>> = [];
  for (let seq = 0; seq < perKey; seq++) {
    for (const key of keys) {
      pending.push(
        new Promise<void>((resolve, reject) => {
          env.publisher.publish(
            exchange,
            'key.step',
            Buffer.from(JSON.stringify({ key, seq })),
            { messageId: randomUUID(), type: 'key.step', contentType: 'application/json', persistent: true, headers: { 'x-mailroom-key': key } },
            (err: unknown) => (err ? reject(err instanceof Error ? err : new Error('nacked')) : resolve()),
          );
        }),
      );
    }
    // Bounded in flight: the confirm channel keeps up without buffering 10 000 frames at once.
    if (pending.length >= 2000) await Promise.all(pending.splice(0));
  }
  await Promise.all(pending);
}

function partitionedConsumer(name: string, count: number, overrides: Record<string, unknown> = {}): Consumer {
  declared(name, count);
  const consumer = createConsumer({
    name,
    db: env.db.pool,
    amqp: testUrls().amqpUrl,
    schema: env.db.schema,
    partitions: { count, rebalanceMs: 200 },
    handlers: [handler(Step(eventsOf(name)), async () => undefined)],
    deadLetters: deadLetterTopology(env),
    stopTimeoutMs: 5000,
    ...overrides,
  });
  env.consumers.push(consumer);
  return consumer;
}

describe('partitioned topology', () => {
  it('declares N partition queues with a single active consumer behind a consistent-hash exchange; a key always lands in one partition, unkeyed messages in one', async () => {
    const name = env.broker.name('topo');
    const consumer = partitionedConsumer(name, 4);
    await consumer.start();
    await vi.waitFor(() => expect(consumer.partitions).toEqual([0, 1, 2, 3]), WAIT);
    expect(consumer.delayQueues).toEqual([]);
    await consumer.stop();
    const keys = Array.from({ length: 40 }, (_, i) => `k${i}`);
    await publishSteps(keys, 3, eventsOf(name));
    // Two unkeyed messages, and a key with a NUL byte and non-ASCII text (hashed like any other).
    for (const headers of [{}, {}, { 'x-mailroom-key': 'n\u0000ü' }, { 'x-mailroom-key': 'n\u0000ü' }]) {
      await new Promise<void>((resolve, reject) =>
        env.publisher.publish(eventsOf(name), 'key.step', Buffer.from('{}'), { messageId: randomUUID(), headers }, (err: unknown) => (err ? reject(err instanceof Error ? err : new Error('nacked')) : resolve())),
      );
    }
    const ch = await env.broker.connection.createChannel();
    try {
      const where = new Map<string, Set<number>>();
      let total = 0;
      for (let p = 0; p < 4; p++) {
        // Declaring it again with the same arguments passes: x-single-active-consumer is set.
        await ch.assertQueue(`${name}.p${pad(p)}`, { durable: true, arguments: { 'x-queue-type': 'classic', 'x-single-active-consumer': true } });
        for (;;) {
          const m = await ch.get(`${name}.p${pad(p)}`, { noAck: true });
          if (m === false) break;
          total++;
          const raw: unknown = m.properties.headers?.['x-mailroom-key'];
          const key = raw === undefined ? '(none)' : Buffer.isBuffer(raw) ? raw.toString('utf8') : typeof raw === 'string' ? raw : JSON.stringify(raw);
          where.set(key, (where.get(key) ?? new Set()).add(p));
        }
      }
      expect(total).toBe(40 * 3 + 4);
      for (const [key, parts] of where) expect([key, parts.size]).toEqual([key, 1]);
      // Spread: with 40 keys over 4 partitions, every partition gets some.
      expect(new Set([...where.values()].flatMap((s) => [...s])).size).toBe(4);
      expect(where.get('(none)')?.size).toBe(1);
    } finally {
      await ch.close();
    }
  });

  it('the hash ring rebuilt as on a broker restart (from the bindings sorted by queue name) maps every bucket to the same partition', async () => {
    const name = env.broker.name('ring');
    const consumer = partitionedConsumer(name, 12);
    await consumer.start();
    await consumer.stop();
    const exchange = `${name}.partitions`;
    // rabbitmqctl and rabbitmq-diagnostics live in sbin.
    const run = (tool: string, ...args: string[]): string =>
      execFileSync(tool, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, PATH: `${process.env.PATH ?? ''}:/usr/local/sbin:/usr/sbin:/sbin` } });
    const ring = (): string[] => {
      const buckets = new Map<number, string>();
      for (const m of run('rabbitmq-diagnostics', '-q', 'consistent_hash_exchange_ring_state', '-p', '/', exchange).matchAll(/Ring index: (\d+), queue: '([^']+)'/g)) {
        buckets.set(Number(m[1]), m[2] ?? '');
      }
      return [...buckets.keys()].sort((a, b) => a - b).map((i) => buckets.get(i) ?? '');
    };
    const before = ring();
    expect(before).toEqual(Array.from({ length: 12 }, (_, i) => `${name}.p${pad(i)}`));
    // What a node does at boot: the ring (kept in memory) is gone, and the plugin's init rebuilds it
    // from the durable bindings (this drops only this exchange's ring; the others are left as they are).
    const erlangName = name.replace(/[\\"]/g, '');
    run('rabbitmqctl', '-q', 'eval', `mnesia:dirty_delete(rabbit_exchange_type_consistent_hash_ring_state, rabbit_misc:r(<<"/">>, exchange, <<"${erlangName}.partitions">>)), rabbit_exchange_type_consistent_hash:init().`);
    expect(ring()).toEqual(before);
  });

  it('works with quorum queues: a partitioned quorum consumer handles every key in order', async () => {
    const name = env.broker.name('quorum');
    declared(name, 3);
    const seen = new Map<string, number[]>();
    const consumer = partitionedConsumer(name, 3, {
      queueType: 'quorum',
      handlers: [
        handler(Step(eventsOf(name)), async ({ payload }) => {
          seen.set(payload.key, [...(seen.get(payload.key) ?? []), payload.seq]);
        }),
      ],
    });
    await consumer.start();
    const ch = await env.broker.connection.createChannel();
    const info = await ch.checkQueue(`${name}.p000`);
    await ch.close();
    expect(info.queue).toBe(`${name}.p000`);
    await publishSteps(['a', 'b', 'c', 'd', 'e'], 30, eventsOf(name));
    await vi.waitFor(() => expect([...seen.values()].reduce((n, s) => n + s.length, 0)).toBe(150), WAIT);
    for (const [, seqs] of seen) expect(seqs).toEqual(Array.from({ length: 30 }, (_, i) => i));
    await consumer.stop();
  });

  it('two consumers of one name share the partitions evenly, and the survivor of a stop takes them all', async () => {
    const name = env.broker.name('share');
    const a = partitionedConsumer(name, 6);
    const b = partitionedConsumer(name, 6);
    await a.start();
    await b.start();
    await vi.waitFor(() => {
      expect(a.partitions.length + b.partitions.length).toBe(6);
      expect([a.partitions.length, b.partitions.length]).toEqual([3, 3]);
    }, WAIT);
    expect(new Set([...a.partitions, ...b.partitions]).size).toBe(6);
    await a.stop();
    await vi.waitFor(() => expect(b.partitions).toEqual([0, 1, 2, 3, 4, 5]), WAIT);
    await b.stop();
  });

  it('refuses partitions with ordering: false, a kysely db without a pool, and a count out of range', () => {
    const base = { name: 'p', db: env.db.pool, amqp: testUrls().amqpUrl, handlers: [handler(Step(env.exchange), async () => undefined)] };
    expect(() => createConsumer({ ...base, partitions: { count: 4 }, ordering: false })).toThrow(/"partitions".*ordering/);
    const kysely = { isTransaction: false, executeQuery: () => undefined, transaction: () => undefined, selectFrom: () => undefined };
    expect(() => createConsumer({ ...base, db: kysely as never, partitions: { count: 4 } })).toThrow(/partitions\.pool/);
    expect(() => createConsumer({ ...base, partitions: { count: 0 } })).toThrow(/partitions\.count/);
    expect(() => createConsumer({ ...base, partitions: { count: 1000 } })).toThrow(/partitions\.count/);
    expect(() => createConsumer({ ...base, queue: 'q'.repeat(250), partitions: { count: 4 } })).toThrow(/255/);
  });
});

describe('partitioned consumer under faults', () => {
  it('the broker connection cut and the lease session terminated while consuming: partitions come back, every key stays in order, one effect each', async () => {
    const name = env.broker.name('faults');
    const proxy = await startTcpProxy(testUrls().amqpUrl, 5672);
    const app = `partition-victim-${env.db.schema}`;
    const pool = new pg.Pool({ connectionString: testUrls().databaseUrl, max: 8, application_name: app });
    pool.on('error', () => undefined);
    const effectsOf = async (): Promise<number> =>
      Number((await env.db.pool.query<{ n: string }>(`SELECT count(*)::text AS n FROM "${env.db.schema}".key_effects WHERE label = 'faults'`)).rows[0]?.n);
    try {
      const consumer = partitionedConsumer(name, 4, {
        db: pool,
        amqp: proxy.url(testUrls().amqpUrl),
        prefetch: 10,
        handlers: [
          handler(Step(eventsOf(name)), async ({ db, payload }) => {
            const schema = env.db.schema;
            const state = await db.query<{ last: number }>(`SELECT last FROM "${schema}".key_state WHERE key = $1 FOR UPDATE`, [payload.key]);
            const prev = state.rows[0]?.last ?? -1;
            await db.query(`INSERT INTO "${schema}".key_effects (key, seq, prev, label) VALUES ($1, $2, $3, 'faults')`, [payload.key, payload.seq, prev]);
            await db.query(`INSERT INTO "${schema}".key_state (key, last) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET last = EXCLUDED.last`, [payload.key, payload.seq]);
            // Slow enough that the faults below land mid-run.
            await new Promise((resolve) => setTimeout(resolve, 20));
          }),
        ],
      });
      await consumer.start();
      await vi.waitFor(() => expect(consumer.partitions).toEqual([0, 1, 2, 3]), WAIT);
      const keys = Array.from({ length: 20 }, (_, i) => `faults-${i}`);
      await publishSteps(keys, 60, eventsOf(name));
      await vi.waitFor(async () => expect(await effectsOf()).toBeGreaterThanOrEqual(200), WAIT);
      proxy.cut();
      await vi.waitFor(async () => expect(await effectsOf()).toBeGreaterThanOrEqual(500), WAIT);
      // The lease session dies: every partition stops at once, and is taken again on a new session.
      const killed = await env.db.pool.query(
        `SELECT pg_terminate_backend(l.pid) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' AND a.application_name = $1`,
        [app],
      );
      expect(killed.rowCount).toBeGreaterThan(0);
      await vi.waitFor(async () => expect(await effectsOf()).toBe(1200), WAIT);
      await vi.waitFor(() => expect(consumer.partitions).toEqual([0, 1, 2, 3]), WAIT);
      const check = await env.db.pool.query(
        `SELECT count(*)::int AS total, count(DISTINCT (key, seq))::int AS distinct, count(*) FILTER (WHERE prev <> seq - 1)::int AS out_of_order
           FROM "${env.db.schema}".key_effects WHERE label = 'faults'`,
      );
      expect(check.rows[0]).toEqual({ total: 1200, distinct: 1200, out_of_order: 0 });
      await consumer.stop();
    } finally {
      await proxy.close();
      await pool.end();
    }
  });

  it('a partition handed over while slow handlers hold its deliveries: the new holder starts after them, every key stays in order', async () => {
    const name = env.broker.name('handover');
    const label = 'handover';
    const slowStep = handler(Step(eventsOf(name)), async ({ db, payload }) => {
      const schema = env.db.schema;
      const state = await db.query<{ last: number }>(`SELECT last FROM "${schema}".key_state WHERE key = $1 FOR UPDATE`, [payload.key]);
      const prev = state.rows[0]?.last ?? -1;
      await db.query(`INSERT INTO "${schema}".key_effects (key, seq, prev, label) VALUES ($1, $2, $3, $4)`, [payload.key, payload.seq, prev, label]);
      await db.query(`INSERT INTO "${schema}".key_state (key, last) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET last = EXCLUDED.last`, [payload.key, payload.seq]);
      await new Promise((resolve) => setTimeout(resolve, 40));
    });
    const count = async (): Promise<number> =>
      Number((await env.db.pool.query<{ n: string }>(`SELECT count(*)::text AS n FROM "${env.db.schema}".key_effects WHERE label = $1`, [label])).rows[0]?.n);
    const a = partitionedConsumer(name, 2, { prefetch: 10, handlers: [slowStep], partitions: { count: 2, rebalanceMs: 100, handoverTimeoutMs: 5000 } });
    const b = partitionedConsumer(name, 2, { prefetch: 10, handlers: [slowStep], partitions: { count: 2, rebalanceMs: 100, handoverTimeoutMs: 5000 } });
    await a.start();
    await vi.waitFor(() => expect(a.partitions).toEqual([0, 1]), WAIT);
    const keys = Array.from({ length: 6 }, (_, i) => `handover-${i}`);
    await publishSteps(keys, 25, eventsOf(name));
    await vi.waitFor(async () => expect(await count()).toBeGreaterThanOrEqual(15), WAIT);
    // B joins while A holds deliveries of both partitions in flight: A gives one back.
    await b.start();
    await vi.waitFor(() => expect([a.partitions.length, b.partitions.length]).toEqual([1, 1]), WAIT);
    await vi.waitFor(async () => expect(await count()).toBe(150), WAIT);
    const check = await env.db.pool.query(
      `SELECT count(*)::int AS total, count(DISTINCT (key, seq))::int AS distinct, count(*) FILTER (WHERE prev <> seq - 1)::int AS out_of_order
         FROM "${env.db.schema}".key_effects WHERE label = $1`,
      [label],
    );
    expect(check.rows[0]).toEqual({ total: 150, distinct: 150, out_of_order: 0 });
    expect(b.stats.handled, 'B handled the partition it took').toBeGreaterThan(0);
    await Promise.all([a.stop(), b.stop()]);
  });

  it('a broker without the consistent-hash exchange plugin: start() is told the command that enables it', async () => {
    // What amqplib does (seen with an unknown type on a real broker): a connection error, the connection's
    // 'error' event with the server's words first, then the call rejected with "Channel ended".
    const connection = new EventEmitter();
    const refuse = (): Promise<never> => {
      connection.emit('error', new Error(`Connection closed: 503 (COMMAND-INVALID) with message "COMMAND_INVALID - unknown exchange type 'x-consistent-hash'"`));
      return Promise.reject(new Error('Channel ended, no reply will be forthcoming'));
    };
    const channel = {
      connection,
      assertExchange: (_x: string, type: string) => (type === 'x-consistent-hash' ? refuse() : Promise.resolve({})),
      assertQueue: () => Promise.resolve({}),
      bindQueue: () => Promise.resolve({}),
      bindExchange: () => Promise.resolve({}),
    };
    const retry = { maxAttempts: 5, initialDelayMs: 1000, multiplier: 2, maxDelayMs: 300_000 };
    const topology = { queue: 'q', queueType: 'classic' as const, bindings: [{ exchange: 'x', routingKey: '#' }], retry, deadLetters: { exchange: 'd', queue: 'd' } };
    await expect(declareConsumerTopology(channel, { ...topology, partitions: { count: 3 } })).rejects.toThrow(/rabbitmq-plugins enable rabbitmq_consistent_hash_exchange/);
    expect(connection.listenerCount('error'), 'the listener is taken off again').toBe(0);
  });
});

describe('three consumer processes over 12 partitions (must show 1)', () => {
  it('50 keys x 200 events, one process killed with SIGKILL mid-run and restarted: 0 out of order, 0 lost, 0 duplicated effects, every process held a share', async () => {
    const name = env.broker.name('procs');
    declared(name, 12);
    const children = new Map<string, Child>();
    // Every partition set each process reported, by label.
    const spawn = (label: string): Child => {
      const child = spawnNode(fixture, [], {
        FIXTURE_DATABASE_URL: testUrls().databaseUrl,
        FIXTURE_AMQP_URL: testUrls().amqpUrl,
        FIXTURE_SCHEMA: env.db.schema,
        FIXTURE_NAME: name,
        FIXTURE_EXCHANGE: eventsOf(name),
        FIXTURE_DEAD: env.broker.name('dead'),
        FIXTURE_LABEL: label,
        FIXTURE_PARTITIONS: '12',
        FIXTURE_REBALANCE_MS: '500',
      });
      children.set(label, child);
      return child;
    };
    /** The partitions a process holds now, from the last line it printed. */
    const holding = (label: string): number[] => {
      const lines = (children.get(label)?.output() ?? '').split('\n').filter((l) => l.startsWith(`partitions ${label} `));
      const last = lines.at(-1)?.slice(`partitions ${label} `.length) ?? '';
      return last === '' ? [] : last.split(',').map(Number);
    };
    const effects = async (): Promise<number> =>
      Number((await env.db.pool.query<{ n: string }>(`SELECT count(*)::text AS n FROM "${env.db.schema}".key_effects WHERE key LIKE 'key-%'`)).rows[0]?.n);
    try {
      for (const label of ['A', 'B', 'C']) spawn(label);
      await vi.waitFor(() => {
        for (const label of ['A', 'B', 'C']) expect(children.get(label)?.output(), `process ${label} ready`).toContain(`ready ${label}`);
        expect(['A', 'B', 'C'].map((l) => holding(l).length), 'an even share: 4 partitions each').toEqual([4, 4, 4]);
      }, { timeout: 30_000, interval: 100 });
      const shares = Object.fromEntries(['A', 'B', 'C'].map((l) => [l, holding(l)]));
      expect(new Set(Object.values(shares).flat()).size).toBe(12);

      const keys = Array.from({ length: 50 }, (_, i) => `key-${i}`);
      await publishSteps(keys, 200, eventsOf(name));
      await vi.waitFor(async () => expect(await effects()).toBeGreaterThanOrEqual(3000), { timeout: 60_000, interval: 50 });
      const killedHeld = holding('B');
      children.get('B')?.kill('SIGKILL');
      const killedAt = Date.now();
      // The survivors take B's partitions: all 12 held by A and C, within seconds.
      await vi.waitFor(() => {
        expect(holding('A').length + holding('C').length).toBe(12);
      }, { timeout: 15_000, interval: 50 });
      const handoverMs = Date.now() - killedAt;
      const afterKill = { A: holding('A'), C: holding('C') };
      expect(handoverMs).toBeLessThan(10_000);
      // Restarted mid-run: it gets its share back from the survivors.
      spawn('B2');
      await vi.waitFor(() => expect(['A', 'B2', 'C'].map((l) => holding(l).length)).toEqual([4, 4, 4]), { timeout: 30_000, interval: 100 });
      const afterRestart = Object.fromEntries(['A', 'B2', 'C'].map((l) => [l, holding(l)]));

      await vi.waitFor(async () => expect(await effects()).toBeGreaterThanOrEqual(10_000), { timeout: 60_000, interval: 100 });
      // Nothing more arrives: what was redelivered is absorbed by the inbox.
      await new Promise((resolve) => setTimeout(resolve, 1000));
      const check = await env.db.pool.query<{ total: string; distinct: string; out_of_order: string; keys: string }>(
        `SELECT count(*)::text AS total, count(DISTINCT (key, seq))::text AS distinct,
                count(*) FILTER (WHERE prev <> seq - 1)::text AS out_of_order, count(DISTINCT key)::text AS keys
           FROM "${env.db.schema}".key_effects WHERE key LIKE 'key-%'`,
      );
      const byLabel = await env.db.pool.query<{ label: string; n: string }>(`SELECT label, count(*)::text AS n FROM "${env.db.schema}".key_effects WHERE key LIKE 'key-%' GROUP BY label ORDER BY label`);
      const report = {
        shares,
        killedHeld,
        handoverMs,
        afterKill,
        afterRestart,
        handledBy: Object.fromEntries(byLabel.rows.map((r) => [r.label, Number(r.n)])),
        ...check.rows[0],
      };
      console.log(`partitions must-show 1: ${JSON.stringify(report)}`);
      // 0 lost (every (key, seq) has an effect), 0 duplicated effects, 0 out of order.
      expect(check.rows[0]).toEqual({ total: '10000', distinct: '10000', out_of_order: '0', keys: '50' });
      for (const label of ['A', 'B', 'B2', 'C']) expect(report.handledBy[label], `effects committed by ${label}`).toBeGreaterThan(0);
    } catch (error) {
      // What the processes said, for the diagnosis.
      for (const [label, child] of children) console.log(`process ${label} said:\n${child.output().split('\n').slice(-30).join('\n')}`);
      throw error;
    } finally {
      for (const child of children.values()) child.kill('SIGKILL');
      await Promise.all([...children.values()].map((c) => c.exited));
    }
  }, 120_000);
});
