// The monolith: users and orders in one database, one schema. Its users part is being taken out
// (the strangler fig). What changes as the story goes are switches, as a team would ship them
// behind feature flags (POST /admin/flags):
//   events              false: writes touch only its own tables (the past). true: every write of
//                       a user or an order enqueues its event in the same transaction (the outbox;
//                       this replaces the dual write to a second database, see README). The relay
//                       is the sidecar `mailroom relay` with MAILROOM_ARCHIVE=true.
//   userCreatedVersion  1 or 2: which version of user.created it produces.
//   usersServiceUrl     set: GET /users/:id is answered by the users service (reads switched).
// It never talks to RabbitMQ itself.
//
//   DATABASE_URL     its own database (e.g. postgres://…/mailroom_demo_monolith)
//   EXAMPLE_PREFIX   prefix of exchanges and queues (default mailroom-example)
//   PORT             HTTP port (default: a free one)
//
//   POST  /users           {email, country, name | givenName + familyName} -> 201 the user
//   PATCH /users/:id       {email?, country?}    -> the user (user.updated)
//   GET   /users/:id       local, or from the users service once reads switched
//   POST  /orders          {userId, amount}      -> 201 the order (order.placed)
//   POST  /admin/flags     {events?, userCreatedVersion?, usersServiceUrl?} -> the flags
//   POST  /admin/snapshot  {batchSize?}          -> {users, orders, batches}: the past as events
//   POST  /admin/resync/:id                      -> the user: re-emits its state (user.updated, version + 1)
//   GET   /stats           flags, reads served locally and by the users service
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { enqueue } from '@mailroom/outbox';
import { HttpError, migrateService, openPool, requireEnv, runService, startHttp, stopService } from '@mailroom/example-kit';
import { stranglerContracts } from './contracts.mjs';

const prefix = process.env.EXAMPLE_PREFIX ?? 'mailroom-example';
const { UserCreatedV1, UserCreated, UserUpdated, UserSnapshot, OrderPlaced, OrderSnapshot } = stranglerContracts(prefix);
const UUID = '(?<id>[0-9a-f-]{36})';

async function inTransaction(pool, work) {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const result = await work(client);
    await client.query('COMMIT');
    return result;
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    if (error.code === '23505') throw new HttpError(409, 'that email is taken');
    if (error.code === '23503') throw new HttpError(404, 'no such user');
    throw error;
  } finally {
    client.release();
  }
}

const toUser = (row) => ({ id: row.id, email: row.email, name: row.name, country: row.country, version: row.version });
const v1Payload = (row) => ({ userId: row.id, email: row.email, name: row.name, country: row.country, version: row.version });

