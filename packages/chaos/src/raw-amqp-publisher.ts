import { connect } from 'node:net';
import { FRAME, FrameReader, PROTOCOL_HEADER, PayloadReader, encodeFrame, longstr, shortstr, stringTable, u16, u32, u64, type Frame } from './amqp-frames.js';

/** One message to publish, with string headers of any size. */
export interface RawMessage {
  exchange: string;
  routingKey: string;
  body: Buffer;
  messageId?: string;
  type?: string;
  contentType?: string;
  headers: Record<string, string>;
}

const method = (cls: number, id: number, ...args: Buffer[]): Buffer => Buffer.concat([u16(cls), u16(id), ...args]);

/**
 * Publishes one message with a minimal AMQP 0-9-1 client of its own (PLAIN login, one confirm
 * channel, mandatory), as a client other than amqplib may: amqplib encodes headers in a 64 KiB
 * buffer, the broker takes content headers up to its `frame_max` (128 KiB by default). Resolves
 * when the broker confirmed it; rejects on a nack, a return, a refusal or after `timeoutMs`.
 */
export async function publishRaw(url: string, message: RawMessage, timeoutMs = 10_000): Promise<void> {
  const u = new URL(url);
  if (u.protocol !== 'amqp:') throw new Error(`the raw publisher speaks plain amqp only, not ${u.protocol}`);
  const host = u.hostname === '' ? '127.0.0.1' : u.hostname.replace(/^\[(.*)\]$/, '$1');
  const socket = connect({ host, port: Number(u.port || 5672) });
  const frames: Frame[] = [];
  let wake: (() => void) | undefined;
  let failure: Error | undefined;
  const reader = new FrameReader(false, (frame) => {
    frames.push(frame);
    wake?.();
  });
  socket.on('data', (chunk: Buffer) => reader.push(chunk));
  const fail = (error: Error): void => {
    failure ??= error;
    wake?.();
  };
  socket.on('error', fail);
  socket.on('close', () => fail(new Error('the broker closed the connection')));
  const timer = setTimeout(() => fail(new Error(`no confirm within ${timeoutMs} ms`)), timeoutMs);

  // The next method frame, which must be one of `expected` (class, method); a close is an error.
  const next = async (...expected: Array<[number, number]>): Promise<PayloadReader> => {
    for (;;) {
      const frame = frames.shift();
      if (frame === undefined) {
        if (failure !== undefined) throw failure;
        await new Promise<void>((resolve) => (wake = resolve));
        wake = undefined;
        continue;
      }
      if (frame.type !== FRAME.method) continue;
      const r = new PayloadReader(frame.payload);
      const cls = r.u16();
      const id = r.u16();
      if ((cls === 10 && id === 50) || (cls === 20 && id === 40)) {
        const code = r.u16();
        throw new Error(`the broker closed the ${cls === 10 ? 'connection' : 'channel'}: ${code} ${r.shortstr()}`);
      }
      if (expected.some(([c, m]) => c === cls && m === id)) return r;
    }
  };
  const send = (channel: number, payload: Buffer, type: number = FRAME.method): void => {
    socket.write(encodeFrame(type, channel, payload));
  };

  try {
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    socket.write(PROTOCOL_HEADER);
    await next([10, 10]); // connection.start
    const user = decodeURIComponent(u.username || 'guest');
    const password = decodeURIComponent(u.password || 'guest');
    send(0, method(10, 11, stringTable({}), shortstr('PLAIN'), longstr(`\u0000${user}\u0000${password}`), shortstr('en_US')));
    const tune = await next([10, 30]);
    const channelMax = tune.u16();
    const frameMax = tune.u32();
    send(0, method(10, 31, u16(channelMax), u32(frameMax), u16(0)));
    const vhost = u.pathname.length > 1 ? decodeURIComponent(u.pathname.slice(1)) : '/';
    send(0, method(10, 40, shortstr(vhost), shortstr(''), Buffer.from([0])));
    await next([10, 41]);
    send(1, method(20, 10, shortstr('')));
    await next([20, 11]);
    send(1, method(85, 10, Buffer.from([0])));
    await next([85, 11]);

    let flags = 0;
    const props: Buffer[] = [];
    if (message.contentType !== undefined) {
      flags |= 1 << 15;
      props.push(shortstr(message.contentType));
    }
    flags |= 1 << 13;
    props.push(stringTable(message.headers));
    flags |= 1 << 12;
    props.push(Buffer.from([2])); // persistent
    if (message.messageId !== undefined) {
      flags |= 1 << 7;
      props.push(shortstr(message.messageId));
    }
    if (message.type !== undefined) {
      flags |= 1 << 5;
      props.push(shortstr(message.type));
    }
    send(1, method(60, 40, u16(0), shortstr(message.exchange), shortstr(message.routingKey), Buffer.from([1]))); // mandatory
    send(1, Buffer.concat([u16(60), u16(0), u64(message.body.length), u16(flags), ...props]), FRAME.header);
    const max = (frameMax === 0 ? 131_072 : frameMax) - 8;
    for (let at = 0; at < message.body.length; at += max) send(1, message.body.subarray(at, at + max), FRAME.body);
    // A return (unroutable) comes before its ack: either ends the publish.
    const answer = await next([60, 80], [60, 120], [60, 50]);
    const kind = answer.payload.readUInt16BE(2);
    if (kind === 50) throw new Error(`returned: ${answer.u16()} ${answer.shortstr()}`);
    if (kind === 120) throw new Error('nacked by the broker');
    send(0, method(10, 50, u16(200), shortstr('bye'), u16(0), u16(0)));
    await next([10, 51]).catch(() => undefined);
  } finally {
    clearTimeout(timer);
    socket.destroy();
  }
}
