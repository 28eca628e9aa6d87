// The relay's ready-made publish frames (publish-frames.ts) against amqplib and the real broker:
// the bytes a FrameWriter queues on a channel are those amqplib's own publish queues for the same
// row, hostile payloads included (NUL characters, every UTF-8 length, a lone surrogate, an empty
// body, bodies around the frame size); what it does not write itself is left to amqplib; and rows
// published through it, mixed with rows amqplib writes, reach a queue byte for byte, in order,
// each with its own confirm.
import amqp from 'amqplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CONTENT_TYPE, silentLogger, type AmqpConnection } from '@mailroom/core';
import { FrameWriter } from '../src/publish-frames.js';
import { publishRows } from '../src/publish-rows.js';
import { ConfirmPublisher } from '../src/publisher.js';
import type { OutboxRow } from '../src/relay-sql.js';
import { createTestBroker, testUrls, type TestBroker } from '../../../test/helpers.js';

let broker: TestBroker;
let connection: amqp.ChannelModel;

beforeAll(async () => {
  broker = await createTestBroker();
  connection = await amqp.connect(testUrls().amqpUrl);
  connection.on('error', () => undefined);
});
afterAll(async () => {
  await connection?.close().catch(() => undefined);
  await broker?.close();
});

let seq = 0;
function row(overrides: Partial<OutboxRow> = {}): OutboxRow {
  seq++;
  return {
    id: String(seq),
    message_id: `00000000-0000-4000-8000-${String(seq).padStart(12, '0')}`,
    type: 'frames.event',
    exchange: 'frames.exchange',
    routing_key: 'frames.key',
    key: null,
    headers: '{}',
    payload: `{"n":${seq}}`,
    occurred_ms: 1_800_000_000_250 + seq,
    created_ms: 1_800_000_000_250,
    attempts: 0,
    suspect: false,
    ...overrides,
  };
}

/** The slot of amqplib's connection that holds the channel's write buffer. */
interface Slot {
  buffer: { write: (chunk: Buffer) => boolean };
}
function slotOf(channel: amqp.ConfirmChannel): Slot {
  const c = channel as unknown as { ch: number; connection: { channels: Slot[] } };
  return c.connection.channels[c.ch] as Slot;
}

/** Runs `write` with the channel's write buffer recording (and not sending) what is queued on it. */
function captured(channel: amqp.ConfirmChannel, write: () => void): Buffer {
  const buffer = slotOf(channel).buffer;
  const chunks: Buffer[] = [];
  const original = buffer.write;
  buffer.write = (chunk: Buffer) => {
    chunks.push(Buffer.from(chunk));
    return true;
  };
  try {
    write();
  } finally {
    // The recorder is an own property over the stream's method: removing it restores that.
    delete (buffer as { write?: unknown }).write;
    expect(buffer.write).toBe(original);
  }
  return Buffer.concat(chunks);
}

/** What amqplib queues for the relay's publish of `r` (the properties of publisher.ts). */
function amqplibBytes(channel: amqp.ConfirmChannel, r: OutboxRow, headers: Record<string, unknown> | undefined): Buffer {
  return captured(channel, () => {
    const properties: amqp.Options.Publish = {
      messageId: r.message_id,
      type: r.type,
      contentType: CONTENT_TYPE,
      timestamp: Math.floor(r.occurred_ms / 1000),
      persistent: true,
      mandatory: true,
    };
    if (headers !== undefined) properties.headers = headers;
    channel.publish(r.exchange, r.routing_key, Buffer.from(r.payload), properties, () => undefined);
  });
}

const NUL = String.fromCharCode(0);

