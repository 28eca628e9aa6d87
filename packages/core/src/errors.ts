import { redactSecrets } from './redact.js';

/** Every error code mailroom raises. Callers branch on `code`, never on the message text. */
export type MailroomErrorCode =
  | 'INVALID_CONFIG'
  | 'INVALID_IDENTIFIER'
  | 'INVALID_PAYLOAD'
  | 'INVALID_MESSAGE'
  | 'UNSUPPORTED_EXECUTOR'
  // migrate() itself failed.
  | 'MIGRATION_FAILED'
  // mailroom's tables are missing or older than this code: run `mailroom migrate`.
  | 'NOT_MIGRATED'
  | 'NOT_CONNECTED'
  | 'PUBLISH_FAILED'
  | 'UNREACHABLE'
  | 'REPLAY_REFUSED'
  | 'STOPPED';

/** Options for {@link MailroomError}. */
export interface MailroomErrorOptions {
  /** The error that caused this one; its message is redacted the same way. */
  cause?: unknown;
  /** Machine-readable context a caller may need (never secrets). */
  details?: Record<string, unknown>;
}

/**
 * The one error class of mailroom. `code` says what went wrong; `details` carries the context.
 * Messages never contain passwords: any URL credentials are replaced by `***`.
 */
export class MailroomError extends Error {
  /** What went wrong, for callers that branch. */
  readonly code: MailroomErrorCode;
  /** Context for the caller, e.g. the offending keys or the message id. */
  readonly details: Record<string, unknown>;

  /** Creates an error with a code, a message (redacted) and optional context. */
  constructor(code: MailroomErrorCode, message: string, options: MailroomErrorOptions = {}) {
    super(redactSecrets(message), options.cause === undefined ? undefined : { cause: redactError(options.cause) });
    this.name = 'MailroomError';
    this.code = code;
    this.details = options.details ?? {};
  }
}

/** True when `error` is a MailroomError (by shape, so it works across package copies). */
export function isMailroomError(error: unknown, code?: MailroomErrorCode): error is MailroomError {
  return (
    typeof error === 'object' &&
    error !== null &&
    (error as { name?: unknown }).name === 'MailroomError' &&
    typeof (error as { code?: unknown }).code === 'string' &&
    (code === undefined || (error as { code: unknown }).code === code)
  );
}

/** A short, secret-free description of any thrown value, for logs and `last_error` columns. */
export function describeError(error: unknown): string {
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    const prefix = typeof code === 'string' || typeof code === 'number' ? `${error.name} [${String(code)}]` : error.name;
    return redactSecrets(`${prefix}: ${error.message}`);
  }
  return redactSecrets(String(error));
}

function redactError(cause: unknown): unknown {
  if (cause instanceof Error) {
    cause.message = redactSecrets(cause.message);
    if (typeof cause.stack === 'string') cause.stack = redactSecrets(cause.stack);
  }
  return cause;
}
