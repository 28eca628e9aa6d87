// A lower bound, not a relay to use: what publishing each event at its commit costs when
// PostgreSQL is asked nothing per event. The benchmark installs a trigger in its own schema that
// puts each new outbox row into its NOTIFY (`startNotifyRelay` in lib.mjs); this process LISTENs,
// publishes every row straight from the notification on one confirm channel (the same AMQP
// properties as the naive relay, plus mandatory), and deletes the confirmed rows in one statement
// every NOTIFY_DELETE_MS (default 50). Per event: one NOTIFY read, one publish, one confirm; no
// claim, no transaction.
//
// Why it is no product mode: any role that can connect to the database can LISTEN on any channel
// and would read every event's payload; a forged NOTIFY would be published (and could delete the
// row of another event before it is sent); two such processes publish everything twice; a row
// whose notification is lost (this process down) is never published; one larger than NOTIFY's
// 8000 bytes is never published. Run as its own process: NAIVE_DATABASE_URL, NAIVE_AMQP_URL,
// NAIVE_SCHEMA. Prints "ready" once it listens; on any error it exits (the benchmark fails loudly).
import amqp from 'amqplib';
import pg from 'pg';

const schema = process.env.NAIVE_SCHEMA ?? 'mailroom';
const deleteMs = Number(process.env.NOTIFY_DELETE_MS ?? 50);
const client = new pg.Client({ connectionString: process.env.NAIVE_DATABASE_URL });
await client.connect();
const connection = await amqp.connect(process.env.NAIVE_AMQP_URL, { noDelay: true });
const channel = await connection.createConfirmChannel();
let confirmed = [];
let timer;
const fail = (error) => {
  process.stderr.write(`notify relay: ${error?.stack ?? error}\n`);
  process.exit(1);
};
const flush = async () => {
  timer = undefined;
  const ids = confirmed;
  confirmed = [];
  if (ids.length > 0) await client.query(`DELETE FROM "${schema}".outbox WHERE id = ANY($1::bigint[])`, [ids]);
};
client.on('notification', (message) => {
  const text = message.payload;
  const a = text.indexOf('\n');
  const b = text.indexOf('\n', a + 1);
  const row = JSON.parse(text.slice(0, a));
  const headers = text.slice(a + 1, b);
  channel.publish(
    row.x,
    row.r,
    Buffer.from(text.slice(b + 1)),
    {
      messageId: row.m,
      type: row.t,
      contentType: 'application/json',
      timestamp: Math.floor(row.o / 1000),
      persistent: true,
      mandatory: true,
      headers: headers === '{}' ? undefined : JSON.parse(headers),
    },
    (error) => {
      if (error) return fail(error);
      confirmed.push(row.i);
      timer ??= setTimeout(() => flush().catch(fail), deleteMs);
    },
  );
});
await client.query(`LISTEN "notify_relay_${schema}"`);
process.on('SIGTERM', () => {
  clearTimeout(timer);
  flush()
    .then(() => channel.close())
    .then(() => connection.close())
    .then(() => client.end())
    .then(() => process.exit(0), fail);
});
process.stdout.write('ready\n');
