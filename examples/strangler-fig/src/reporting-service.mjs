// The reporting service: users by country and orders per user, in its own database. The story
// runs it twice: `strangler-reporting-live`, bound from the first event on, and
// `strangler-reporting`, which joins last and rebuilds the same projection from the archive
// (`mailroom history replay`) while live events keep arriving. The projection is keyed by entity
// id and guarded by the user's version, so both end up the same whatever order events came in.
//
//   DATABASE_URL     its own database
//   AMQP_URL         RabbitMQ
//   EXAMPLE_PREFIX   prefix of exchanges and queues (default mailroom-example)
//   REPORTING_NAME   strangler-reporting (default) or strangler-reporting-live: consumer and queue
//   PORT             HTTP port (default: a free one)
//
//   GET /stats       consumer counters
import { fileURLToPath } from 'node:url';
import { createDeadLetterSink } from '@mailroom/dlq';
import { createConsumer, handler } from '@mailroom/inbox';
import { consumerTopology, migrateService, openPool, requireEnv, runService, startHttp, stopService } from '@mailroom/example-kit';
import { SERVICES, stranglerContracts } from './contracts.mjs';

const prefix = process.env.EXAMPLE_PREFIX ?? 'mailroom-example';
const name = process.env.REPORTING_NAME ?? SERVICES.reporting;
const { UserCreated, UserUpdated, UserSnapshot, OrderPlaced, OrderSnapshot } = stranglerContracts(prefix);

const logged = (tx, message) => tx.query('INSERT INTO handled_log (message_id, type, version) VALUES ($1, $2, $3)', [message.messageId, message.type, message.version]);

async function applyUser(tx, { userId, country, version }, message) {
  await tx.query(
    `INSERT INTO report_users (user_id, country, version) VALUES ($1, $2, $3)
     ON CONFLICT (user_id) DO UPDATE SET country = EXCLUDED.country, version = EXCLUDED.version WHERE report_users.version < EXCLUDED.version`,
    [userId, country, version],
  );
  await logged(tx, message);
}

async function applyOrder(tx, { orderId, userId, amount }, message) {
  // An order placed while the snapshot ran arrives twice, as order.placed and order.snapshot
  // (two messages, two ids): the order id keeps it once.
  await tx.query('INSERT INTO report_orders (order_id, user_id, amount) VALUES ($1, $2, $3) ON CONFLICT (order_id) DO NOTHING', [orderId, userId, amount]);
  await logged(tx, message);
}

runService(name, async (log) => {
  if (name !== SERVICES.reporting && name !== SERVICES.reportingLive) throw new Error(`REPORTING_NAME is ${SERVICES.reporting} or ${SERVICES.reportingLive}`);
  const pool = openPool(requireEnv('DATABASE_URL'), log, 12);
  const amqp = requireEnv('AMQP_URL');
  const migrated = await migrateService(pool, fileURLToPath(new URL('../migrations/reporting', import.meta.url)));
  log(`migrated (service: ${migrated.service.length} new, mailroom: ${migrated.mailroom} new)`);

  const topology = consumerTopology(prefix, name);
  const consumer = createConsumer({
    name,
    db: pool,
    amqp,
    ...topology,
    deadLetters: { ...topology.deadLetters, sink: createDeadLetterSink({ db: pool, amqp, topology: topology.deadLetters }) },
    prefetch: 20,
    handlers: [
      handler(UserCreated, async ({ payload, tx, message }) => applyUser(tx, payload, message)),
      handler(UserSnapshot, async ({ payload, tx, message }) => applyUser(tx, payload, message)),
      handler(UserUpdated, async ({ payload, tx, message }) => applyUser(tx, payload, message)),
      handler(OrderPlaced, async ({ payload, tx, message }) => applyOrder(tx, payload, message)),
      handler(OrderSnapshot, async ({ payload, tx, message }) => applyOrder(tx, payload, message)),
    ],
  });
  consumer.on('deadLettered', (info) => log(`dead-lettered ${info.messageId.slice(0, 8)} (${info.reason}): ${info.error}`));
  await consumer.start();

  const http = await startHttp(name, [['GET', /^\/stats$/, async () => ({ consumer: consumer.stats })]], log, { queue: topology.queue, delayQueues: consumer.delayQueues });

  return {
    stop: () => stopService({ http, consumer, pool }),
  };
});
