// The buggy producer of the story: a one-off script that imports users from the old CRM into the
// users database. It carried its own, out-of-date copy of the user.created contract, with
// `emailAddress` where the real one says `email`, so its events are well-formed JSON with a
// valid id that every consumer on release 1.0 refuses: they land in the consumers' dead letters.
//
//   DATABASE_URL=postgres://…/mailroom_demo_users EXAMPLE_PREFIX=… node src/legacy-import.mjs <email> <name>
// prints {"userId":…,"messageId":…}
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { z } from 'zod';
import { defineMessage } from '@mailroom/core';
import { enqueue } from '@mailroom/outbox';
import { requireEnv } from '@mailroom/example-kit';
import { usersExchange } from './contracts.mjs';

const prefix = process.env.EXAMPLE_PREFIX ?? 'mailroom-example';
const [email, name] = process.argv.slice(2);
if (!email || !name) {
  console.error('usage: node src/legacy-import.mjs <email> <name>');
  process.exit(2);
}
// The stale copy: the bug.
const LegacyUserCreated = defineMessage(
  'user.created',
  z.object({ userId: z.string(), emailAddress: z.string(), name: z.string(), version: z.number() }),
  { exchange: usersExchange(prefix) },
);

const client = new pg.Client({ connectionString: requireEnv('DATABASE_URL') });
await client.connect();
try {
  const userId = randomUUID();
  const event = LegacyUserCreated.create({ userId, emailAddress: email, name, version: 1 }, { key: userId });
  await client.query('BEGIN');
  await client.query('INSERT INTO users (id, email, name) VALUES ($1, $2, $3)', [userId, email, name]);
  await enqueue(client, event);
  await client.query('COMMIT');
  console.log(JSON.stringify({ userId, messageId: event.messageId }));
} finally {
  await client.end();
}
