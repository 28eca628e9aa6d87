// The orders service and the orchestrator: POST /orders creates an order and commits its
// order.placed with it (createOrder); the order saga (src/order-saga.mjs) then drives inventory
// and payments with commands and settles the order (confirmOrder, or cancel with compensations).
// The saga's steps are ordinary inbox handlers of this service's consumer.
//
//   DATABASE_URL, AMQP_URL, EXAMPLE_PREFIX, PORT (see README)
//   RESERVE_TIMEOUT_MS (default 10000), PAYMENT_TIMEOUT_MS (default 3000): how long the saga waits
//   POST /orders {sku, qty, amount, card} -> 201 {id, status: 'pending', …}
//   GET  /orders/:id   GET /stats
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { createRelay, enqueue } from '@mailroom/outbox';
import { createDeadLetterSink } from '@mailroom/dlq';
import { createConsumer } from '@mailroom/inbox';
import { sagaHandlers } from '@mailroom/saga';
import { HttpError, consumerTopology, migrateService, openPool, requireEnv, runService, startHttp, stopService } from '@mailroom/example-kit';
import { orchestrationContracts } from './contracts.mjs';
import { defineOrderSaga } from './order-saga.mjs';

const prefix = process.env.EXAMPLE_PREFIX ?? 'mailroom-example';
const contracts = orchestrationContracts(prefix);
const ms = (name, fallback) => {
  const value = Number(process.env[name] ?? fallback);
  if (!Number.isInteger(value) || value <= 0) throw new Error(`${name} must be a positive number of milliseconds`);
  return value;
};

runService('orders', async (log) => {
  const pool = openPool(requireEnv('DATABASE_URL'), log, 12);
  const amqp = requireEnv('AMQP_URL');
  // The service's tables, then mailroom's (outbox, inbox, dead letters, saga instances).
  await migrateService(pool, fileURLToPath(new URL('../migrations/orders', import.meta.url)));
  const orderSaga = defineOrderSaga({ contracts, reserveTimeoutMs: ms('RESERVE_TIMEOUT_MS', 10_000), paymentTimeoutMs: ms('PAYMENT_TIMEOUT_MS', 3000), log });

  const topology = consumerTopology(prefix, 'orders');
  const deadLetterSink = createDeadLetterSink({ db: pool, amqp, topology: topology.deadLetters });
  const consumer = createConsumer({
    name: 'orders',
    db: pool,
    amqp,
    ...topology,
    deadLetters: { ...topology.deadLetters, sink: deadLetterSink },
    handlers: [...sagaHandlers(orderSaga, { schema: 'mailroom' })],
  });
  consumer.on('deadLettered', (info) => log(`dead-lettered ${info.messageId.slice(0, 8)} (${info.reason}): ${info.error}`));
  consumer.on('duplicate', (m) => log(`duplicate ${m.type} ${m.messageId.slice(0, 8)} ignored by the inbox`));
  await consumer.start();
  // The relay publishes the commands and, when they fall due, the saga's timeouts.
  const relay = createRelay({ database: pool, amqp, schema: 'mailroom', name: 'orders-relay' });
  await relay.start();

  const http = await startHttp(
    'orders',
    [
      [
        'POST',
        /^\/orders$/,
        async ({ body }) => {
          const orderId = randomUUID();
          // The contract validates the request before anything is written (a bad one is a 400).
          const event = contracts.OrderPlaced.create({ orderId, sku: body.sku, qty: body.qty, amount: body.amount, card: body.card }, { key: orderId });
          const client = await pool.connect();
          try {
            await client.query('BEGIN');
            const { rows } = await client.query('INSERT INTO orders (id, sku, qty, amount) VALUES ($1, $2, $3, $4) RETURNING *', [orderId, body.sku, body.qty, body.amount]);
            await enqueue(client, event);
            await client.query('COMMIT');
            log(`order ${orderId.slice(0, 8)} placed: ${body.qty} × ${body.sku}`);
            return { status: 201, body: rows[0] };
          } catch (error) {
            await client.query('ROLLBACK').catch(() => undefined);
            throw error;
          } finally {
            client.release();
          }
        },
      ],
      [
        'GET',
        /^\/orders\/(?<id>[0-9a-f-]{36})$/,
        async ({ params }) => {
          const { rows } = await pool.query('SELECT * FROM orders WHERE id = $1', [params.id]);
          if (rows.length === 0) throw new HttpError(404, 'no such order');
          return rows[0];
        },
      ],
      ['GET', /^\/stats$/, async () => ({ consumer: consumer.stats, relay: relay.stats })],
    ],
    log,
    { queue: topology.queue, delayQueues: consumer.delayQueues },
  );
  return {
    stop: () => stopService({ http, consumer, relay, pool }),
  };
});
