// PostgreSQL terminating the relay's backends (a restart, a failover, pg_terminate_backend): the
// sidecar process must stay up through it and deliver every event (issue 9, defect 2).
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { defineMessage, type OutgoingMessage } from '@mailroom/core';
import { createTestBroker, createTestDatabase, randomName, type TestBroker, type TestDatabase } from '../../../test/helpers.js';
import { outboxCount, startRelayProcess } from './relay-process.js';
import { commitEvents } from './commit-events.js';

let db: TestDatabase;
let broker: TestBroker;
const relays: Array<{ kill(signal?: NodeJS.Signals): void }> = [];

beforeAll(async () => {
  db = await createTestDatabase();
  broker = await createTestBroker();
});
afterAll(async () => {
  // A test that failed leaves its relay running: never outlive the test file.
  for (const relay of relays) relay.kill('SIGKILL');
  await broker?.close();
  await db?.close();
});

async function add(messages: OutgoingMessage[]): Promise<void> {
  await commitEvents(db.pool, db.schema, messages);
}

/**
 * Terminates every backend of `applicationName` again and again until stopped: every 30 ms for
 * the first `fastForMs` (the audit's repro), then every 150 ms. Counts the kills.
 */
function terminateBackends(applicationName: string, fastForMs: number): { stop(): Promise<void>; killed(): number } {
  let killed = 0;
  let running = true;
  const started = Date.now();
  const loop = (async () => {
    while (running) {
      const result = await db.pool
        .query(`SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))::int AS n FROM pg_stat_activity WHERE application_name = $1`, [applicationName])
        .catch(() => ({ rows: [{ n: 0 }] }));
      killed += (result.rows[0] as { n: number }).n;
      await new Promise((r) => setTimeout(r, Date.now() - started < fastForMs ? 30 : 150));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
    },
    killed: () => killed,
  };
}

describe('a relay process whose PostgreSQL backends are terminated again and again', () => {
  // Every 30 ms for 4 s, then every 150 ms until drained: with ordering a batch needs its session
  // to live through a join, a rebalance and a batch, and each failure backs off further, so at
  // 30 ms it barely moves; the slower pace lets it finish in the test's time.
  for (const ordering of [false, true]) {
    it(`stays up and delivers every event (ordering ${ordering ? 'on' : 'off'})`, async () => {
      const exchange = broker.name(`terminated-${ordering}`);
      const queue = await broker.queueFor(exchange, '#');
      const Event = defineMessage('terminated.event', z.object({ n: z.number() }), { exchange });
      const first = Array.from({ length: 300 }, (_, n) => Event.create({ n }, { key: `k-${n % 7}` }));
      const second = Array.from({ length: 300 }, (_, n) => Event.create({ n: 300 + n }, { key: `k-${n % 7}` }));
      await add(first);
      const received = broker.collect(queue);
      const name = randomName('relay');
      const relay = startRelayProcess(db.schema, {
        MAILROOM_RELAY_NAME: name,
        MAILROOM_BATCH_SIZE: '5',
        MAILROOM_CONCURRENCY: '2',
        MAILROOM_ORDERING: String(ordering),
        MAILROOM_PARTITIONS: '4',
        MAILROOM_LEASE_HEARTBEAT_MS: '100',
        MAILROOM_POLL_INTERVAL_MS: '50',
        MAILROOM_RETRY_INITIAL_DELAY_MS: '50',
        MAILROOM_RETRY_MAX_DELAY_MS: '200',
      });
      relays.push(relay);
      await relay.port();
      // Terminations begin once the relay runs (a start-up check that cannot reach PostgreSQL exits 1 by design).
      await vi.waitFor(() => expect(relay.output()).toContain('relay started'), { timeout: 20_000, interval: 20 });
      const terminator = terminateBackends(name, 4_000);
      // An exit ends the test at once, with the relay's output.
      const exited = relay.exited.then((exit) => {
        throw new Error(`the relay exited (${JSON.stringify(exit)}):\n${relay.output()}`);
      });
      exited.catch(() => undefined);
      try {
        await add(second);
        const all = [...first, ...second].map((m) => m.messageId);
        await Promise.race([
          exited,
          vi.waitFor(async () => expect(await outboxCount(db.pool, db.schema)).toBe(0), { timeout: 50_000, interval: 100 }),
        ]);
        await vi.waitFor(() => expect(new Set(received.ids())).toEqual(new Set(all)), { timeout: 20_000, interval: 50 });
        expect(terminator.killed()).toBeGreaterThan(20);
      } finally {
        await terminator.stop();
      }
      // Still the same process, still able to stop cleanly.
      expect(relay.process.exitCode).toBeNull();
      expect(relay.output()).not.toMatch(/Unhandled 'error' event/);
      relay.kill('SIGTERM');
      expect((await relay.exited).code).toBe(0);
      // Every client went back to the pool: none leaked by a connection lost mid-checkout.
      expect(relay.output()).not.toContain('pool still busy');
      await received.stop();
    }, 90_000);
  }
});
