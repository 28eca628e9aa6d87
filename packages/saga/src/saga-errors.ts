import { NonRetryableError } from '@mailroom/inbox';

/**
 * Thrown by a step whose message found no instance and may not start one: its start may still be
 * on its way, so the consumer retries it through its retry policy (delay queues) and, when the
 * attempts run out, dead-letters it (reason `max-attempts`), from where it can be replayed.
 * Not a `NonRetryableError` on purpose.
 */
export class SagaNotStartedError extends Error {
  override name = 'SagaNotStartedError';

  /** Says which saga, instance and message type found nothing. */
  constructor(
    readonly saga: string,
    readonly id: string,
    readonly type: string,
  ) {
    super(`Saga "${saga}" has no instance ${JSON.stringify(id)} for a "${type}" message, whose step does not start one (it may not have been started yet): retried, then dead-lettered.`);
  }
}

/** True when `error` is a {@link SagaNotStartedError}, by name so it works across package copies. */
export function isSagaNotStartedError(error: unknown): error is SagaNotStartedError {
  return typeof error === 'object' && error !== null && (error as { name?: unknown }).name === 'SagaNotStartedError';
}

const MAX_ISSUES = 10;

/** zod's issues as `path: message` lines, at most ten (a huge state must not make a huge dead letter). */
export function describeIssues(issues: ReadonlyArray<{ path: ReadonlyArray<PropertyKey>; message: string }>): string {
  const shown = issues.slice(0, MAX_ISSUES).map((i) => `${i.path.length > 0 ? i.path.map(String).join('.') : '(state)'}: ${i.message}`);
  const more = issues.length > MAX_ISSUES ? `; and ${issues.length - MAX_ISSUES} more` : '';
  return `${shown.join('; ')}${more}`;
}

/** A message that can never be applied: it goes to the dead letters at once, the instance unchanged. */
export function stepRefused(saga: string, type: string, why: string, cause?: unknown): NonRetryableError {
  return new NonRetryableError(`Saga "${saga}", "${type}" message: ${why}`, cause === undefined ? undefined : { cause });
}

/** A short JSON rendering of a value that may be hostile (long, binary): for error messages. */
export function shortJson(value: unknown, max = 80): string {
  let text: string;
  try {
    text = typeof value === 'string' ? JSON.stringify(value) : (JSON.stringify(value) ?? String(value));
  } catch {
    text = Object.prototype.toString.call(value);
  }
  return text.length > max ? `${text.slice(0, max)}… (${text.length} characters)` : text;
}
