import { MailroomError, isUuid, type OutgoingMessage } from '@mailroom/core';
import { RESERVED_HEADER_PREFIX, TRACE_CONTEXT_RESERVE_BYTES, checkPublishLimits, encodeOutboxHeaders, isReservedHeader } from '@mailroom/core/internal';

function refuse(problem: string): never {
  throw new MailroomError('INVALID_MESSAGE', `Cannot enqueue message: ${problem}. Build messages with contract.create(payload).`);
}

/**
 * Checks the shape of a message before anything is stored: `contract.create` builds valid ones,
 * but `enqueue` also takes plain objects (a replay, a hand-built message), and those must not
 * carry what the relay could never publish or what belongs to mailroom. Headers must be a
 * plain object of strings, none of them named with the reserved prefix (`x-mailroom-`, any
 * case): those carry the retry state, the origin and the seal, which only mailroom may write.
 * Text fields may not hold NUL, which PostgreSQL's text and jsonb refuse.
 */
export function checkOutgoingMessage(m: OutgoingMessage): void {
  if (typeof m !== 'object' || m === null) refuse('it is not an object');
  if (!isUuid(m.messageId)) refuse(`messageId ${JSON.stringify(m.messageId)} is not a UUID`);
  if (typeof m.type !== 'string' || m.type === '') refuse('type is missing');
  if (typeof m.exchange !== 'string' || typeof m.routingKey !== 'string') refuse('exchange or routingKey is missing');
  if (m.key !== null && m.key !== undefined && typeof m.key !== 'string') refuse('key must be a string or null');
  if (m.payload === undefined) refuse('payload is undefined');
  if (!(m.occurredAt instanceof Date) || Number.isNaN(m.occurredAt.getTime())) refuse('occurredAt is not a valid Date');
  const headers: unknown = m.headers ?? {};
  if (typeof headers !== 'object' || headers === null || Array.isArray(headers)) refuse('headers must be an object of strings');
  for (const [name, value] of Object.entries(headers as Record<string, unknown>)) {
    if (isReservedHeader(name)) refuse(`header "${name}" is reserved: names starting with ${RESERVED_HEADER_PREFIX} belong to mailroom`);
    if (typeof value !== 'string') refuse(`header "${name}" is a ${value === null ? 'null' : typeof value}, not a string`);
    if (name.includes('\u0000') || value.includes('\u0000')) refuse(`header "${name.replaceAll('\u0000', '\\u0000')}" contains NUL`);
  }
  for (const [field, value] of [
    ['type', m.type],
    ['exchange', m.exchange],
    ['routingKey', m.routingKey],
    ['key', m.key ?? ''],
  ] as const) {
    if (value.includes('\u0000')) refuse(`${field} contains NUL`);
  }
}

/**
 * Checks that the relay will be able to publish the message with these stored headers (trace
 * context included): the AMQP short-string limits and the 64 KiB header table, counting the
 * headers the relay adds (occurred-at, key, room for its publish span's `traceparent`). Throws
 * `INVALID_MESSAGE` naming the field.
 */
export function checkPublishable(m: OutgoingMessage, storedHeaders: Record<string, string>): void {
  const headers = encodeOutboxHeaders({ ...storedHeaders }, { key: m.key ?? null, occurredAtMs: m.occurredAt.getTime() });
  checkPublishLimits({
    exchange: m.exchange,
    routingKey: m.routingKey,
    type: m.type,
    messageId: m.messageId,
    headers,
    reserveHeaderBytes: TRACE_CONTEXT_RESERVE_BYTES,
  });
}
