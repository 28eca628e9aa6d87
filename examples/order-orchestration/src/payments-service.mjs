// Payments, a participant: charges a card when the orchestrator commands it, answers charged or
// declined, and voids on command. The card processor is simulated: most cards answer at once, in
// the handler's transaction; SLOW_CARD's processor answers after PROCESSOR_DELAY_MS, which this
// service models with a message scheduled to itself (scheduled delivery, the same outbox).
//
//   DATABASE_URL, AMQP_URL, EXAMPLE_PREFIX, PORT (see README)
//   PROCESSOR_DELAY_MS (default 5000): how late the slow card's processor answers
//   GET /payments/:orderId   GET /stats
import { fileURLToPath } from 'node:url';
import { createRelay, enqueue } from '@mailroom/outbox';
import { createDeadLetterSink } from '@mailroom/dlq';
import { createConsumer, handler } from '@mailroom/inbox';
import { HttpError, consumerTopology, migrateService, openPool, requireEnv, runService, startHttp, stopService } from '@mailroom/example-kit';
import { DECLINED_CARD, SLOW_CARD, orchestrationContracts } from './contracts.mjs';

const prefix = process.env.EXAMPLE_PREFIX ?? 'mailroom-example';
const { ChargePayment, VoidPayment, PaymentCharged, PaymentDeclined, ProcessorAnswered } = orchestrationContracts(prefix);
const processorDelayMs = Number(process.env.PROCESSOR_DELAY_MS ?? 5000);

runService('payments', async (log) => {
  const pool = openPool(requireEnv('DATABASE_URL'), log, 12);
  const amqp = requireEnv('AMQP_URL');
  await migrateService(pool, fileURLToPath(new URL('../migrations/payments', import.meta.url)));
  const record = (tx, message, orderId) => tx.query('INSERT INTO handled_log (message_id, type, order_id) VALUES ($1, $2, $3)', [message.messageId, message.type, orderId]);
  const short = (id) => id.slice(0, 8);
  const charged = (tx, orderId, amount) => enqueue(tx, PaymentCharged.create({ orderId, amount }, { key: orderId }));

  const topology = consumerTopology(prefix, 'payments');
  const deadLetterSink = createDeadLetterSink({ db: pool, amqp, topology: topology.deadLetters });
  const consumer = createConsumer({
    name: 'payments',
    db: pool,
    amqp,
    ...topology,
    deadLetters: { ...topology.deadLetters, sink: deadLetterSink },
    handlers: [
      handler(ChargePayment, async ({ payload, tx, message }) => {
        await record(tx, message, payload.orderId);
        const card = payload.card.replace(/\D/g, '');
        const status = card === DECLINED_CARD ? 'declined' : card === SLOW_CARD ? 'pending' : 'charged';
        // The primary key decides: a void that came first (a tombstone) refuses the charge, and a
        // charge command sent twice cannot charge twice.
        const { rowCount } = await tx.query('INSERT INTO payments (order_id, amount, status, reason) VALUES ($1, $2, $3, $4) ON CONFLICT (order_id) DO NOTHING', [
          payload.orderId,
          payload.amount,
          status,
          status === 'declined' ? 'card declined' : null,
        ]);
        if (rowCount === 0) {
          log(`order ${short(payload.orderId)}: charge refused, the payment was voided before it arrived`);
          return;
        }
        if (status === 'declined') {
          await enqueue(tx, PaymentDeclined.create({ orderId: payload.orderId, reason: 'card declined' }, { key: payload.orderId }));
          log(`order ${short(payload.orderId)}: card declined → payment.declined`);
        } else if (status === 'pending') {
          // A real service would call the processor outside the transaction with the order id as
          // the idempotency key; here its answer is a message this service schedules to itself.
          await enqueue(tx, ProcessorAnswered.create({ orderId: payload.orderId }, { key: payload.orderId }), { delay: processorDelayMs });
          log(`order ${short(payload.orderId)}: card processor is slow, answers in ${processorDelayMs} ms`);
        } else {
          await charged(tx, payload.orderId, payload.amount);
          log(`order ${short(payload.orderId)}: charged ${payload.amount} → payment.charged`);
        }
      }),
      handler(ProcessorAnswered, async ({ payload, tx, message }) => {
        await record(tx, message, payload.orderId);
        const { rows } = await tx.query("UPDATE payments SET status = 'charged', updated_at = now() WHERE order_id = $1 AND status = 'pending' RETURNING amount", [payload.orderId]);
        if (rows.length === 0) {
          log(`order ${short(payload.orderId)}: the processor answered late; the payment was voided, nothing charged`);
          return;
        }
        await charged(tx, payload.orderId, Number(rows[0].amount));
        log(`order ${short(payload.orderId)}: processor answered, charged ${rows[0].amount} → payment.charged`);
      }),
      // The compensation: void what is pending, refund what was charged, refuse what comes later.
      handler(VoidPayment, async ({ payload, tx, message }) => {
        await record(tx, message, payload.orderId);
        const { rows } = await tx.query(
          `INSERT INTO payments (order_id, status, reason) VALUES ($1, 'voided', 'voided before the charge arrived')
           ON CONFLICT (order_id) DO UPDATE
             SET status = CASE payments.status WHEN 'pending' THEN 'voided' WHEN 'charged' THEN 'refunded' ELSE payments.status END,
                 reason = CASE WHEN payments.status IN ('pending', 'charged') THEN 'order cancelled' ELSE payments.reason END,
                 updated_at = now()
           RETURNING status`,
          [payload.orderId],
        );
        log(`order ${short(payload.orderId)}: void → payment ${rows[0].status}`);
      }),
    ],
  });
  consumer.on('deadLettered', (info) => log(`dead-lettered ${info.messageId.slice(0, 8)} (${info.reason}): ${info.error}`));
  consumer.on('duplicate', (m) => log(`duplicate ${m.type} ${m.messageId.slice(0, 8)} ignored by the inbox`));
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
    { queue: topology.queue, delayQueues: consumer.delayQueues },
  );
  return {
    stop: () => stopService({ http, consumer, relay, pool }),
  };
});
