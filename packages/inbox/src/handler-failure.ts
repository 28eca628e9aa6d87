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
