/**
 * Thrown by a handler for a failure that another attempt cannot fix (a business rule says no,
 * a referenced record will never exist): the message goes to the dead letters at once instead of
 * being retried.
 */
export class NonRetryableError extends Error {
  override name = 'NonRetryableError';
}

/** True when `error` is a {@link NonRetryableError}, by name so it works across package copies. */
export function isNonRetryableError(error: unknown): boolean {
  return typeof error === 'object' && error !== null && (error as { name?: unknown }).name === 'NonRetryableError';
}
