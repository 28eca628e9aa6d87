// The orders service: owns the orders database. It never reads the users database; what it needs
// of a user (email, name) is copied into user_projection by its inbox consumer, from the events
// the users service publishes. Orders keep the email and name they were placed with (see README).
//
//   DATABASE_URL     its own database (e.g. postgres://…/mailroom_demo_orders)
//   AMQP_URL         RabbitMQ
//   EXAMPLE_PREFIX   prefix of exchanges and queues (default mailroom-example)
//   ORDERS_RELEASE   1.1 (default) accepts the legacy user.created shape; 1.0 is the release
//                    before that fix, which dead-letters it (the demo replays the incident)
//   PORT             HTTP port (default: a free one)
//
//   POST /orders           {userId, item, amount} -> 201 the order (409 while the user is unknown here)
//   GET  /orders?userId=   orders with the email they were placed with and the current one
//   GET  /users/:id        the local projection of a user
//   GET  /stats            consumer and relay counters
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { isUuid } from '@mailroom/core';
import { createRelay } from '@mailroom/outbox';
import { createDeadLetterSink } from '@mailroom/dlq';
import { createConsumer, handler } from '@mailroom/inbox';
import { HttpError, consumerTopology, migrateService, openPool, requireEnv, runService, startHttp, stopService } from '@mailroom/example-kit';
import { tolerantUserCreated, userContracts } from './contracts.mjs';

const prefix = process.env.EXAMPLE_PREFIX ?? 'mailroom-example';
const release = process.env.ORDERS_RELEASE ?? '1.1';
const contracts = userContracts(prefix);
const UserCreated = release === '1.0' ? contracts.UserCreated : tolerantUserCreated(prefix);
const { UserEmailChanged } = contracts;

/**
 * Applies a user snapshot to the projection in the handler's transaction. The version guard makes
 * it order-proof: an older snapshot arriving late (a retry, a replay) changes nothing.
 */
async function applyUser(tx, payload, message) {
  const { rowCount } = await tx.query(
    `INSERT INTO user_projection (user_id, email, name, version) VALUES ($1, $2, $3, $4)
     ON CONFLICT (user_id) DO UPDATE SET email = EXCLUDED.email, name = EXCLUDED.name, version = EXCLUDED.version, updated_at = now()
     WHERE user_projection.version < EXCLUDED.version`,
    [payload.userId, payload.email, payload.name, payload.version],
  );
  await tx.query('INSERT INTO projection_log (message_id, user_id, type, applied) VALUES ($1, $2, $3, $4)', [message.messageId, payload.userId, message.type, rowCount > 0]);
  return rowCount > 0;
}

runService('orders', async (log) => {
  const pool = openPool(requireEnv('DATABASE_URL'), log, 12);
  const amqp = requireEnv('AMQP_URL');
  const migrated = await migrateService(pool, fileURLToPath(new URL('../migrations/orders', import.meta.url)));
  log(`release ${release}; migrated (service: ${migrated.service.length} new, mailroom: ${migrated.mailroom} new)`);

  const topology = consumerTopology(prefix, 'orders');
  // The service's one dead-letter sink: it drains the service's dead-letter queue into its own
  // database, where `mailroom dlq` lists and replays them. The consumer starts and stops it.
  const deadLetterSink = createDeadLetterSink({ db: pool, amqp, topology: topology.deadLetters });
  const consumer = createConsumer({
    name: 'orders',
    db: pool,
    amqp,
    ...topology,
    deadLetters: { ...topology.deadLetters, sink: deadLetterSink },
    prefetch: 10,
    handlers: [
      handler(UserCreated, async ({ payload, tx, message }) => {
        const applied = await applyUser(tx, payload, message);
        log(`user.created ${message.messageId.slice(0, 8)}: projection ${applied ? 'now has' : 'already newer for'} ${payload.userId} <${payload.email}>`);
      }),
      handler(UserEmailChanged, async ({ payload, tx, message }) => {
        const applied = await applyUser(tx, payload, message);
        log(`user.email_changed ${message.messageId.slice(0, 8)}: ${payload.userId} <${payload.email}> v${payload.version} ${applied ? 'applied' : 'older than the projection, ignored'}`);
      }),
    ],
  });
  consumer.on('deadLettered', (info) => log(`dead-lettered ${info.messageId.slice(0, 8)} (${info.reason}): ${info.error}`));
  consumer.on('duplicate', (m) => log(`duplicate ${m.type} ${m.messageId.slice(0, 8)} ignored`));
  await consumer.start();

  // Orders publishes nothing of its own here, but a dead letter is replayed through the outbox of
  // the database that stores it: this relay sends replays back out.
  const relay = createRelay({ database: pool, amqp, schema: 'mailroom', name: 'orders-relay' });
  relay.on('batch', (b) => log(`relay published ${b.published} replayed event(s)`));
  await relay.start();

  const http = await startHttp(
    'orders',
    [
      [
        'POST',
        /^\/orders$/,
        async ({ body }) => {
          const amount = Number(body.amount);
          if (typeof body.item !== 'string' || !(amount > 0) || !isUuid(body.userId)) throw new HttpError(400, 'give userId (a UUID), item (text) and amount (> 0)');
          const { rows: users } = await pool.query('SELECT email, name FROM user_projection WHERE user_id = $1', [body.userId]);
          // Eventual consistency, stated: a user created a moment ago may not have reached us yet.
          if (users.length === 0) throw new HttpError(409, 'unknown user (not replicated here yet? retry shortly)');
          const { rows } = await pool.query(
            'INSERT INTO orders (id, user_id, customer_email, customer_name, item, amount) VALUES ($1, $2, $3, $4, $5, $6) RETURNING *',
            [randomUUID(), body.userId, users[0].email, users[0].name, body.item, amount],
          );
          log(`order ${rows[0].id.slice(0, 8)} for <${rows[0].customer_email}>: ${body.item}`);
          return { status: 201, body: rows[0] };
        },
      ],
      [
        'GET',
        /^\/orders$/,
        async ({ query }) => {
          const { rows } = await pool.query(
            `SELECT o.id, o.item, o.amount, o.placed_at, o.customer_email AS "emailAtOrder", o.customer_name AS "nameAtOrder", p.email AS "currentEmail"
             FROM orders o LEFT JOIN user_projection p ON p.user_id = o.user_id WHERE o.user_id = $1 ORDER BY o.placed_at`,
            [query.get('userId')],
          );
          return rows;
        },
      ],
      [
        'GET',
        /^\/users\/(?<id>[0-9a-f-]{36})$/,
        async ({ params }) => {
          const { rows } = await pool.query('SELECT user_id AS "userId", email, name, version FROM user_projection WHERE user_id = $1', [params.id]);
          if (rows.length === 0) throw new HttpError(404, 'not in the projection (yet)');
          return rows[0];
        },
      ],
      ['GET', /^\/stats$/, async () => ({ release, consumer: consumer.stats, relay: relay.stats })],
    ],
    log,
    // The delay queues the consumer declared for its queue (from its handle), for the demo's clean-up.
    { queue: topology.queue, delayQueues: consumer.delayQueues },
  );

  return {
    stop: () => stopService({ http, consumer, relay, pool }),
  };
});
