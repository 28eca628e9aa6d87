// What `enqueue` refuses: messages the relay could never publish (issue 9, defect 5) and plain
// objects carrying mailroom's reserved headers (defect 4, producer side).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { MailroomError, defineMessage, type OutgoingMessage } from '@mailroom/core';
import { RESERVED_HEADER_PREFIX } from '@mailroom/core/internal';
import { enqueue } from '@mailroom/outbox';
import { createTestDatabase, type TestDatabase } from '../../../test/helpers.js';

let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase();
});
afterAll(async () => {
  await db?.close();
});

const Event = defineMessage('check.event', z.object({ n: z.number() }));

/** Runs `enqueue` in a transaction that is committed when it succeeds; returns what it threw. */
async function tryEnqueue(messages: OutgoingMessage[]): Promise<unknown> {
  const client = await db.pool.connect();
  try {
    await client.query('BEGIN');
    await enqueue(client, messages, { schema: db.schema });
    await client.query('COMMIT');
    return undefined;
  } catch (error) {
    await client.query('ROLLBACK');
    return error;
  } finally {
    client.release();
  }
}

/** How many of `ids` are in the outbox. */
async function stored(ids: string[]): Promise<number> {
  const result = await db.pool.query(`SELECT count(*)::int AS n FROM "${db.schema}".outbox WHERE message_id::text = ANY($1::text[])`, [ids]);
  return (result.rows[0] as { n: number }).n;
}

describe('enqueue refuses what can never be published, with a clear error', () => {
  const cases: Array<[string, () => OutgoingMessage, RegExp]> = [
    ['a routing key over 255 bytes', () => ({ ...Event.create({ n: 1 }), routingKey: 'r'.repeat(256) }), /routing key is 256 bytes, over the AMQP limit of 255/],
    ['a routing key of 200 characters but 400 bytes', () => ({ ...Event.create({ n: 1 }), routingKey: 'é'.repeat(200) }), /routing key is 400 bytes/],
    ['a type over 255 bytes (a plain object)', () => ({ ...Event.create({ n: 1 }), type: 't'.repeat(300) }), /type is 300 bytes/],
    ['an exchange over 255 bytes (a plain object)', () => ({ ...Event.create({ n: 1 }), exchange: 'x'.repeat(256) }), /exchange is 256 bytes/],
    ['headers over 64 KiB', () => ({ ...Event.create({ n: 1 }), headers: { 'x-pad': 'p'.repeat(65_500) } }), /headers encode to \d+ bytes, over the limit of 65536/],
    [
      'headers that fit alone but not with the key mailroom adds',
      () => ({ ...Event.create({ n: 1 }), key: 'k'.repeat(200), headers: { 'x-pad': 'p'.repeat(65_400) } }),
      /headers encode to \d+ bytes/,
    ],
    ['a header name over 255 bytes', () => ({ ...Event.create({ n: 1 }), headers: { ['h'.repeat(256)]: 'v' } }), /header name .* is 256 bytes/],
    ['a reserved header on a plain object', () => ({ ...Event.create({ n: 1 }), headers: { [`${RESERVED_HEADER_PREFIX}attempts`]: '99' } }), /header "x-mailroom-attempts" is reserved/],
    [
      'a reserved header in another case',
      () => ({ ...Event.create({ n: 1 }), headers: { [`${RESERVED_HEADER_PREFIX.toUpperCase()}ORIGINAL-EXCHANGE`]: 'amq.direct' } }),
      /is reserved/,
    ],
    ['a header that is not a string', () => ({ ...Event.create({ n: 1 }), headers: { depth: 3 } as unknown as Record<string, string> }), /header "depth" is a number/],
    ['NUL in the type', () => ({ ...Event.create({ n: 1 }), type: 'a\u0000b' }), /type contains NUL/],
  ];
  for (const [name, make, message] of cases) {
    it(name, async () => {
      const good = Event.create({ n: 0 });
      const bad = make();
      const error = await tryEnqueue([good, bad]);
      expect(error).toBeInstanceOf(MailroomError);
      expect((error as MailroomError).code).toBe('INVALID_MESSAGE');
      expect((error as Error).message).toMatch(message);
      // Nothing of the call was stored.
      expect(await stored([good.messageId, bad.messageId])).toBe(0);
    });
  }

  it('contract.create refuses the same sizes before anything reaches enqueue', () => {
    expect(() => Event.create({ n: 1 }, { routingKey: 'r'.repeat(256) })).toThrowError(/routing key is 256 bytes/);
    expect(() => Event.create({ n: 1 }, { key: 'k'.repeat(200), headers: { 'x-pad': 'p'.repeat(65_400) } })).toThrowError(/headers encode to \d+ bytes/);
  });

  it('accepts a message right at the limits', async () => {
    const edge = Event.create({ n: 1 }, { routingKey: 'r'.repeat(255), headers: { 'x-pad': 'p'.repeat(60_000) } });
    expect(await tryEnqueue([edge])).toBeUndefined();
    expect(await stored([edge.messageId])).toBe(1);
  });
});
