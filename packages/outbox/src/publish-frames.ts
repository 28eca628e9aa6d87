// amqplib encodes each publish by itself: an options object turned into a fields object, a fresh
// zero-filled buffer for the method frame, one for the header frame and one for the body frame,
// then a fourth buffer the three are copied into (the body twice), queued as one chunk of its own.
// For a relay draining a backlog of 1 KiB events that is several allocations and two body copies
// per message, most of the garbage collector's work. A FrameWriter writes the same frames, byte
// for byte, for many publishes into one shared slab: the body is encoded from the row's text
// straight into place, the method frame of an exchange and routing key is built once and copied,
// and the chunk goes to the channel's write buffer (the queue amqplib's own publish writes to)
// as one object, its confirm callbacks registered in publish order, as amqplib's publish does.
//
// Only the relay's own kind of publish is written here (content type, headers of string values,
// persistent, message id, timestamp, type; mandatory; a body that fits one frame); anything else
// (a header that is not a string, a name over 255 bytes, a body over the frame size, an amqplib
// whose internals are not the expected shape) goes through amqplib's `publish`, so what amqplib
// refuses is still refused by amqplib.

import { CONTENT_TYPE } from '@mailroom/core';
import type { OutboxRow } from './relay-sql.js';

const FRAME_METHOD = 1;
const FRAME_HEADER = 2;
const FRAME_BODY = 3;
const FRAME_END = 0xce;
/** basic.publish: class 60, method 40. */
const BASIC_PUBLISH = 0x003c0028;
/** The content header of class 60 (basic), weight 0. */
const BASIC_HEADER = 0x003c0000;
/** Property flags: content type, headers, delivery mode, message id, timestamp, type. */
const PROPERTY_FLAGS = 0x8000 | 0x2000 | 0x1000 | 0x0080 | 0x0040 | 0x0020;
/** A frame's type, channel and size (7 bytes) and its end octet. */
const FRAME_OVERHEAD = 8;
/** Publishes are gathered into slabs of this size (a larger publish gets a slab of its own). */
const SLAB_BYTES = 64 * 1024;
/** amqplib encodes a header table in a 64 KiB scratch buffer: a table near that size is left to it. */
const TABLE_LIMIT = 60 * 1024;
/** A string of up to 85 UTF-16 code units is at most 255 bytes of UTF-8. */
const SURELY_SHORT = 85;
const TWO_32 = 2 ** 32;

/** The persistent delivery mode. */
const PERSISTENT = 2;

const CONTENT_TYPE_BYTES = Buffer.from(CONTENT_TYPE, 'utf8');

/** The amqplib internals a FrameWriter writes through (amqplib 0.10 to 2.x). */
interface ChannelInternals {
  ch: number;
  connection: {
    channels: Array<{ channel: unknown; buffer: { write(chunk: Buffer): boolean } } | null | undefined>;
    frameMax: number;
    sentSinceLastCheck?: boolean;
  };
  pushConfirmCallback(callback: (error: unknown) => void): void;
}

/** A publish's confirm callback: null for an ack, an error for a nack or a closed channel. */
export type ConfirmCallback = (error: unknown) => void;

/**
 * Where {@link FrameWriter.add} wrote a publish's body: `slab.subarray(bodyAt, bodyAt + length)`,
 * bytes that are never written over (the slab is handed to the socket, never reused below its end).
 */
export interface FramedBody {
  slab: Buffer | undefined;
  bodyAt: number;
}

/** Byte length of a short string (an AMQP shortstr), or -1 when it is over 255 bytes. */
function shortLength(text: string): number {
  if (text.length <= SURELY_SHORT) return text.length * 3;
  const n = Buffer.byteLength(text, 'utf8');
  return n > 255 ? -1 : n;
}

/**
 * An upper bound of the encoded size of a header table of string values (amqplib writes a string
 * as a long string, `S`), or -1 when the table holds anything else or a key over 255 bytes.
 * Undefined values are skipped, as amqplib skips them.
 */
function tableBound(headers: Record<string, unknown> | undefined): number {
  let bound = 4;
  if (headers === undefined) return bound;
  for (const name in headers) {
    const value = headers[name];
    if (value === undefined) continue;
    if (typeof value !== 'string') return -1;
    const key = shortLength(name);
    if (key < 0) return -1;
    bound += 1 + key + 1 + 4 + (value.length <= SURELY_SHORT ? value.length * 3 : Buffer.byteLength(value, 'utf8'));
    if (bound > TABLE_LIMIT) return -1;
  }
  return bound;
}

/** Writes a short string (length octet, UTF-8) at `offset`; returns the offset after it. */
function writeShort(target: Buffer, offset: number, text: string): number {
  const n = target.write(text, offset + 1, 'utf8');
  target[offset] = n;
  return offset + 1 + n;
}

