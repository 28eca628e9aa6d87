// Saga step 0 and its ends: the orders service places orders (order.placed, in the same
// transaction as the row) and settles them from what inventory and payments report.
//
//   DATABASE_URL, AMQP_URL, EXAMPLE_PREFIX, PORT (see README)
//   POST /orders {sku, qty, amount, card} -> 201 {id, status: 'placed', …}
//   GET  /orders/:id                      GET /stats
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { createRelay, enqueue } from '@mailroom/outbox';
import { createDeadLetterSink } from '@mailroom/dlq';
import { createConsumer, handler } from '@mailroom/inbox';
import { HttpError, consumerTopology, migrateService, openPool, requireEnv, runService, startHttp, stopService } from '@mailroom/example-kit';
import { sagaContracts } from './contracts.mjs';

const prefix = process.env.EXAMPLE_PREFIX ?? 'mailroom-example';
const { OrderPlaced, StockRejected, PaymentCharged, PaymentDeclined, OrderConfirmed } = sagaContracts(prefix);

runService('orders', async (log) => {
  const pool = openPool(requireEnv('DATABASE_URL'), log, 12);
  const amqp = requireEnv('AMQP_URL');
  await migrateService(pool, fileURLToPath(new URL('../migrations/orders', import.meta.url)));

  /** Moves a placed order to its final state; an order already settled stays as it is. */
  async function settle(tx, message, orderId, status, reason) {
    const { rowCount } = await tx.query("UPDATE orders SET status = $2, cancel_reason = $3, updated_at = now() WHERE id = $1 AND status = 'placed'", [orderId, status, reason]);
    await tx.query('INSERT INTO handled_log (message_id, type, order_id) VALUES ($1, $2, $3)', [message.messageId, message.type, orderId]);
    return rowCount > 0;
  }

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
    handlers: [
      handler(StockRejected, async ({ payload, tx, message }) => {
        if (await settle(tx, message, payload.orderId, 'cancelled', 'out-of-stock')) log(`order ${payload.orderId.slice(0, 8)} cancelled: out of stock`);
      }),
      handler(PaymentCharged, async ({ payload, tx, message }) => {
        if (await settle(tx, message, payload.orderId, 'confirmed', null)) {
          await enqueue(tx, OrderConfirmed.create({ orderId: payload.orderId }, { key: payload.orderId }));
          log(`order ${payload.orderId.slice(0, 8)} confirmed`);
        }
      }),
      handler(PaymentDeclined, async ({ payload, tx, message }) => {
        if (await settle(tx, message, payload.orderId, 'cancelled', 'payment-declined')) log(`order ${payload.orderId.slice(0, 8)} cancelled: payment declined`);
      }),
    ],
  });
  consumer.on('deadLettered', (info) => log(`dead-lettered ${info.messageId.slice(0, 8)} (${info.reason}): ${info.error}`));
  await consumer.start();
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
          const event = OrderPlaced.create({ orderId, sku: body.sku, qty: body.qty, amount: body.amount, card: body.card }, { key: orderId });
          const client = await pool.connect();
          try {
            await client.query('BEGIN');
            const { rows } = await client.query('INSERT INTO orders (id, sku, qty, amount, placed_message_id) VALUES ($1, $2, $3, $4, $5) RETURNING *', [
              orderId,
              body.sku,
              body.qty,
              body.amount,
              event.messageId,
            ]);
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
    // The delay queues the consumer declared for its queue (from its handle), for the demo's clean-up.
    { queue: topology.queue, delayQueues: consumer.delayQueues },
  );
  return {
    stop: () => stopService({ http, consumer, relay, pool }),
  };
});
