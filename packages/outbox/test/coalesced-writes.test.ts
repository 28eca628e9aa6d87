// The relay's connection writes each pass of amqplib's muxer with one writev (coalesced-writes.ts):
// against the real broker, every message of a burst arrives whole and in order, with a few socket
// writes for the whole burst instead of one per publish.
import amqp from 'amqplib';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { coalesceWrites } from '../src/coalesced-writes.js';
import { createTestBroker, testUrls, type TestBroker } from '../../../test/helpers.js';

let broker: TestBroker;
beforeAll(async () => {
  broker = await createTestBroker();
});
afterAll(async () => {
  await broker?.close();
});

/** Counts the socket's writes (one per `_write` or `_writev`) under a confirm channel. */
function countSocketWrites(channel: object): { writes: number } {
  const stream = (channel as { connection: { stream: { _write: (...a: unknown[]) => unknown; _writev?: (...a: unknown[]) => unknown } } }).connection.stream;
  const counter = { writes: 0 };
  const write = stream._write.bind(stream);
  stream._write = (...a: unknown[]) => (counter.writes++, write(...a));
  const writev = stream._writev?.bind(stream);
  if (writev) stream._writev = (...a: unknown[]) => (counter.writes++, writev(...a));
  return counter;
}

async function burst(coalesced: boolean, n: number): Promise<{ writes: number; bodies: string[] }> {
  const exchange = broker.name(`burst-${coalesced}`);
  const queue = await broker.queueFor(exchange);
  const received = broker.collect(queue);
  const connection = await amqp.connect(testUrls().amqpUrl);
  try {
    const channel = await connection.createConfirmChannel();
    if (coalesced) expect(coalesceWrites(channel)).toBe(true);
    // Twice on one connection is once.
    if (coalesced) expect(coalesceWrites(channel)).toBe(true);
    const counter = countSocketWrites(channel);
    for (let i = 0; i < n; i++) {
      // Bodies of different sizes, some over amqplib's 2 KiB single-chunk threshold (3 chunks each).
      channel.publish(exchange, 'k', Buffer.from(`${i}:${'x'.repeat((i * 97) % 3000)}`), { messageId: String(i), persistent: true, mandatory: true });
    }
    await channel.waitForConfirms();
    await received.waitForCount(n);
    await received.stop();
    return { writes: counter.writes, bodies: received.messages.map((m) => m.content.toString()) };
  } finally {
    await connection.close();
  }
}

it('a burst of publishes goes out whole and in order, in a few socket writes', async () => {
  const n = 300;
  const expected = Array.from({ length: n }, (_, i) => `${i}:${'x'.repeat((i * 97) % 3000)}`);
  const plain = await burst(false, n);
  const coalesced = await burst(true, n);
  expect(plain.bodies).toEqual(expected);
  expect(coalesced.bodies).toEqual(expected);
  // Uncorked, one write per chunk; corked, one writev per 64 KiB or so (~560 KiB here).
  expect(plain.writes).toBeGreaterThanOrEqual(n);
  expect(coalesced.writes).toBeLessThan(n / 10);
});

it('leaves a channel whose connection is not the expected shape alone', () => {
  expect(coalesceWrites({})).toBe(false);
  expect(coalesceWrites({ connection: { stream: {}, muxer: {} } })).toBe(false);
});