function writeUint32(target: Buffer, offset: number, value: number): void {
  target[offset] = value >>> 24;
  target[offset + 1] = (value >>> 16) & 0xff;
  target[offset + 2] = (value >>> 8) & 0xff;
  target[offset + 3] = value & 0xff;
}

/** Writes a header table of string values (checked by {@link tableBound}); returns the offset after it. */
function writeTable(target: Buffer, offset: number, headers: Record<string, unknown> | undefined): number {
  const start = offset;
  offset += 4;
  if (headers !== undefined) {
    for (const name in headers) {
      const value = headers[name];
      if (value === undefined) continue;
      offset = writeShort(target, offset, name);
      target[offset] = 0x53; // 'S': a long string
      const n = target.write(value as string, offset + 5, 'utf8');
      writeUint32(target, offset + 1, n);
      offset += 5 + n;
    }
  }
  writeUint32(target, start, offset - start - 4);
  return offset;
}

/**
 * Writes publishes of outbox rows on one amqplib confirm channel as ready-made frames, gathered
 * into slabs and handed to the channel's write buffer a slab at a time: the bytes on the wire are
 * those of amqplib's `publish(exchange, routingKey, body, { messageId, type, contentType,
 * timestamp, persistent: true, mandatory: true, headers })`, and each publish's confirm callback is
 * registered with the channel in publish order, so acks, nacks, returns and a closing channel
 * reach it exactly as they reach one of amqplib's. What is gathered is written at the latest in a
 * microtask (before any `await` of the caller resumes), or by {@link flush}.
 */
