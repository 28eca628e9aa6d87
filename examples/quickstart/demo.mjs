// The quickstart demo: a producer commits domain rows together with outbox events (and one
// transaction that rolls back), the relay publishes them with publisher confirms, a consumer
// prints what arrives. Exits 0 only if exactly the committed events arrived.
//
//   MAILROOM_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/test)
//   MAILROOM_AMQP_URL     (default amqp://guest:guest@127.0.0.1:5672)
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import amqp from 'amqplib';
import { z } from 'zod';
import { defineMessage, migrate, redactUrl } from '@mailroom/core';
import { createRelay, enqueue } from '@mailroom/outbox';

const databaseUrl = process.env.MAILROOM_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const amqpUrl = process.env.MAILROOM_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
const schema = 'mailroom_demo';
const run = randomBytes(3).toString('hex');
const exchange = `mailroom.demo.${run}`;

const say = (icon, text) => console.log(`${new Date().toISOString().slice(11, 23)}  ${icon}  ${text}`);

const OrderPlaced = defineMessage(
  'order.placed',
  z.object({ orderId: z.string(), customer: z.string(), total: z.number().positive() }),
  { exchange },
);

async function main() {
  say('•', `PostgreSQL ${redactUrl(databaseUrl)}, RabbitMQ ${redactUrl(amqpUrl)}`);
  const pool = new pg.Pool({ connectionString: databaseUrl, max: 4 });
  try {
    await pool.query('SELECT 1');
  } catch (error) {
    throw new Error(
      `cannot reach PostgreSQL at ${redactUrl(databaseUrl)} (${error.message}). Start it (pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start) or set MAILROOM_DATABASE_URL.`,
    );
  }
  let connection;
  try {
    connection = await amqp.connect(amqpUrl);
  } catch (error) {
    throw new Error(`cannot reach RabbitMQ at ${redactUrl(amqpUrl)} (${error.message}). Start it (rabbitmq-server -detached) or set MAILROOM_AMQP_URL.`);
  }

  const migrated = await migrate(pool, { schema });
  say('•', `schema "${schema}" migrated (${migrated.applied.length} new migrations)`);
  await pool.query(`CREATE TABLE IF NOT EXISTS ${schema}.demo_orders (id text PRIMARY KEY, customer text NOT NULL, total numeric NOT NULL)`);

  // The consumer: a queue bound to the demo exchange, printing every event.
  const channel = await connection.createChannel();
  await channel.assertExchange(exchange, 'topic', { durable: false, autoDelete: true });
  const { queue } = await channel.assertQueue('', { exclusive: true });
  await channel.bindQueue(queue, exchange, 'order.#');
  const arrived = new Map();
  await channel.consume(queue, (msg) => {
    if (!msg) return;
    const order = JSON.parse(msg.content.toString());
    arrived.set(msg.properties.messageId, order);
    say('←', `consumer got ${msg.properties.type} ${order.orderId} (${order.customer}, ${order.total}) id ${msg.properties.messageId.slice(0, 8)}`);
    channel.ack(msg);
  });

  const relay = createRelay({ database: databaseUrl, amqp: amqpUrl, schema });
  relay.on('batch', (b) => say('→', `relay published ${b.published} event(s) with confirms in ${b.durationMs} ms`));
  await relay.start();
  say('•', 'relay started (woken by NOTIFY at commit, polling as a safety net)');

  const committed = [];
  const customers = ['ada', 'grace', 'linus', 'barbara', 'ken'];
  for (const [i, customer] of customers.entries()) {
    const orderId = `o-${run}-${i + 1}`;
    const event = OrderPlaced.create({ orderId, customer, total: 10 * (i + 1) }, { key: orderId });
    const client = await pool.connect();
    try {
      await client.query('BEGIN');
      await client.query(`INSERT INTO ${schema}.demo_orders (id, customer, total) VALUES ($1, $2, $3)`, [orderId, customer, 10 * (i + 1)]);
      await enqueue(client, event, { schema });
      if (customer === 'linus') {
        await client.query('ROLLBACK');
        say('✗', `producer rolled back ${orderId}: its event must never be published`);
      } else {
        await client.query('COMMIT');
        committed.push(event.messageId);
        say('✓', `producer committed ${orderId} and its event in one transaction`);
      }
    } finally {
      client.release();
    }
  }

  const deadline = Date.now() + 15_000;
  while (arrived.size < committed.length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  await new Promise((r) => setTimeout(r, 300));
  await relay.stop();
  await connection.close();
  await pool.end();

  const missing = committed.filter((id) => !arrived.has(id));
  const unexpected = [...arrived.keys()].filter((id) => !committed.includes(id));
  if (missing.length > 0 || unexpected.length > 0) {
    say('✗', `FAILED: ${missing.length} committed event(s) missing, ${unexpected.length} unexpected`);
    return 1;
  }
  say('✓', `done: ${committed.length} committed events arrived, the rolled-back one did not`);
  return 0;
}

main().then(
  (code) => process.exit(code),
  (error) => {
    console.error(`demo failed: ${error.message}`);
    process.exit(1);
  },
);