describe('FrameWriter', () => {
  it('queues the bytes amqplib queues for the same publishes, one chunk for many', async () => {
    const channel = await connection.createConfirmChannel();
    channel.on('error', () => undefined);
    const writer = FrameWriter.for(channel);
    expect(writer).toBeDefined();
    const frameMax = (channel as unknown as { connection: { frameMax: number } }).connection.frameMax;
    const cases: Array<{ r: OutboxRow; headers?: Record<string, unknown> }> = [
      { r: row() },
      { r: row({ payload: `{"s":"a${NUL}b${NUL}"}` }) },
      { r: row({ payload: '{"s":"é ü ß ∑ 中文 😀 𝄞"}' }) },
      { r: row({ payload: `{"s":"${'\ud800'}x${'\udfff'}"}` }) },
      { r: row({ payload: '' }) },
      { r: row({ payload: 'x'.repeat(1024) }) },
      { r: row({ payload: 'é'.repeat(3000) }) },
      { r: row({ payload: 'y'.repeat(frameMax - 8) }) },
      { r: row({ occurred_ms: 0 }) },
      { r: row({ occurred_ms: 1999.999 }) },
      { r: row({ occurred_ms: 2 ** 40 * 1000 + 123 }) },
      { r: row({ exchange: '', routing_key: 'q.é.😀' }) },
      { r: row({ exchange: 'x'.repeat(255), routing_key: 'é'.repeat(127), type: 't'.repeat(200) }) },
      { r: row({ key: 'customer-42' }), headers: { 'x-mailroom-key': 'customer-42' } },
      {
        r: row(),
        headers: { traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', '1': 'numeric name', 'ключ': 'значение 😀', empty: '', nul: `a${NUL}b`, skipped: undefined },
      },
      { r: row(), headers: { big: 'v'.repeat(50_000) } },
      { r: row(), headers: {} },
    ];
    try {
      for (const { r, headers } of cases) {
        const expected = amqplibBytes(channel, r, headers);
        const actual = captured(channel, () => {
          expect(writer?.add(r, Buffer.byteLength(r.payload), headers, () => undefined)).toBe(true);
          writer?.flush();
        });
        expect(actual.equals(expected), `row ${r.id} (${r.payload.slice(0, 20)}…)`).toBe(true);
      }
      // Many publishes, one chunk: the same bytes as amqplib's one chunk per publish.
      const expected = Buffer.concat(cases.map(({ r, headers }) => amqplibBytes(channel, r, headers)));
      let chunks = 0;
      const buffer = slotOf(channel).buffer;
      const actual = captured(channel, () => {
        const recording = buffer.write;
        buffer.write = (chunk: Buffer) => {
          chunks++;
          return recording(chunk);
        };
        for (const { r, headers } of cases) writer?.add(r, Buffer.byteLength(r.payload), headers, () => undefined);
        writer?.flush();
      });
      expect(actual.equals(expected)).toBe(true);
      expect(chunks).toBeLessThan(cases.length / 2);
    } finally {
      await channel.close().catch(() => undefined);
    }
  });

  it('leaves to amqplib what it does not write itself: nothing is gathered for such a row', async () => {
    const channel = await connection.createConfirmChannel();
    channel.on('error', () => undefined);
    const writer = FrameWriter.for(channel) as FrameWriter;
    const frameMax = (channel as unknown as { connection: { frameMax: number } }).connection.frameMax;
    const refused: Array<{ r: OutboxRow; headers?: Record<string, unknown> }> = [
      { r: row(), headers: { n: 1 } },
      { r: row(), headers: { nested: { a: 'b' } } },
      { r: row(), headers: { ['k'.repeat(256)]: 'v' } },
      { r: row(), headers: { huge: 'v'.repeat(70_000) } },
      { r: row({ payload: 'z'.repeat(frameMax - 7) }) },
      { r: row({ routing_key: 'r'.repeat(256) }) },
      { r: row({ exchange: 'é'.repeat(128) }) },
      { r: row({ message_id: 'm'.repeat(300) }) },
      { r: row({ occurred_ms: -1000 }) },
      { r: row({ occurred_ms: Number.NaN }) },
    ];
    try {
      const bytes = captured(channel, () => {
        for (const { r, headers } of refused) expect(writer.add(r, Buffer.byteLength(r.payload), headers, () => undefined), `row ${r.id}`).toBeUndefined();
        writer.flush();
      });
      expect(bytes.length).toBe(0);
    } finally {
      await channel.close().catch(() => undefined);
    }
    // A closed channel takes nothing either: amqplib's publish says why.
    expect(writer.add(row(), 10, undefined, () => undefined)).toBeUndefined();
  });

  it('publishes through the broker byte for byte, in order, mixed with rows amqplib writes, each confirmed or returned; a returned row keeps its payload', async () => {
    const exchange = broker.name('frames');
    const queue = await broker.queueFor(exchange, 'routed.#');
    const collected = broker.collect(queue);
    const publisher = new ConfirmPublisher({ get: async () => connection } as unknown as AmqpConnection, { declareExchanges: false, logger: silentLogger });
    const payloads = [
      '{"a":1}',
      `{"s":"nul ${NUL} inside"}`,
      '{"s":"é ü ß ∑ 中文 😀 𝄞"}',
      `{"big":"${'b'.repeat(300_000)}"}`,
      JSON.stringify({ pad: 'x'.repeat(1004), n: 7 }),
      '{"after":"big"}',
    ];
    const rows: OutboxRow[] = [];
    // A confirmed row's payload text is released once its frame is written (publish-rows.ts): compare with a copy.
    const originals = new Map<string, string>();
    const payloadOf = (r: OutboxRow): string => originals.get(r.message_id) ?? r.payload;
    for (const [i, payload] of payloads.entries()) {
      rows.push(row({ exchange, routing_key: `routed.${i}`, payload, key: i % 2 === 0 ? `key-${i}` : null }));
    }
    rows.push(row({ exchange, routing_key: 'routed.h', headers: JSON.stringify({ traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', n: 5 }) }));
    const returnedPayload = `{"returned":"nul ${NUL} é 😀 ${'r'.repeat(2000)}"}`;
    rows.push(row({ exchange, routing_key: 'nowhere', payload: returnedPayload }));
    rows.push(row({ exchange, routing_key: 'routed.last', payload: '{"last":true}' }));
    for (const r of rows) originals.set(r.message_id, r.payload);
    try {
      const outcomes = await publishRows(publisher, rows, { ordered: false, maxMessageBytes: 4 * 1024 * 1024, publishTimeoutMs: 10_000 });
      expect(outcomes.map((o) => o.kind)).toEqual([...rows.map(() => 'confirmed').slice(0, -2), 'returned', 'confirmed']);
      // A row that was not confirmed keeps its payload, exactly (its dead letter stores it).
      expect(rows.at(-2)?.payload).toBe(returnedPayload);
      const routed = rows.filter((r) => r.routing_key !== 'nowhere');
      await collected.waitForCount(routed.length);
      expect(collected.ids()).toEqual(routed.map((r) => r.message_id));
      for (const [i, r] of routed.entries()) {
        const m = collected.messages[i] as amqp.ConsumeMessage;
        expect(m.content.equals(Buffer.from(payloadOf(r), 'utf8')), `body of ${r.routing_key}`).toBe(true);
        expect(m.fields.routingKey).toBe(r.routing_key);
        expect(m.properties).toMatchObject({ messageId: r.message_id, type: r.type, contentType: CONTENT_TYPE, deliveryMode: 2, timestamp: Math.floor(r.occurred_ms / 1000) });
        const expectedHeaders = { ...(JSON.parse(r.headers) as object), ...(r.key === null ? {} : { 'x-mailroom-key': r.key }) };
        expect(m.properties.headers ?? {}).toEqual(expectedHeaders);
      }
    } finally {
      await collected.stop();
      await publisher.close();
    }
  });
});
