/** The longest instance id, in characters. */
export const MAX_INSTANCE_ID_LENGTH = 200;

// C0 and C1 control characters and DEL: PostgreSQL refuses NUL in text, and the others would
// reach an operator's terminal through `mailroom saga list`.
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/**
 * Why `id` cannot be an instance id, or undefined when it can: a string of 1 to 200 characters,
 * well-formed UTF-16 (a lone surrogate would be stored as U+FFFD and merge two instances), no
 * control characters.
 */
export function instanceIdProblem(id: unknown): string | undefined {
  if (typeof id !== 'string') return `it must be a string (got ${id === null ? 'null' : typeof id})`;
  if (id.length === 0) return 'it is empty';
  if (id.length > MAX_INSTANCE_ID_LENGTH) return `it has ${id.length} characters (at most ${MAX_INSTANCE_ID_LENGTH})`;
  if (LONE_SURROGATE.test(id)) return 'it has a lone surrogate (not valid Unicode)';
  if (CONTROL.test(id)) return 'it has a control character (NUL, a line break, an escape…)';
  return undefined;
}
