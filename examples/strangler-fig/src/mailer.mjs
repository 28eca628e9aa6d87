// The legacy mailer: an old consumer of the monolith's user.created that sends a welcome mail.
// Release 1 knows only version 1 of user.created: a version 2 message becomes a dead letter
// `unknown-version` (nothing is committed, no retries), kept in its own database by its sink.
// Release 2 knows version 2; the dead letters are then replayed (`mailroom dlq replay`) through
// its own outbox and relay, with their message ids and version header, and applied.
//
//   DATABASE_URL     its own database (e.g. postgres://…/mailroom_demo_mailer)
//   AMQP_URL         RabbitMQ
//   EXAMPLE_PREFIX   prefix of exchanges and queues (default mailroom-example)
//   MAILER_RELEASE   1 (knows user.created v1) or 2 (knows v1 and v2; the default)
//   PORT             HTTP port (default: a free one)
//
//   GET /stats       release, consumer and relay counters
import { fileURLToPath } from 'node:url';
import { createRelay } from '@mailroom/outbox';
import { createDeadLetterSink } from '@mailroom/dlq';
import { createConsumer, handler } from '@mailroom/inbox';
import { consumerTopology, migrateService, openPool, requireEnv, runService, startHttp, stopService } from '@mailroom/example-kit';
import { SERVICES, stranglerContracts } from './contracts.mjs';

const prefix = process.env.EXAMPLE_PREFIX ?? 'mailroom-example';
const release = process.env.MAILER_RELEASE ?? '2';
const contracts = stranglerContracts(prefix);

async function welcome(tx, { userId, email, greeting }, message) {
  await tx.query(
    'INSERT INTO welcome_mails (user_id, message_id, recipient, greeting, contract_version, release) VALUES ($1, $2, $3, $4, $5, $6)',
    [userId, message.messageId, email, greeting, message.version, release],
  );
  await tx.query('INSERT INTO handled_log (message_id, type, version) VALUES ($1, $2, $3)', [message.messageId, message.type, message.version]);
}

runService('mailer', async (log) => {
  const pool = openPool(requireEnv('DATABASE_URL'), log);
  const amqp = requireEnv('AMQP_URL');
  const migrated = await migrateService(pool, fileURLToPath(new URL('../migrations/mailer', import.meta.url)));
  log(`release ${release}; migrated (service: ${migrated.service.length} new, mailroom: ${migrated.mailroom} new)`);

  const welcomeHandler =
    release === '1'
      ? handler(contracts.UserCreatedV1, async ({ payload, tx, message }) => welcome(tx, { userId: payload.userId, email: payload.email, greeting: `Dear ${payload.name}` }, message))
      : handler(contracts.UserCreated, async ({ payload, tx, message }) =>
          welcome(tx, { userId: payload.userId, email: payload.email, greeting: `Dear ${payload.givenName}` }, message),
        );
  const topology = consumerTopology(prefix, SERVICES.mailer);
  const consumer = createConsumer({
    name: 'mailer',
    db: pool,
    amqp,
    ...topology,
    deadLetters: { ...topology.deadLetters, sink: createDeadLetterSink({ db: pool, amqp, topology: topology.deadLetters }) },
    handlers: [welcomeHandler],
  });
  consumer.on('deadLettered', (info) => log(`dead-lettered ${info.messageId.slice(0, 8)} (${info.reason}): ${info.error}`));
  await consumer.start();

  // The mailer publishes nothing of its own, but a dead letter is replayed through the outbox of
  // the database that stores it: this relay sends replays back out.
  const relay = createRelay({ database: pool, amqp, schema: 'mailroom', name: 'mailer-relay' });
  await relay.start();

  const http = await startHttp('mailer', [['GET', /^\/stats$/, async () => ({ release, consumer: consumer.stats, relay: relay.stats })]], log, {
    queue: topology.queue,
    delayQueues: consumer.delayQueues,
  });

  return {
    stop: () => stopService({ http, consumer, relay, pool }),
  };
});
