// The strangler-fig story of `pnpm demo` (story 4) as an end-to-end test: the same processes and
// requests, with assertions on the databases the story leaves behind. Its own five databases and
// broker prefix, dropped afterwards.
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { databaseUrlFor, dropDatabase } from '@mailroom/example-kit';
import { cleanupBroker } from '@mailroom/example-kit/orchestra';
import { stranglerBrokerNames, stranglerStory } from '@mailroom/example-strangler-fig/story';
import { testUrls } from '../../../test/helpers.js';

// Every convergence step of the story must finish within this; locally each takes well under a second.
const BOUND_MS = 20_000;
const run = randomBytes(4).toString('hex');
const prefix = `mailroom-e2e-${run}`;
const db = {
  monolith: `mr_e2e_${run}_monolith`,
  users: `mr_e2e_${run}_users_svc`,
  mailer: `mr_e2e_${run}_mailer`,
  reportingLive: `mr_e2e_${run}_reporting_live`,
  reporting: `mr_e2e_${run}_reporting`,
};

const lines: string[] = [];
const say = (icon: string, text: string): void => {
  lines.push(`${icon} ${text}`);
};

async function query<T>(database: string, text: string, values: unknown[] = []): Promise<T[]> {
  const client = new pg.Client({ connectionString: databaseUrlFor(testUrls().databaseUrl, database) });
  await client.connect();
  try {
    return (await client.query(text, values)).rows as T[];
  } finally {
    await client.end();
  }
}

const PROJECTION = `SELECT u.user_id::text AS user_id, u.country, u.version, count(o.order_id)::int AS orders, coalesce(sum(o.amount), 0)::text AS amount
  FROM report_users u LEFT JOIN report_orders o ON o.user_id = u.user_id GROUP BY 1, 2, 3 ORDER BY 1`;

afterAll(async () => {
  const { databaseUrl, amqpUrl } = testUrls();
  await cleanupBroker(amqpUrl, stranglerBrokerNames(prefix));
  for (const name of Object.values(db)) await dropDatabase(databaseUrl, name);
}, 60_000);

