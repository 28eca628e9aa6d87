// The wire tap reads AMQP frames off a fault proxy's link and counts deliveries, publishes and
// requeues per message id: how the checker sees a requeue loop that the consumer never reports.
// The raw publisher sends headers amqplib cannot encode (over its 64 KiB buffer).
import * as amqp from 'amqplib';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { WireTap, publishRaw, startFaultProxy, type FaultProxy } from '@mailroom/chaos';
import { FRAME, FrameReader, encodeFrame, longstr, shortstr, u16, u64, type Frame } from '../src/amqp-frames.js';
import { randomName, testUrls } from '../../../test/helpers.js';

describe('FrameReader', () => {
  it('cuts a stream into method and header frames however it is chunked, skipping bodies', () => {
    const stream = Buffer.concat([
      Buffer.from('AMQP\u0000\u0000\u0009\u0001', 'latin1'),
      encodeFrame(FRAME.method, 1, Buffer.concat([u16(60), u16(40), u16(0), shortstr('ex'), shortstr('rk'), Buffer.from([0])])),
      encodeFrame(FRAME.header, 1, Buffer.concat([u16(60), u16(0), u64(5), u16(1 << 7), shortstr('m-1')])),
      encodeFrame(FRAME.body, 1, Buffer.from('hello')),
      encodeFrame(FRAME.heartbeat, 0, Buffer.alloc(0)),
      encodeFrame(FRAME.method, 2, Buffer.concat([u16(20), u16(40)])),
    ]);
    for (const step of [1, 3, 7, stream.length]) {
      const frames: Frame[] = [];
      const reader = new FrameReader(true, (f) => frames.push({ ...f, payload: Buffer.from(f.payload) }));
      for (let at = 0; at < stream.length; at += step) reader.push(stream.subarray(at, at + step));
      expect(frames.map((f) => [f.type, f.channel]), `chunks of ${step}`).toEqual([
        [FRAME.method, 1],
        [FRAME.header, 1],
        [FRAME.method, 2],
      ]);
    }
  });

  it('refuses a client stream that is not AMQP (TLS, say), and the tap then leaves that connection alone', () => {
    expect(() => new FrameReader(true, () => undefined).push(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc]))).toThrow(/not an AMQP/);
    const tap = new WireTap(() => 'work-queue');
    const link = tap.connection();
    link.up(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc]));
    link.down(Buffer.from([0x16, 0x03, 0x03, 0x00, 0x5d, 0x02, 0x00, 0x00, 0x59]));
    expect(tap.unreadable).toBe(1);
    expect(tap.tallies()).toEqual([]);
  });

  it('encodes long strings, and refuses a short string over 255 bytes', () => {
    expect(longstr('abc')).toEqual(Buffer.from([0, 0, 0, 3, 0x61, 0x62, 0x63]));
    expect(() => shortstr('x'.repeat(256))).toThrow(RangeError);
  });
});

describe('wire tap and raw publisher (real broker)', () => {
  const { amqpUrl } = testUrls();
  const queue = randomName('chaos_tap');
  let admin: amqp.ChannelModel;
  let proxy: FaultProxy;
  let tap: WireTap;
  beforeAll(async () => {
    admin = await amqp.connect(amqpUrl);
    const channel = await admin.createChannel();
    await channel.assertQueue(queue, { durable: false });
    await channel.close();
    tap = new WireTap((kind, exchange) => (kind === 'deliver' ? 'work-queue' : exchange === '' ? 'relay-publish' : null));
    const u = new URL(amqpUrl);
    proxy = await startFaultProxy('amqp', { host: u.hostname, port: Number(u.port || 5672) }, tap);
  });
  afterAll(async () => {
    const channel = await admin.createChannel();
    await channel.deleteQueue(queue);
    await admin.close();
    await proxy.close();
  });

  it('publishes 100 KB of headers (more than amqplib can), and counts deliveries, requeues and publishes through the proxy', async () => {
    const headers = { 'x-pad': 'p'.repeat(100_000), 'x-nul\u0000name': 'a\u0000b' };
    // amqplib itself refuses these headers.
    const plain = await admin.createChannel();
    plain.on('error', () => undefined);
    expect(() => plain.sendToQueue(queue, Buffer.from('{}'), { headers })).toThrow(/encoding buffer/);
    await publishRaw(amqpUrl, { exchange: '', routingKey: queue, body: Buffer.from('{"a":1}'), messageId: 'raw-1', type: 'chaos.event\u0000x', headers });

    const client = await amqp.connect(proxy.url(amqpUrl));
    const channel = await client.createChannel();
    const seen: amqp.ConsumeMessage[] = [];
    await channel.consume(queue, (m) => {
      if (m === null) return;
      seen.push(m);
      // Given back twice, then acked: three deliveries of one message.
      if (seen.length < 3) channel.nack(m, false, true);
      else channel.ack(m);
    });
    await vi.waitFor(() => expect(seen).toHaveLength(3), { timeout: 10_000 });
    expect(seen[0]?.properties).toMatchObject({ messageId: 'raw-1', type: 'chaos.event\u0000x' });
    expect(String(seen[0]?.properties.headers?.['x-pad']).length).toBe(100_000);
    tap.mark();
    // A publish through the proxy on the counted route, after the mark.
    const confirm = await client.createConfirmChannel();
    confirm.sendToQueue(randomName('nowhere'), Buffer.from('{}'), { messageId: 'pub-1' });
    confirm.sendToQueue(randomName('nowhere'), Buffer.from('{}'), { messageId: 'pub-1' });
    await confirm.waitForConfirms();
    await vi.waitFor(() =>
      expect(tap.tallies()).toEqual(
        expect.arrayContaining([
          { route: 'work-queue', messageId: 'raw-1', total: 3, afterMark: 0, peakPerSecond: 3, requeues: 2 },
          { route: 'relay-publish', messageId: 'pub-1', total: 2, afterMark: 2, peakPerSecond: 2, requeues: 0 },
        ]),
      ),
    );
    expect(tap.unreadable).toBe(0);
    await client.close();
  });
});
