// Saga step 2: payments charges the card once stock is reserved, and reports payment.charged or
// payment.declined (which triggers the compensations in inventory and orders).
//
//   DATABASE_URL, AMQP_URL, EXAMPLE_PREFIX, PORT (see README)
//   GET /payments/:orderId   GET /stats
import { fileURLToPath } from 'node:url';
import { createRelay, enqueue } from '@mailroom/outbox';
import { createDeadLetterSink } from '@mailroom/dlq';
import { createConsumer, handler } from '@mailroom/inbox';
import { HttpError, consumerTopology, migrateService, openPool, requireEnv, runService, startHttp, stopService } from '@mailroom/example-kit';
import { DECLINED_CARD, sagaContracts } from './contracts.mjs';

const prefix = process.env.EXAMPLE_PREFIX ?? 'mailroom-example';
const { StockReserved, PaymentCharged, PaymentDeclined } = sagaContracts(prefix);

runService('payments', async (log) => {
  const pool = openPool(requireEnv('DATABASE_URL'), log, 12);
  const amqp = requireEnv('AMQP_URL');
  await migrateService(pool, fileURLToPath(new URL('../migrations/payments', import.meta.url)));

  const topology = consumerTopology(prefix, 'payments');
  // The service's one dead-letter sink: it drains the service's dead-letter queue into its own
  // database, where `mailroom dlq` lists and replays them. The consumer starts and stops it.
  const deadLetterSink = createDeadLetterSink({ db: pool, amqp, topology: topology.deadLetters });
  const consumer = createConsumer({
    name: 'payments',
    db: pool,
    amqp,
    ...topology,
    deadLetters: { ...topology.deadLetters, sink: deadLetterSink },
    handlers: [
      handler(StockReserved, async ({ payload, tx, message }) => {
        await tx.query('INSERT INTO handled_log (message_id, type, order_id) VALUES ($1, $2, $3)', [message.messageId, message.type, payload.orderId]);
        // The card processor is simulated in the transaction. A real one is an HTTP call
        // outside it: give it the order id as its idempotency key, because a delivery that
        // does not commit is attempted again.
        const declined = payload.card.replace(/\D/g, '') === DECLINED_CARD;
        await tx.query('INSERT INTO payments (order_id, amount, status, reason) VALUES ($1, $2, $3, $4)', [
          payload.orderId,
          payload.amount,
          declined ? 'declined' : 'charged',
          declined ? 'card declined' : null,
        ]);
        if (declined) {
          await enqueue(tx, PaymentDeclined.create({ orderId: payload.orderId, amount: payload.amount, reason: 'card declined' }, { key: payload.orderId }));
          log(`order ${payload.orderId.slice(0, 8)}: card declined → payment.declined`);
        } else {
          await enqueue(tx, PaymentCharged.create({ orderId: payload.orderId, amount: payload.amount }, { key: payload.orderId }));
          log(`order ${payload.orderId.slice(0, 8)}: charged ${payload.amount} → payment.charged`);
        }
      }),
    ],
  });
  consumer.on('deadLettered', (info) => log(`dead-lettered ${info.messageId.slice(0, 8)} (${info.reason}): ${info.error}`));
  await consumer.start();
  const relay = createRelay({ database: pool, amqp, schema: 'mailroom', name: 'payments-relay' });
  await relay.start();

  const http = await startHttp(
    'payments',
    [
      [
        'GET',
        /^\/payments\/(?<id>[0-9a-f-]{36})$/,
        async ({ params }) => {
          const { rows } = await pool.query('SELECT * FROM payments WHERE order_id = $1', [params.id]);
          if (rows.length === 0) throw new HttpError(404, 'no payment');
          return rows[0];
        },
      ],
      ['GET', /^\/stats$/, async () => ({ consumer: consumer.stats, relay: relay.stats })],
    ],
    log,
    // The delay queues the consumer declared for its queue (from its handle), for the demo's clean-up.
    { queue: topology.queue, delayQueues: consumer.delayQueues },
  );
  return {
    stop: () => stopService({ http, consumer, relay, pool }),
  };
});
