// amqplib encodes a publish before it writes anything or registers its confirm, and throws a
// `TypeError` or `RangeError` for what AMQP cannot carry (a short string over 255 bytes, a header
// table over its 64 KiB buffer). Retrying such a row would fail the same way forever, so the relay
// dead-letters it (publisher.ts); these predicates tell the broker's refusals apart.

/** True for what amqplib throws when it cannot encode a publish: the same row will fail the same way every time. */
export function isEncodingError(error: unknown): boolean {
  return error instanceof TypeError || error instanceof RangeError;
}

/** True for a channel closed by the broker with 406 PRECONDITION_FAILED (a body over `max_message_size`, say). */
export function isPreconditionFailed(error: unknown): boolean {
  if (error === undefined || error === null) return false;
  const code = (error as { code?: unknown }).code;
  const message = (error as { message?: unknown }).message;
  return code === 406 || (typeof message === 'string' && /PRECONDITION[_-]FAILED/.test(message));
}
