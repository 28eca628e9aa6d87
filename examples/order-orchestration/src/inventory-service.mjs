// Inventory, a participant: it does what the orchestrator commands (reserve, release, commit)
// and answers; it knows nothing of orders or payments.
//
//   DATABASE_URL, AMQP_URL, EXAMPLE_PREFIX, PORT (see README)
//   PUT /stock/:sku {available}   GET /stock/:sku   GET /reservations/:orderId   GET /stats
import { fileURLToPath } from 'node:url';
import { createRelay, enqueue } from '@mailroom/outbox';
import { createDeadLetterSink } from '@mailroom/dlq';
import { createConsumer, handler } from '@mailroom/inbox';
import { HttpError, consumerTopology, migrateService, openPool, requireEnv, runService, startHttp, stopService } from '@mailroom/example-kit';
import { orchestrationContracts } from './contracts.mjs';

const prefix = process.env.EXAMPLE_PREFIX ?? 'mailroom-example';
const { ReserveInventory, ReleaseInventory, CommitInventory, InventoryReserved, InventoryRejected } = orchestrationContracts(prefix);

runService('inventory', async (log) => {
  const pool = openPool(requireEnv('DATABASE_URL'), log, 12);
  const amqp = requireEnv('AMQP_URL');
  await migrateService(pool, fileURLToPath(new URL('../migrations/inventory', import.meta.url)));
  const record = (tx, message, orderId) => tx.query('INSERT INTO handled_log (message_id, type, order_id) VALUES ($1, $2, $3)', [message.messageId, message.type, orderId]);
  const short = (id) => id.slice(0, 8);

  const topology = consumerTopology(prefix, 'inventory');
  const deadLetterSink = createDeadLetterSink({ db: pool, amqp, topology: topology.deadLetters });
  const consumer = createConsumer({
    name: 'inventory',
    db: pool,
    amqp,
    ...topology,
    deadLetters: { ...topology.deadLetters, sink: deadLetterSink },
    handlers: [
      handler(ReserveInventory, async ({ payload, tx, message }) => {
        await record(tx, message, payload.orderId);
        // A row for this order already (a release that came first, a command sent again by a
        // saga step that ran again after a crash): answer nothing new, take no stock.
        const { rows: known } = await tx.query('SELECT status FROM reservations WHERE order_id = $1 FOR UPDATE', [payload.orderId]);
        if (known.length > 0) {
          log(`order ${short(payload.orderId)}: reserve ignored, reservation is ${known[0].status}`);
          return;
        }
        // One statement decides: concurrent orders for the last items cannot both get them.
        const { rowCount } = await tx.query('UPDATE stock SET available = available - $2 WHERE sku = $1 AND available >= $2', [payload.sku, payload.qty]);
        const reserved = rowCount > 0;
        await tx.query('INSERT INTO reservations (order_id, sku, qty, status) VALUES ($1, $2, $3, $4)', [payload.orderId, payload.sku, reserved ? payload.qty : 0, reserved ? 'reserved' : 'rejected']);
        if (reserved) await enqueue(tx, InventoryReserved.create({ orderId: payload.orderId }, { key: payload.orderId }));
        else await enqueue(tx, InventoryRejected.create({ orderId: payload.orderId, reason: 'out-of-stock' }, { key: payload.orderId }));
        log(`order ${short(payload.orderId)}: ${reserved ? `reserved ${payload.qty} × ${payload.sku}` : `${payload.qty} × ${payload.sku} not available`}`);
      }),
      // The compensation: stock back. Before the reservation arrived: a tombstone that refuses it.
      handler(ReleaseInventory, async ({ payload, tx, message }) => {
        await record(tx, message, payload.orderId);
        const { rows } = await tx.query(
          "UPDATE reservations SET status = 'released', updated_at = now() WHERE order_id = $1 AND status = 'reserved' RETURNING sku, qty",
          [payload.orderId],
        );
        if (rows.length > 0) {
          await tx.query('UPDATE stock SET available = available + $2 WHERE sku = $1', [rows[0].sku, rows[0].qty]);
          log(`order ${short(payload.orderId)}: released ${rows[0].qty} × ${rows[0].sku}`);
          return;
        }
        const { rowCount } = await tx.query("INSERT INTO reservations (order_id, sku, qty, status) VALUES ($1, '', 0, 'released') ON CONFLICT (order_id) DO NOTHING", [payload.orderId]);
        if (rowCount > 0) log(`order ${short(payload.orderId)}: released before its reservation arrived (a tombstone refuses it)`);
      }),
      handler(CommitInventory, async ({ payload, tx, message }) => {
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
    { queue: topology.queue, delayQueues: consumer.delayQueues },
  );
  return {
    stop: () => stopService({ http, consumer, relay, pool }),
  };
});