describe('examples: the strangler-fig story end to end', () => {
  it('users taken out of the monolith: backfill by history replay, v2 beside an old consumer, reads switched, reconciled, reporting rebuilt from history', async () => {
    const { databaseUrl, amqpUrl } = testUrls();
    const facts = await stranglerStory({ databaseUrl, amqpUrl, prefix, databases: db, say, boundMs: BOUND_MS }).catch((error: unknown) => {
      throw new Error(`${(error as Error).message}\nstory so far:\n${lines.join('\n')}`);
    });
    expect(Math.max(...facts.convergenceMs)).toBeLessThan(BOUND_MS);

    // A sign-up the contract refuses: 400, no row, no event.
    expect(facts.badSignUp).toEqual({ status: 400, written: 0 });
    // The past went into history as snapshots, and the users service was backfilled from it.
    expect(facts.snapshot.users).toBeGreaterThanOrEqual(facts.past.users);
    expect(facts.snapshot.orders).toBeGreaterThanOrEqual(facts.past.orders);
    // The replay selects the users service's three types: at least a snapshot per user (the live
    // user events archived by then come on top; the order events are not selected).
    expect(facts.usersReplay?.published).toBeGreaterThanOrEqual(facts.snapshot.users);

    // The users service's table equals the monolith's, straight from the databases.
    const monolithUsers = await query<{ id: string; email: string; name: string; country: string; version: number }>(
      db.monolith,
      'SELECT id, email, name, country, version FROM users ORDER BY id',
    );
    const serviceUsers = await query<{ id: string; email: string; name: string; country: string; version: number }>(
      db.users,
      "SELECT id, email, trim(given_name || ' ' || family_name) AS name, country, version FROM users ORDER BY id",
    );
    expect(serviceUsers).toEqual(monolithUsers);
    expect(monolithUsers.length).toBeGreaterThan(facts.past.users);
    // The reconciliation found the hotfix made behind the write path's back, and nothing at the end.
    expect(facts.reconcileBefore.differences).toEqual([expect.objectContaining({ kind: 'differs', field: 'email' })]);
    expect(facts.reconcileAfter.code).toBe(0);
    expect(facts.reconcileAfter.output).toMatch(/nothing differs$/);

    // Reads switched: the monolith answers with what only the users service knows.
    expect(facts.readsSwitched).toBe(true);
    expect(facts.readSwitch.after).toMatchObject({ servedBy: 'users-service', givenName: 'Mary Ann', familyName: 'Evans' });
    expect(facts.readSwitch.reads.usersService).toBeGreaterThanOrEqual(1);

    // Version 2 at the legacy mailer: dead letters `unknown-version`, each replayed and applied by release 2.
    const letters = await query<{ message_id: string; reason: string; error: string; replayed: boolean; version: string | null }>(
      db.mailer,
      "SELECT message_id, reason, error, replayed_at IS NOT NULL AS replayed, headers->>'x-mailroom-version' AS version FROM mailroom.dead_letters",
    );
    expect(letters.length).toBeGreaterThanOrEqual(1);
    for (const letter of letters) {
      expect(letter).toMatchObject({ reason: 'unknown-version', replayed: true, version: '2' });
      expect(letter.error).toMatch(/version 2 is newer than consumer "mailer" knows \(1\)/);
    }
    const mails = await query<{ message_id: string; contract_version: number; release: string; greeting: string; user_id: string }>(db.mailer, 'SELECT * FROM welcome_mails');
    const mailByMessage = new Map(mails.map((m) => [m.message_id, m]));
    for (const letter of letters) expect(mailByMessage.get(letter.message_id)).toMatchObject({ contract_version: 2, release: '2' });
    expect(mails.find((m) => m.user_id === facts.mary)?.greeting).toBe('Dear Mary Ann');
    // Every user.created the monolith published (v1 and v2) welcomed once; no snapshot welcomed.
    const createdEvents = await query<{ message_id: string }>(db.monolith, "SELECT message_id FROM mailroom.outbox_archive WHERE type = 'user.created'");
    expect(new Set(mails.map((m) => m.message_id))).toEqual(new Set(createdEvents.map((e) => e.message_id)));

    // The reporting projection rebuilt from history equals the one built live, row for row, and the monolith's truth.
    const rebuilt = await query(db.reporting, PROJECTION);
    const live = await query(db.reportingLive, PROJECTION);
    expect(rebuilt).toEqual(live);
    expect(rebuilt.length).toBe(monolithUsers.length);
    expect(facts.liveDuringReplay).toBeGreaterThan(0);

    // No message handled twice (the inbox), and each handled message has its inbox row.
    for (const name of [db.users, db.mailer, db.reportingLive, db.reporting]) {
      const [twice] = await query<{ n: number }>(name, 'SELECT count(*)::int AS n FROM (SELECT message_id FROM handled_log GROUP BY message_id HAVING count(*) > 1) m');
      expect(twice?.n).toBe(0);
      const [counts] = await query<{ handled: number; inbox: number }>(
        name,
        'SELECT (SELECT count(*)::int FROM handled_log) AS handled, (SELECT count(*)::int FROM mailroom.inbox) AS inbox',
      );
      expect(counts?.handled).toBe(counts?.inbox);
    }
    expect(Object.values(facts.handledTwice)).toEqual([0, 0, 0, 0]);
    // Nothing any service but the legacy mailer could not handle (a replay without --type sends the
    // users service order events it has no handler for).
    for (const name of [db.users, db.reportingLive, db.reporting]) {
      const [letters] = await query<{ n: number }>(name, 'SELECT count(*)::int AS n FROM mailroom.dead_letters');
      expect(letters?.n).toBe(0);
    }
    // Every process, the sidecar relay included, exits 0 on SIGTERM.
    expect(Object.values(facts.exitCodes).every((code) => code === 0)).toBe(true);
    expect(Object.keys(facts.exitCodes).sort()).toEqual(['mailer', 'monolith', 'monolith-relay', 'reporting', 'reporting-live', 'users-svc']);
  }, 180_000);
});
