// The relay's publishing of one batch, against a channel that behaves like amqplib's confirm
// channel (publish returns false when its write buffer is full and emits 'drain' later; returns
// come before the ack of the same publish), so back-pressure and each row's outcome can be driven
// exactly. The same code against the real broker is covered by enqueue-relay, faults and
// unpublishable tests.
import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import { silentLogger, type AmqpConnection } from '@mailroom/core';
import { publishRows } from '../src/publish-rows.js';
import { ConfirmPublisher } from '../src/publisher.js';
import type { OutboxRow } from '../src/relay-sql.js';

interface Sent {
  exchange: string;
  routingKey: string;
  content: Buffer;
  options: { messageId: string; timestamp?: number; headers?: Record<string, unknown>; mandatory?: boolean };
  callback: (error: unknown) => void;
}

/** A confirm channel whose buffer holds `capacity` publishes until drain() is called. */
class FakeChannel extends EventEmitter {
  readonly sent: Sent[] = [];
  buffered = 0;
  constructor(private readonly capacity: number) {
    super();
  }
  publish(exchange: string, routingKey: string, content: Buffer, options: Sent['options'], callback: (error: unknown) => void): boolean {
    this.sent.push({ exchange, routingKey, content, options, callback });
    this.buffered++;
    return this.buffered < this.capacity;
  }
  drain(): void {
    this.buffered = 0;
    this.emit('drain');
  }
  async close(): Promise<void> {
    this.emit('close');
  }
}

function publisherOn(channel: FakeChannel): ConfirmPublisher {
  const connection = { get: async () => ({ createConfirmChannel: async () => channel }) } as unknown as AmqpConnection;
  return new ConfirmPublisher(connection, { declareExchanges: false, logger: silentLogger });
}

function rows(n: number, key: (i: number) => string | null = () => null): OutboxRow[] {
  return Array.from({ length: n }, (_, i) => ({
    id: String(i + 1),
    message_id: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`,
    type: 't',
    exchange: '',
    routing_key: 'q',
    key: key(i),
    headers: '{}',
    payload: `{"n":${i}}`,
    occurred_ms: 1_800_000_000_250 + i,
    created_ms: 1_800_000_000_250,
    attempts: 0,
    suspect: false,
  }));
}

const ticks = async (n = 20): Promise<void> => {
  for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
};

describe('publishRows', () => {
  it('waits for the channel to drain when a publish reports its buffer full, and writes the rest after', async () => {
    const channel = new FakeChannel(2);
    const publishing = publishRows(publisherOn(channel), rows(5), { ordered: false, maxMessageBytes: 1024, publishTimeoutMs: 10_000 });
    await ticks();
    // The second publish filled the buffer: nothing more is written until 'drain'.
    expect(channel.sent.length).toBe(2);
    channel.drain();
    await ticks();
    expect(channel.sent.length).toBe(4);
    channel.drain();
    await ticks();
    expect(channel.sent.length).toBe(5);
    for (const s of channel.sent) s.callback(null);
    const outcomes = await publishing;
    expect(outcomes.map((o) => o.kind)).toEqual(['confirmed', 'confirmed', 'confirmed', 'confirmed', 'confirmed']);
  });

  it('publishes with the AMQP properties and no headers for an unkeyed row, the key header for a keyed one', async () => {
    const channel = new FakeChannel(100);
    const publishing = publishRows(
      publisherOn(channel),
      rows(2, (i) => (i === 1 ? 'k-1' : null)),
      { ordered: false, maxMessageBytes: 1024, publishTimeoutMs: 10_000 },
    );
    await ticks();
    const [plain, keyed] = channel.sent;
    expect(plain?.options).toMatchObject({ messageId: '00000000-0000-4000-8000-000000000000', timestamp: 1_800_000_000, mandatory: true });
    expect(plain?.options.headers).toBeUndefined();
    expect(keyed?.options.headers).toEqual({ 'x-mailroom-key': 'k-1' });
    for (const s of channel.sent) s.callback(null);
    await publishing;
  });

  it('gives each row its own outcome: confirmed, returned (return before ack), nacked, failed at the deadline', async () => {
    const channel = new FakeChannel(100);
    const batch = rows(4);
    const publishing = publishRows(publisherOn(channel), batch, { ordered: false, maxMessageBytes: 1024, publishTimeoutMs: 300 });
    await ticks();
    expect(channel.sent.length).toBe(4);
    const [a, b, c] = channel.sent as [Sent, Sent, Sent, Sent];
    a.callback(null);
    channel.emit('return', { properties: { messageId: b.options.messageId }, fields: { replyCode: 312, replyText: 'NO_ROUTE', exchange: '', routingKey: 'q' } });
    b.callback(null);
    c.callback(new Error('message nacked'));
    // The fourth is never confirmed: the deadline fails it, and a late ack changes nothing.
    const outcomes = await publishing;
    channel.sent[3]?.callback(null);
    expect(outcomes.map((o) => o.kind)).toEqual(['confirmed', 'returned', 'nacked', 'failed']);
    expect(outcomes[1]).toMatchObject({ error: expect.stringContaining('312 NO_ROUTE') as string });
  });
});
