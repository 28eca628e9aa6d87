/**
 * Just enough of AMQP 0-9-1's framing for the harness to watch a link (the wire tap) and to
 * publish what amqplib refuses to encode (the raw publisher): frames, short and long strings,
 * field tables, and the content-header properties up to `message-id`.
 */

/** Frame types. */
export const FRAME = { method: 1, header: 2, body: 3, heartbeat: 8 } as const;
const FRAME_END = 0xce;

/** The protocol header a client sends first. */
export const PROTOCOL_HEADER = Buffer.from([0x41, 0x4d, 0x51, 0x50, 0, 0, 9, 1]);

/** A method or content-header frame as read from a stream (bodies and heartbeats are skipped). */
export interface Frame {
  type: number;
  channel: number;
  payload: Buffer;
}

/**
 * Cuts a byte stream into frames, one chunk at a time. Body frames are skipped without being
 * copied (a 100 MB body costs nothing here); method and header frames are handed to `onFrame`.
 */
export class FrameReader {
  #buffer: Buffer = Buffer.alloc(0);
  #skip = 0;
  #expectProtocolHeader: boolean;
  readonly #onFrame: (frame: Frame) => void;

  /** `clientSide`: the stream starts with the protocol header (a client's bytes to the server). */
  constructor(clientSide: boolean, onFrame: (frame: Frame) => void) {
    this.#expectProtocolHeader = clientSide;
    this.#onFrame = onFrame;
  }

  /** Feeds the next chunk of the stream. */
  push(chunk: Buffer): void {
    let data = chunk;
    if (this.#skip > 0) {
      const n = Math.min(this.#skip, data.length);
      this.#skip -= n;
      data = data.subarray(n);
      if (data.length === 0) return;
    }
    let buf = this.#buffer.length > 0 ? Buffer.concat([this.#buffer, data]) : data;
    if (this.#expectProtocolHeader) {
      if (buf.length < PROTOCOL_HEADER.length) {
        this.#buffer = Buffer.from(buf);
        return;
      }
      this.#expectProtocolHeader = false;
      // Anything else (a TLS handshake, say) is no AMQP this reader can follow.
      if (buf.subarray(0, 4).toString('latin1') !== 'AMQP') throw new Error('not an AMQP 0-9-1 stream');
      buf = buf.subarray(PROTOCOL_HEADER.length);
    }
    while (buf.length >= 7) {
      const type = buf.readUInt8(0);
      const channel = buf.readUInt16BE(1);
      const size = buf.readUInt32BE(3);
      const total = 7 + size + 1;
      if (type !== FRAME.method && type !== FRAME.header) {
        if (buf.length >= total) {
          buf = buf.subarray(total);
          continue;
        }
        this.#skip = total - buf.length;
        buf = Buffer.alloc(0);
        break;
      }
      if (buf.length < total) break;
      this.#onFrame({ type, channel, payload: buf.subarray(7, 7 + size) });
      buf = buf.subarray(total);
    }
    // Keep a copy: the chunk belongs to the stream and goes on to its destination.
    this.#buffer = buf.length > 0 ? Buffer.from(buf) : Buffer.alloc(0);
  }
}

/** A cursor over a frame payload. Reads past the end throw `RangeError`. */
export class PayloadReader {
  offset = 0;
  readonly payload: Buffer;

  constructor(payload: Buffer) {
    this.payload = payload;
  }

  u8(): number {
    const v = this.payload.readUInt8(this.offset);
    this.offset += 1;
    return v;
  }

  u16(): number {
    const v = this.payload.readUInt16BE(this.offset);
    this.offset += 2;
    return v;
  }

  u32(): number {
    const v = this.payload.readUInt32BE(this.offset);
    this.offset += 4;
    return v;
  }

  u64(): number {
    const v = Number(this.payload.readBigUInt64BE(this.offset));
    this.offset += 8;
    return v;
  }

  shortstr(): string {
    const n = this.u8();
    const v = this.payload.toString('utf8', this.offset, this.offset + n);
    this.offset += n;
    return v;
  }

  longstr(): Buffer {
    const n = this.u32();
    const v = this.payload.subarray(this.offset, this.offset + n);
    this.offset += n;
    return v;
  }
}

/** The content-header fields the harness reads: body size, message id and type. */
export interface ContentHeader {
  classId: number;
  bodySize: number;
  messageId: string | null;
  type: string | null;
}

/** Reads a content header frame's payload (the headers table is skipped, not parsed). */
export function readContentHeader(payload: Buffer): ContentHeader {
  const r = new PayloadReader(payload);
  const classId = r.u16();
  r.u16(); // weight
  const bodySize = r.u64();
  const flags = r.u16();
  let messageId: string | null = null;
  let type: string | null = null;
  if (flags & (1 << 15)) r.shortstr(); // content-type
  if (flags & (1 << 14)) r.shortstr(); // content-encoding
  if (flags & (1 << 13)) r.longstr(); // headers: a table is a long string of fields
  if (flags & (1 << 12)) r.u8(); // delivery-mode
  if (flags & (1 << 11)) r.u8(); // priority
  if (flags & (1 << 10)) r.shortstr(); // correlation-id
  if (flags & (1 << 9)) r.shortstr(); // reply-to
  if (flags & (1 << 8)) r.shortstr(); // expiration
  if (flags & (1 << 7)) messageId = r.shortstr();
  if (flags & (1 << 6)) r.u64(); // timestamp
  if (flags & (1 << 5)) type = r.shortstr();
  return { classId, bodySize, messageId, type };
}

/** A frame ready to write. */
export function encodeFrame(type: number, channel: number, payload: Buffer): Buffer {
  const head = Buffer.alloc(7);
  head.writeUInt8(type, 0);
  head.writeUInt16BE(channel, 1);
  head.writeUInt32BE(payload.length, 3);
  return Buffer.concat([head, payload, Buffer.from([FRAME_END])]);
}

/** An AMQP short string (at most 255 bytes). */
export function shortstr(text: string): Buffer {
  const bytes = Buffer.from(text, 'utf8');
  if (bytes.length > 255) throw new RangeError(`short string of ${bytes.length} bytes (at most 255)`);
  return Buffer.concat([Buffer.from([bytes.length]), bytes]);
}

/** An AMQP long string. */
export function longstr(bytes: Buffer | string): Buffer {
  const b = typeof bytes === 'string' ? Buffer.from(bytes, 'utf8') : bytes;
  const n = Buffer.alloc(4);
  n.writeUInt32BE(b.length, 0);
  return Buffer.concat([n, b]);
}

/** A field table of string values (type `S`), of any size: no 64 KiB encoding buffer here. */
export function stringTable(fields: Record<string, string>): Buffer {
  const parts: Buffer[] = [];
  for (const [name, value] of Object.entries(fields)) parts.push(shortstr(name), Buffer.from('S'), longstr(value));
  return longstr(Buffer.concat(parts));
}

/** Big-endian unsigned integers. */
export function u16(v: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(v, 0);
  return b;
}

export function u32(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(v, 0);
  return b;
}

export function u64(v: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(v), 0);
  return b;
}
