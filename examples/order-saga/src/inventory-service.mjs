// Saga step 1 and a compensation: inventory reserves stock for a placed order (stock.reserved or
// stock.rejected), releases it when the payment is declined, and makes it final on confirmation.
//
//   DATABASE_URL, AMQP_URL, EXAMPLE_PREFIX, PORT (see README)
//   PUT /stock/:sku {available}   GET /stock/:sku   GET /reservations/:orderId   GET /stats
import { fileURLToPath } from 'node:url';
import { createRelay, enqueue } from '@mailroom/outbox';
import { createDeadLetterSink } from '@mailroom/dlq';
import { createConsumer, handler } from '@mailroom/inbox';
import { HttpError, consumerTopology, migrateService, openPool, requireEnv, runService, startHttp, stopService } from '@mailroom/example-kit';
import { sagaContracts } from './contracts.mjs';

const prefix = process.env.EXAMPLE_PREFIX ?? 'mailroom-example';
const { OrderPlaced, StockReserved, StockRejected, PaymentDeclined, OrderConfirmed } = sagaContracts(prefix);

runService('inventory', async (log) => {
  const pool = openPool(requireEnv('DATABASE_URL'), log, 12);
  const amqp = requireEnv('AMQP_URL');
  await migrateService(pool, fileURLToPath(new URL('../migrations/inventory', import.meta.url)));
  const record = (tx, message, orderId) => tx.query('INSERT INTO handled_log (message_id, type, order_id) VALUES ($1, $2, $3)', [message.messageId, message.type, orderId]);

  const topology = consumerTopology(prefix, 'inventory');
  // The service's one dead-letter sink: it drains the service's dead-letter queue into its own
  // database, where `mailroom dlq` lists and replays them. The consumer starts and stops it.
  const deadLetterSink = createDeadLetterSink({ db: pool, amqp, topology: topology.deadLetters });
  const consumer = createConsumer({
    name: 'inventory',
    db: pool,
    amqp,
    ...topology,
    deadLetters: { ...topology.deadLetters, sink: deadLetterSink },
    handlers: [
      handler(OrderPlaced, async ({ payload, tx, message }) => {
        await record(tx, message, payload.orderId);
        // One statement decides: concurrent orders for the last items cannot both get them.
        const { rowCount } = await tx.query('UPDATE stock SET available = available - $2 WHERE sku = $1 AND available >= $2', [payload.sku, payload.qty]);
        if (rowCount === 0) {
          await enqueue(tx, StockRejected.create({ ...payload, reason: 'out-of-stock' }, { key: payload.orderId }));
          log(`order ${payload.orderId.slice(0, 8)}: ${payload.qty} × ${payload.sku} not available → stock.rejected`);
          return;
        }
        await tx.query("INSERT INTO reservations (order_id, sku, qty, status) VALUES ($1, $2, $3, 'reserved')", [payload.orderId, payload.sku, payload.qty]);
        await enqueue(tx, StockReserved.create(payload, { key: payload.orderId }));
        log(`order ${payload.orderId.slice(0, 8)}: reserved ${payload.qty} × ${payload.sku} → stock.reserved`);
      }),
      // The compensation: give the stock back.
      handler(PaymentDeclined, async ({ payload, tx, message }) => {
        await record(tx, message, payload.orderId);
        const { rows } = await tx.query("UPDATE reservations SET status = 'released', updated_at = now() WHERE order_id = $1 AND status = 'reserved' RETURNING sku, qty", [payload.orderId]);
        if (rows.length === 0) return;
        await tx.query('UPDATE stock SET available = available + $2 WHERE sku = $1', [rows[0].sku, rows[0].qty]);
        log(`order ${payload.orderId.slice(0, 8)}: payment declined → released ${rows[0].qty} × ${rows[0].sku}`);
      }),
      handler(OrderConfirmed, async ({ payload, tx, message }) => {
        await record(tx, message, payload.orderId);
        await tx.query("UPDATE reservations SET status = 'committed', updated_at = now() WHERE order_id = $1 AND status = 'reserved'", [payload.orderId]);
      }),
    ],
  });
  consumer.on('deadLettered', (info) => log(`dead-lettered ${info.messageId.slice(0, 8)} (${info.reason}): ${info.error}`));
  consumer.on('duplicate', (m) => log(`duplicate ${m.type} ${m.messageId.slice(0, 8)} ignored by the inbox`));
  await consumer.start();
  const relay = createRelay({ database: pool, amqp, schema: 'mailroom', name: 'inventory-relay' });
  await relay.start();

  const http = await startHttp(
    'inventory',
    [
      [
        'PUT',
        /^\/stock\/(?<sku>[\w.-]+)$/,
        async ({ params, body }) => {
          const { rows } = await pool.query('INSERT INTO stock (sku, available) VALUES ($1, $2) ON CONFLICT (sku) DO UPDATE SET available = EXCLUDED.available RETURNING *', [params.sku, body.available]);
          return rows[0];
        },
      ],
      [
        'GET',
        /^\/stock\/(?<sku>[\w.-]+)$/,
        async ({ params }) => {
          const { rows } = await pool.query('SELECT * FROM stock WHERE sku = $1', [params.sku]);
          if (rows.length === 0) throw new HttpError(404, 'no such sku');
          return rows[0];
        },
      ],
      [
        'GET',
        /^\/reservations\/(?<id>[0-9a-f-]{36})$/,
        async ({ params }) => {
          const { rows } = await pool.query('SELECT * FROM reservations WHERE order_id = $1', [params.id]);
          if (rows.length === 0) throw new HttpError(404, 'no reservation');
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
