import { MailroomError } from './errors.js';

/**
 * What AMQP 0-9-1 (and amqplib's encoder) lets through in one publish. A message over any of
 * these can never be published: amqplib throws before anything reaches the broker, on every try.
 * `enqueue` checks them so the producer gets a clear error at once; the relay checks them again
 * before each publish (rows written by older versions or straight SQL) and dead-letters what is
 * over as `unpublishable`.
 */
export const PUBLISH_LIMITS = {
  /** A short string (exchange, routing key, type, message id, a header name): at most 255 bytes of UTF-8. */
  shortStringBytes: 255,
  /** The encoded header table: amqplib encodes it into a 64 KiB buffer. */
  headerTableBytes: 65_536,
} as const;

/** The parts of a publish the limits apply to. */
export interface PublishShape {
  exchange: string;
  routingKey: string;
  type: string;
  messageId: string;
  /** The header table exactly as it will be published (mailroom's own headers included). */
  headers: Record<string, unknown>;
  /**
   * Bytes of the header table kept free for what is added later: `enqueue` keeps
   * {@link TRACE_CONTEXT_RESERVE_BYTES} for the `traceparent` of the relay's publish span. Default: 0.
   */
  reserveHeaderBytes?: number;
}

/** Room for a `traceparent` header (1 + 11 + 1 + 4 + 55 bytes encoded), rounded up. */
export const TRACE_CONTEXT_RESERVE_BYTES = 128;

/**
 * The size of a field-table value as amqplib encodes it, in bytes (an upper bound for numbers,
 * which it may encode in fewer bytes). Counts the type tag.
 */
function valueBytes(value: unknown, depth: number): number {
  if (depth > 32) return Number.POSITIVE_INFINITY;
  if (typeof value === 'string') return 1 + 4 + Buffer.byteLength(value);
  if (Buffer.isBuffer(value)) return 1 + 4 + value.length;
  if (typeof value === 'number' || typeof value === 'bigint' || value instanceof Date) return 1 + 8;
  if (typeof value === 'boolean') return 1 + 1;
  if (value === null || value === undefined) return 1;
  if (Array.isArray(value)) return 1 + 4 + value.reduce<number>((sum, v) => sum + valueBytes(v, depth + 1), 0);
  if (typeof value === 'object') return 1 + tableBytes(value as Record<string, unknown>, depth + 1);
  // A symbol or a function: amqplib refuses it; counted as if it were its name.
  return 1 + 4 + Buffer.byteLength(typeof value === 'symbol' ? (value.description ?? '') : typeof value === 'function' ? value.name : '');
}

function tableBytes(table: Record<string, unknown>, depth: number): number {
  let total = 4;
  for (const [name, value] of Object.entries(table)) {
    if (value === undefined) continue;
    total += 1 + Buffer.byteLength(name) + valueBytes(value, depth);
  }
  return total;
}

/** The encoded size of a header table in bytes, as amqplib writes it (numbers counted at 8 bytes). */
export function encodedHeaderBytes(headers: Record<string, unknown>): number {
  return tableBytes(headers, 0);
}

/**
 * Why a publish of this shape can never go out, or undefined when it fits. The text names the
 * field, its size and the limit (it is stored as the dead letter's error).
 */
export function publishLimitProblem(shape: PublishShape): string | undefined {
  const max = PUBLISH_LIMITS.shortStringBytes;
  for (const [field, value] of [
    ['exchange', shape.exchange],
    ['routing key', shape.routingKey],
    ['type', shape.type],
    ['message id', shape.messageId],
  ] as const) {
    const bytes = Buffer.byteLength(value);
    if (bytes > max) return `the ${field} is ${bytes} bytes, over the AMQP limit of ${max}`;
  }
  for (const name of Object.keys(shape.headers)) {
    const bytes = Buffer.byteLength(name);
    if (bytes > max) return `header name ${JSON.stringify(name.slice(0, 40))}… is ${bytes} bytes, over the AMQP limit of ${max}`;
  }
  const headerBytes = encodedHeaderBytes(shape.headers);
  const reserve = shape.reserveHeaderBytes ?? 0;
  if (headerBytes + reserve > PUBLISH_LIMITS.headerTableBytes) {
    const room = reserve > 0 ? `, ${reserve} of them kept for the trace context` : '';
    return `the headers encode to ${Number.isFinite(headerBytes) ? headerBytes : 'more than'} bytes, over the limit of ${PUBLISH_LIMITS.headerTableBytes} (64 KiB, mailroom's own headers included${room})`;
  }
  return undefined;
}

/** Throws `MailroomError('INVALID_MESSAGE')` when a publish of this shape can never go out. */
export function checkPublishLimits(shape: PublishShape): void {
  const problem = publishLimitProblem(shape);
  if (problem !== undefined) {
    throw new MailroomError('INVALID_MESSAGE', `Message ${shape.messageId} can never be published: ${problem}.`, {
      details: { messageId: shape.messageId, type: shape.type.slice(0, 255) },
    });
  }
}