export class FrameWriter {
  readonly #channel: ChannelInternals;
  readonly #maxBody: number;
  #slab: Buffer = Buffer.alloc(0);
  /** Where the gathered publishes start in the slab, and where the next one goes. */
  #start = 0;
  #end = 0;
  #callbacks: ConfirmCallback[] = [];
  #scheduled = false;
  readonly #flushLater = (): void => {
    this.#scheduled = false;
    this.flush();
  };
  /** The method frame of the last exchange and routing key. */
  #method: Buffer | undefined;
  #methodExchange = '';
  #methodRoutingKey = '';

  private constructor(channel: ChannelInternals) {
    this.#channel = channel;
    this.#maxBody = channel.connection.frameMax - FRAME_OVERHEAD;
  }

  /**
   * A writer for `channel`, or undefined when it is not an amqplib channel of the expected shape
   * (its publishes then go through amqplib's `publish`).
   */
  static for(channel: object): FrameWriter | undefined {
    const c = channel as Partial<ChannelInternals>;
    const connection = c.connection;
    if (typeof c.ch !== 'number' || typeof c.pushConfirmCallback !== 'function' || connection === undefined || connection === null) return undefined;
    if (!Array.isArray(connection.channels) || typeof connection.frameMax !== 'number' || !(connection.frameMax > FRAME_OVERHEAD)) return undefined;
    const slot = connection.channels[c.ch];
    if (slot === null || slot === undefined || slot.channel !== channel || typeof slot.buffer?.write !== 'function') return undefined;
    return new FrameWriter(channel as ChannelInternals);
  }

  /** True while the channel can take publishes (amqplib has neither closed nor started to close it). */
  #open(): boolean {
    const c = this.#channel;
    return c.connection.channels[c.ch]?.channel === c && !Object.hasOwn(c, 'sendMessage');
  }

  /**
   * Gathers the publish of `row` (its payload is `bodyBytes` bytes of UTF-8) with `headers`, its
   * confirm going to `done`; `into`, when given, learns where the body was written. Returns undefined when this publish is not one a FrameWriter writes
   * (nothing was gathered: publish it through amqplib after {@link flush}); else false when the
   * channel's write buffer is full (wait for its `drain`), true otherwise.
   */
  add(row: OutboxRow, bodyBytes: number, headers: Record<string, unknown> | undefined, done: ConfirmCallback, into?: FramedBody): boolean | undefined {
    if (bodyBytes > this.#maxBody || !this.#open()) return undefined;
    const timestamp = Math.floor(row.occurred_ms / 1000);
    if (!Number.isSafeInteger(timestamp) || timestamp < 0) return undefined;
    const exchange = shortLength(row.exchange);
    const routingKey = shortLength(row.routing_key);
    const messageId = shortLength(row.message_id);
    const type = shortLength(row.type);
    const table = tableBound(headers);
    if (exchange < 0 || routingKey < 0 || messageId < 0 || type < 0 || table < 0) return undefined;
    // method (17 + names) + header (22 + properties) + body (8 + payload)
    const bound = 17 + exchange + routingKey + 22 + 1 + CONTENT_TYPE_BYTES.length + table + 1 + 1 + messageId + 8 + 1 + type + FRAME_OVERHEAD + bodyBytes;
    let written = true;
    if (this.#end + bound > this.#slab.length) {
      written = this.flush();
      this.#slab = Buffer.allocUnsafeSlow(Math.max(SLAB_BYTES, bound));
      this.#start = 0;
      this.#end = 0;
    }
    const slab = this.#slab;
    const ch = this.#channel.ch;
    let o = this.#end;
    // Method frame: basic.publish (ticket 0, exchange, routing key, mandatory).
    if (this.#method === undefined || row.exchange !== this.#methodExchange || row.routing_key !== this.#methodRoutingKey) {
      this.#method = encodeMethod(ch, row.exchange, row.routing_key);
      this.#methodExchange = row.exchange;
      this.#methodRoutingKey = row.routing_key;
    }
    slab.set(this.#method, o);
    o += this.#method.length;
    // Header frame: class, weight, body size, property flags, the properties in flag order.
    const header = o;
    slab[o] = FRAME_HEADER;
    slab[o + 1] = ch >>> 8;
    slab[o + 2] = ch & 0xff;
    writeUint32(slab, o + 7, BASIC_HEADER);
    writeUint32(slab, o + 11, Math.floor(bodyBytes / TWO_32));
    writeUint32(slab, o + 15, bodyBytes >>> 0);
    slab[o + 19] = PROPERTY_FLAGS >>> 8;
    slab[o + 20] = PROPERTY_FLAGS & 0xff;
    o += 21;
    slab[o] = CONTENT_TYPE_BYTES.length;
    slab.set(CONTENT_TYPE_BYTES, o + 1);
    o += 1 + CONTENT_TYPE_BYTES.length;
    o = writeTable(slab, o, headers);
    slab[o++] = PERSISTENT;
    o = writeShort(slab, o, row.message_id);
    writeUint32(slab, o, Math.floor(timestamp / TWO_32));
    writeUint32(slab, o + 4, timestamp >>> 0);
    o = writeShort(slab, o + 8, row.type);
    writeUint32(slab, header + 3, o - header - 7);
    slab[o++] = FRAME_END;
    // Body frame (none for an empty body, as amqplib does).
    if (bodyBytes > 0) {
      slab[o] = FRAME_BODY;
      slab[o + 1] = ch >>> 8;
      slab[o + 2] = ch & 0xff;
      writeUint32(slab, o + 3, bodyBytes);
      const n = slab.write(row.payload, o + 7, 'utf8');
      if (n !== bodyBytes) throw new Error(`payload encoded to ${n} bytes, expected ${bodyBytes}`);
      if (into !== undefined) {
        into.slab = slab;
        into.bodyAt = o + 7;
      }
      o += 7 + n;
      slab[o++] = FRAME_END;
    }
    this.#end = o;
    this.#callbacks.push(done);
    if (!this.#scheduled) {
      this.#scheduled = true;
      queueMicrotask(this.#flushLater);
    }
    return written;
  }

  /**
   * Writes what was gathered to the channel's write buffer as one chunk and registers its
   * confirm callbacks; returns false when the buffer is now full. On a channel that closed
   * meanwhile nothing is written and each gathered publish fails at once.
   */
  flush(): boolean {
    if (this.#end === this.#start) return true;
    const chunk = this.#slab.subarray(this.#start, this.#end);
    const callbacks = this.#callbacks;
    this.#start = this.#end;
    this.#callbacks = [];
    if (!this.#open()) {
      const closed = new Error('Channel closed');
      for (const done of callbacks) done(closed);
      return true;
    }
    const c = this.#channel;
    c.connection.sentSinceLastCheck = true;
    const slot = c.connection.channels[c.ch] as { buffer: { write(chunk: Buffer): boolean } };
    const written = slot.buffer.write(chunk);
    for (const done of callbacks) c.pushConfirmCallback(done);
    return written;
  }
}

/** The basic.publish method frame on channel `ch` (ticket 0, mandatory, not immediate). */
function encodeMethod(ch: number, exchange: string, routingKey: string): Buffer {
  const frame = Buffer.alloc(17 + Buffer.byteLength(exchange, 'utf8') + Buffer.byteLength(routingKey, 'utf8'));
  frame[0] = FRAME_METHOD;
  frame[1] = ch >>> 8;
  frame[2] = ch & 0xff;
  writeUint32(frame, 7, BASIC_PUBLISH);
  // ticket 0 at 11..12
  let o = writeShort(frame, 13, exchange);
  o = writeShort(frame, o, routingKey);
  frame[o++] = 1; // bits: mandatory
  writeUint32(frame, 3, o - 7);
  frame[o] = FRAME_END;
  return frame;
}