runService('monolith', async (log) => {
  const pool = openPool(requireEnv('DATABASE_URL'), log);
  const migrated = await migrateService(pool, fileURLToPath(new URL('../migrations/monolith', import.meta.url)));
  log(`migrated (service: ${migrated.service.length} new, mailroom: ${migrated.mailroom} new)`);
  const flags = { events: false, userCreatedVersion: 1, usersServiceUrl: null };
  const reads = { local: 0, usersService: 0 };

  /** The user.created of the version the flags say, validated before anything is written. */
  function userCreated(row, given, family) {
    if (flags.userCreatedVersion === 2) {
      const names = given === undefined ? { givenName: row.name.split(' ')[0], familyName: row.name.split(' ').slice(1).join(' ') } : { givenName: given, familyName: family };
      return UserCreated.create({ userId: row.id, email: row.email, country: row.country, version: row.version, ...names }, { key: row.id });
    }
    return UserCreatedV1.create(v1Payload(row), { key: row.id });
  }

  const http = await startHttp(
    'monolith',
    [
      [
        'POST',
        /^\/users$/,
        async ({ body }) => {
          const split = typeof body.givenName === 'string';
          // The legacy table keeps one name: the new form's two fields are joined into it.
          const name = split ? `${body.givenName} ${body.familyName ?? ''}`.trim() : String(body.name ?? '');
          const row = { id: randomUUID(), email: String(body.email ?? ''), name, country: String(body.country ?? ''), version: 1 };
          // Validate with the contract first: a bad request is a 400, not a rolled-back transaction.
          const event = flags.events ? userCreated(row, split ? body.givenName : undefined, split ? String(body.familyName ?? '') : undefined) : null;
          if (!event && (row.name === '' || !/^[A-Z]{2}$/.test(row.country))) throw new HttpError(400, 'give email, name and country (two capital letters)');
          await inTransaction(pool, async (tx) => {
            await tx.query('INSERT INTO users (id, email, name, country) VALUES ($1, $2, $3, $4)', [row.id, row.email, row.name, row.country]);
            if (event) await enqueue(tx, event);
          });
          log(`created user ${row.id.slice(0, 8)} <${row.email}>${event ? `, user.created v${event.version} ${event.messageId.slice(0, 8)} in the outbox` : ''}`);
          return { status: 201, body: toUser(row) };
        },
      ],
      [
        'PATCH',
        new RegExp(`^/users/${UUID}$`),
        async ({ params, body }) => {
          const row = await inTransaction(pool, async (tx) => {
            const { rows } = await tx.query(
              'UPDATE users SET email = COALESCE($2, email), country = COALESCE($3, country), version = version + 1 WHERE id = $1 RETURNING *',
              [params.id, body.email ?? null, body.country ?? null],
            );
            if (rows.length === 0) throw new HttpError(404, 'no such user');
            const user = rows[0];
            if (flags.events) await enqueue(tx, UserUpdated.create({ userId: user.id, email: user.email, country: user.country, version: user.version }, { key: user.id }));
            return user;
          });
          return toUser(row);
        },
      ],
      [
        'GET',
        new RegExp(`^/users/${UUID}$`),
        async ({ params }) => {
          if (flags.usersServiceUrl) {
            // Reads switched: the users service owns the answer (the strangler's façade).
            const res = await fetch(`${flags.usersServiceUrl}/users/${params.id}`);
            if (res.status === 404) throw new HttpError(404, 'no such user');
            if (!res.ok) throw new Error(`the users service answered ${res.status}`);
            reads.usersService += 1;
            return { ...(await res.json()), servedBy: 'users-service' };
          }
          const { rows } = await pool.query('SELECT * FROM users WHERE id = $1', [params.id]);
          if (rows.length === 0) throw new HttpError(404, 'no such user');
          reads.local += 1;
          return { ...toUser(rows[0]), servedBy: 'monolith' };
        },
      ],
      [
        'POST',
        /^\/orders$/,
        async ({ body }) => {
          const amount = Number(body.amount);
          const row = { id: randomUUID(), userId: String(body.userId ?? ''), amount };
          if (!(amount > 0) || !/^[0-9a-f-]{36}$/.test(row.userId)) throw new HttpError(400, 'give userId (a UUID) and amount (> 0)');
          await inTransaction(pool, async (tx) => {
            await tx.query('INSERT INTO orders (id, user_id, amount) VALUES ($1, $2, $3)', [row.id, row.userId, amount]);
            if (flags.events) await enqueue(tx, OrderPlaced.create({ orderId: row.id, userId: row.userId, amount }, { key: row.userId }));
          });
          return { status: 201, body: row };
        },
      ],
      [
        'POST',
        /^\/admin\/flags$/,
        async ({ body }) => {
          if (body.events !== undefined) flags.events = body.events === true;
          if (body.userCreatedVersion !== undefined) {
            if (body.userCreatedVersion !== 1 && body.userCreatedVersion !== 2) throw new HttpError(400, 'userCreatedVersion is 1 or 2');
            flags.userCreatedVersion = body.userCreatedVersion;
          }
          if (body.usersServiceUrl !== undefined) flags.usersServiceUrl = body.usersServiceUrl === null ? null : String(body.usersServiceUrl);
          log(`flags now ${JSON.stringify(flags)}`);
          return flags;
        },
      ],
      [
        'POST',
        /^\/admin\/snapshot$/,
        async ({ body }) => {
          // The past as events: every user and order that exists now, in batches by id, each batch
          // one transaction. FOR SHARE holds off a concurrent change of the batch's rows until the
          // snapshot committed, so that change's event (a higher version) comes after it; a
          // version guard in each consumer sorts out the rest. Run it after `events` is on, so
          // nothing falls between the snapshot and the live events.
          if (!flags.events) throw new HttpError(409, 'turn events on first: a change between the snapshot and the switch would be lost');
          const batchSize = Math.max(1, Math.min(Number(body.batchSize ?? 100), 1000));
          const counts = { users: 0, orders: 0, batches: 0 };
          for (const [table, emit] of [
            ['users', (row) => UserSnapshot.create(v1Payload(row), { key: row.id })],
            ['orders', (row) => OrderSnapshot.create({ orderId: row.id, userId: row.user_id, amount: Number(row.amount) }, { key: row.user_id })],
          ]) {
            let after = '00000000-0000-0000-0000-000000000000';
            for (;;) {
              const n = await inTransaction(pool, async (tx) => {
                const { rows } = await tx.query(`SELECT * FROM ${table} WHERE id > $1 ORDER BY id LIMIT $2 FOR SHARE`, [after, batchSize]);
                for (const row of rows) await enqueue(tx, emit(row));
                if (rows.length > 0) after = rows[rows.length - 1].id;
                return rows.length;
              });
              if (n === 0) break;
              counts[table] += n;
              counts.batches += 1;
            }
          }
          log(`snapshot: ${counts.users} user.snapshot + ${counts.orders} order.snapshot in ${counts.batches} batches`);
          return counts;
        },
      ],
      [
        'POST',
        new RegExp(`^/admin/resync/${UUID}$`),
        async ({ params }) => {
          // The repair for a row changed behind the write path's back: publish its state again
          // under a new version, so every consumer takes it over whatever it had.
          if (!flags.events) throw new HttpError(409, 'events are off');
          const row = await inTransaction(pool, async (tx) => {
            const { rows } = await tx.query('UPDATE users SET version = version + 1 WHERE id = $1 RETURNING *', [params.id]);
            if (rows.length === 0) throw new HttpError(404, 'no such user');
            await enqueue(tx, UserUpdated.create({ userId: rows[0].id, email: rows[0].email, country: rows[0].country, version: rows[0].version }, { key: rows[0].id }));
            return rows[0];
          });
          log(`resync: user ${row.id.slice(0, 8)} re-emitted at version ${row.version}`);
          return toUser(row);
        },
      ],
      ['GET', /^\/stats$/, async () => ({ flags, reads })],
    ],
    log,
  );

  return {
    stop: () => stopService({ http, pool }),
  };
});
