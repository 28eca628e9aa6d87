// The users service: owns the users database. Every change commits together with its event in
// the outbox; the relay that publishes them runs beside it as a sidecar process (`mailroom relay`),
// so this process never talks to RabbitMQ at all.
//
//   DATABASE_URL     its own database (e.g. postgres://…/mailroom_demo_users)
//   EXAMPLE_PREFIX   prefix of exchanges and queues (default mailroom-example)
//   PORT             HTTP port (default: a free one, printed as {"event":"listening",…})
//
//   POST  /users              {email, name}  -> 201 {id, email, name, version}
//   PATCH /users/:id          {email}        -> the user (publishes user.email_changed)
//   GET   /users/:id
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { enqueue } from '@mailroom/outbox';
import { HttpError, migrateService, openPool, requireEnv, runService, startHttp, stopService } from '@mailroom/example-kit';
import { userContracts } from './contracts.mjs';

const prefix = process.env.EXAMPLE_PREFIX ?? 'mailroom-example';
const { UserCreated, UserEmailChanged } = userContracts(prefix);

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
    throw error;
  } finally {
    client.release();
  }
}

const toUser = (row) => ({ id: row.id, email: row.email, name: row.name, version: row.version });

runService('users', async (log) => {
  const pool = openPool(requireEnv('DATABASE_URL'), log);
  const migrated = await migrateService(pool, fileURLToPath(new URL('../migrations/users', import.meta.url)));
  log(`migrated (service: ${migrated.service.length} new, mailroom: ${migrated.mailroom} new)`);

  const http = await startHttp(
    'users',
    [
      [
        'POST',
        /^\/users$/,
        async ({ body }) => {
          // Validate with the contract before writing anything: a bad request is a 400, not a
          // rolled-back transaction.
          const userId = randomUUID();
          const event = UserCreated.create({ userId, email: String(body.email ?? ''), name: String(body.name ?? ''), version: 1 }, { key: userId });
          const row = await inTransaction(pool, async (tx) => {
            const { rows } = await tx.query('INSERT INTO users (id, email, name) VALUES ($1, $2, $3) RETURNING *', [event.payload.userId, event.payload.email, event.payload.name]);
            await enqueue(tx, event);
            return rows[0];
          });
          log(`created user ${row.id} <${row.email}>, user.created ${event.messageId.slice(0, 8)} in the outbox`);
          return { status: 201, body: toUser(row) };
        },
      ],
      [
        'PATCH',
        /^\/users\/(?<id>[0-9a-f-]{36})$/,
        async ({ params, body }) => {
          const row = await inTransaction(pool, async (tx) => {
            const { rows: before } = await tx.query('SELECT * FROM users WHERE id = $1 FOR UPDATE', [params.id]);
            if (before.length === 0) throw new HttpError(404, 'no such user');
            const { rows } = await tx.query('UPDATE users SET email = $2, version = version + 1, updated_at = now() WHERE id = $1 RETURNING *', [params.id, body.email]);
            const user = rows[0];
            await enqueue(
              tx,
              UserEmailChanged.create(
                { userId: user.id, email: user.email, name: user.name, version: user.version, previousEmail: before[0].email },
                { key: user.id },
              ),
            );
            return user;
          });
          log(`user ${row.id} changed email to <${row.email}> (version ${row.version}), user.email_changed in the outbox`);
          return toUser(row);
        },
      ],
      [
        'GET',
        /^\/users\/(?<id>[0-9a-f-]{36})$/,
        async ({ params }) => {
          const { rows } = await pool.query('SELECT * FROM users WHERE id = $1', [params.id]);
          if (rows.length === 0) throw new HttpError(404, 'no such user');
          return toUser(rows[0]);
        },
      ],
    ],
    log,
  );

  return {
    stop: () => stopService({ http, pool }),
  };
});
