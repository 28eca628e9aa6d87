import { describeError } from '@mailroom/core';

/**
 * How a handler failed, which decides where the delivery goes: `invalidPayload` and
 * `nonRetryable` to the dead letters at once, `transient` through the retry policy, `aborted`
 * (stop() gave up on it) back to the queue without using an attempt.
 */
export type HandlerFailureKind = 'invalidPayload' | 'nonRetryable' | 'transient' | 'aborted';

/**
 * A failure of the message or its handler, as opposed to one of mailroom's own database or
 * broker work (anything that is not a HandlerFailure is treated as an outage and requeued).
 */
export class HandlerFailure extends Error {
  /** Wraps `original`, the error the contract or the handler threw. */
  constructor(
    readonly original: unknown,
    readonly kind: HandlerFailureKind,
  ) {
    super(describeError(original));
  }
}

/**
 * True for an integrity (23xxx) or serialization (40xxx) error: raised at COMMIT (a deferred
 * constraint, a conflict with another transaction), it comes from what the handler wrote, so it
 * follows the retry policy instead of being requeued forever as if the database were down.
 */
export function isHandlerSqlState(error: unknown): boolean {
  const code = typeof error === 'object' && error !== null ? (error as { code?: unknown }).code : undefined;
  return typeof code === 'string' && /^(23|40)[0-9A-Z]{3}$/.test(code);
}

/**
 * True when `error` (or one of a few `cause`s under it, for a library that wraps the driver's
 * error) is SQLSTATE 40P01 (deadlock detected) or 40001 (serialization failure): PostgreSQL
 * undid the transaction because of what other transactions held at that moment, not because of
 * the message. Run again at once, it usually goes through.
 */
export function isLockConflict(error: unknown): boolean {
  let current: unknown = error instanceof HandlerFailure ? error.original : error;
  for (let depth = 0; depth < 5 && typeof current === 'object' && current !== null; depth++) {
    const code = (current as { code?: unknown }).code;
    if (code === '40P01' || code === '40001') return true;
    current = (current as { cause?: unknown }).cause;
  }
  return false;
}

// 22021 character_not_in_repertoire (a NUL byte in text), 22P05 untranslatable_character (`\u0000`
// in jsonb): PostgreSQL cannot store a character of what it was given, on any try.
const REFUSED_CHARACTER = new Set(['22021', '22P05']);

/**
 * The SQLSTATE when PostgreSQL refused a character the handler tried to store (NUL in a string of
 * the payload, typically), looking through a few `cause`s (a library may wrap the driver's
 * error); otherwise undefined. Another attempt would be refused the same way: the message is an
 * invalid payload, not a transient failure.
 */
export function refusedCharacterState(error: unknown): string | undefined {
  let current: unknown = error;
  for (let depth = 0; depth < 5 && typeof current === 'object' && current !== null; depth++) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === 'string' && REFUSED_CHARACTER.has(code)) return code;
    current = (current as { cause?: unknown }).cause;
  }
  return undefined;
}
