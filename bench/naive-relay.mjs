// The naive relay, a baseline of the benchmarks: what a team writes in an afternoon. It polls
// mailroom's outbox table every NAIVE_POLL_MS (default 100), claims up to NAIVE_BATCH rows
// (default 1000) with FOR UPDATE SKIP LOCKED, publishes them on one confirm channel with the
// AMQP properties and the stored headers only, waits for the confirms, deletes them and commits.
// A full batch is followed at once by the next. No retries, no dead letters, no ordering, no
// metrics: on any error it exits (the benchmark fails loudly). Prints "ready" once it polls.
// Run as its own process: NAIVE_DATABASE_URL, NAIVE_AMQP_URL, NAIVE_SCHEMA.
import amqp from 'amqplib';
import pg from 'pg';

const schema = process.env.NAIVE_SCHEMA ?? 'mailroom';
const pollMs = Number(process.env.NAIVE_POLL_MS ?? 100);
const batch = Number(process.env.NAIVE_BATCH ?? 1000);
const client = new pg.Client({ connectionString: process.env.NAIVE_DATABASE_URL });
await client.connect();
const connection = await amqp.connect(process.env.NAIVE_AMQP_URL);
const channel = await connection.createConfirmChannel();
let stopping = false;
process.on('SIGTERM', () => (stopping = true));
process.stdout.write('ready\n');

while (!stopping) {
  await client.query('BEGIN');
  const { rows } = await client.query(
    `SELECT id, message_id, type, exchange, routing_key, headers, payload::text AS payload,
            extract(epoch FROM occurred_at)::bigint AS occurred
       FROM "${schema}".outbox ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED`,
    [batch],
  );
  for (const row of rows) {
    const headers = Object.keys(row.headers).length > 0 ? row.headers : undefined;
    channel.publish(row.exchange, row.routing_key, Buffer.from(row.payload), {
      messageId: row.message_id,
      type: row.type,
      contentType: 'application/json',
      timestamp: Number(row.occurred),
      persistent: true,
      headers,
    });
  }
  if (rows.length > 0) {
    await channel.waitForConfirms();
    await client.query(`DELETE FROM "${schema}".outbox WHERE id = ANY($1::bigint[])`, [rows.map((r) => r.id)]);
  }
  await client.query('COMMIT');
  if (rows.length < batch && !stopping) await new Promise((resolve) => setTimeout(resolve, pollMs));
}
await channel.close();
await connection.close();
await client.end();
