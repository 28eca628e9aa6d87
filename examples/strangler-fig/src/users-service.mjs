// The users service, taken out of the monolith: its own database, filled by its inbox consumer
// from the monolith's events. It knows user.created version 1 (upcast) and version 2. It is
// backfilled by `mailroom history replay --queue <its queue>` while live events keep arriving;
// its inbox dedupes what comes both ways, and the version guard makes the order irrelevant.
//
//   DATABASE_URL     its own database (e.g. postgres://…/mailroom_demo_users_svc)
//   AMQP_URL         RabbitMQ
//   EXAMPLE_PREFIX   prefix of exchanges and queues (default mailroom-example)
//   PORT             HTTP port (default: a free one)
//
//   GET /users/:id   {id, email, givenName, familyName, country, version}
//   GET /stats       consumer counters and reads served
import { fileURLToPath } from 'node:url';
import { createDeadLetterSink } from '@mailroom/dlq';
import { createConsumer, handler } from '@mailroom/inbox';
import { HttpError, consumerTopology, migrateService, openPool, requireEnv, runService, startHttp, stopService } from '@mailroom/example-kit';
import { SERVICES, splitName, stranglerContracts } from './contracts.mjs';

const prefix = process.env.EXAMPLE_PREFIX ?? 'mailroom-example';
const { UserCreated, UserUpdated, UserSnapshot } = stranglerContracts(prefix);

/**
 * Applies a user's state in the handler's transaction. Email and country go by version (an older
 * event arriving late changes nothing); the names, which only user.created and user.snapshot carry
 * and which never change here, are filled in whenever they are still missing.
 */
async function applyUser(tx, user, message) {
  await tx.query(
    `INSERT INTO users (id, email, given_name, family_name, country, version) VALUES ($1, $2, $3, $4, $5, $6)
     ON CONFLICT (id) DO UPDATE SET
       given_name = COALESCE(users.given_name, EXCLUDED.given_name),
       family_name = COALESCE(users.family_name, EXCLUDED.family_name),
       email = CASE WHEN users.version < EXCLUDED.version THEN EXCLUDED.email ELSE users.email END,
       country = CASE WHEN users.version < EXCLUDED.version THEN EXCLUDED.country ELSE users.country END,
       version = GREATEST(users.version, EXCLUDED.version),
       updated_at = now()`,
    [user.userId, user.email, user.givenName ?? null, user.familyName ?? null, user.country, user.version],
  );
  await tx.query('INSERT INTO handled_log (message_id, type, version) VALUES ($1, $2, $3)', [message.messageId, message.type, message.version]);
}

runService('users-svc', async (log) => {
  const pool = openPool(requireEnv('DATABASE_URL'), log, 12);
  const amqp = requireEnv('AMQP_URL');
  const migrated = await migrateService(pool, fileURLToPath(new URL('../migrations/users', import.meta.url)));
  log(`migrated (service: ${migrated.service.length} new, mailroom: ${migrated.mailroom} new)`);
  let reads = 0;

  const topology = consumerTopology(prefix, SERVICES.users);
  const consumer = createConsumer({
    name: 'users-svc',
    db: pool,
    amqp,
    ...topology,
    deadLetters: { ...topology.deadLetters, sink: createDeadLetterSink({ db: pool, amqp, topology: topology.deadLetters }) },
    prefetch: 20,
    handlers: [
      // Version 1 arrives upcast (name split at its first space), version 2 as it was sent.
      handler(UserCreated, async ({ payload, tx, message }) => applyUser(tx, payload, message)),
      handler(UserSnapshot, async ({ payload, tx, message }) => applyUser(tx, splitName(payload), message)),
      handler(UserUpdated, async ({ payload, tx, message }) => applyUser(tx, payload, message)),
    ],
  });
  consumer.on('deadLettered', (info) => log(`dead-lettered ${info.messageId.slice(0, 8)} (${info.reason}): ${info.error}`));
  await consumer.start();

  const http = await startHttp(
    'users-svc',
    [
      [
        'GET',
        /^\/users\/(?<id>[0-9a-f-]{36})$/,
        async ({ params }) => {
          const { rows } = await pool.query('SELECT * FROM users WHERE id = $1 AND given_name IS NOT NULL', [params.id]);
          if (rows.length === 0) throw new HttpError(404, 'no such user');
          reads += 1;
          const u = rows[0];
          return { id: u.id, email: u.email, givenName: u.given_name, familyName: u.family_name, country: u.country, version: u.version };
        },
      ],
      ['GET', /^\/stats$/, async () => ({ consumer: consumer.stats, reads })],
    ],
    log,
    { queue: topology.queue, delayQueues: consumer.delayQueues },
  );

  return {
    stop: () => stopService({ http, consumer, pool }),
  };
});
