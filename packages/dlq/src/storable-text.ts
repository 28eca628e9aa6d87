// What PostgreSQL refuses in `text` and `jsonb`, and how the sink makes any value storable.
// `text` refuses U+0000 (22021); `jsonb` refuses the escape `\u0000` and unpaired surrogates
// (22P05, 22P02). amqplib hands over whatever bytes a sender put in a type, a header name or
// value: the sink replaces each such character with U+FFFD, the way a UTF-8 decoder replaces
// bytes it cannot read, and says so in the row.

/** NUL, a high surrogate not followed by a low one, or a low surrogate not after a high one. */
const UNSTORABLE = /\u0000|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
const UNSTORABLE_ALL = new RegExp(UNSTORABLE.source, 'g');

/** The character that stands for each character PostgreSQL cannot store. */
export const REPLACEMENT = '\uFFFD';

/** True when `text` holds a character PostgreSQL's `text` or `jsonb` refuses. */
export function hasUnstorable(text: string): boolean {
  return UNSTORABLE.test(text);
}

/** `text` with every NUL and unpaired surrogate replaced by U+FFFD. */
export function storableText(text: string): string {
  return hasUnstorable(text) ? text.replace(UNSTORABLE_ALL, REPLACEMENT) : text;
}

/** `text` cut to at most `maxChars` characters, without splitting a surrogate pair. */
export function cutText(text: string, maxChars: number): string {
  if (text.length <= maxChars) return text;
  const end = /[\uD800-\uDBFF]/.test(text.charAt(maxChars - 1)) ? maxChars - 1 : maxChars;
  return text.slice(0, end);
}

/** What {@link storableJsonValue} did to a value. */
export interface JsonRepair {
  /** A name or text had a character replaced. */
  replacedNames: boolean;
  replacedValues: boolean;
  /** Something sat deeper than the limit and was replaced by a marker. */
  cutDeep: boolean;
}

/**
 * A copy of a header value (AMQP field tables, arrays, text, numbers, byte arrays) that
 * `JSON.stringify` and `jsonb` both accept: text repaired, names too, nothing deeper than
 * `maxDepth` levels (a marker instead), BigInts as text. Bounded by the input's size.
 */
export function storableJsonValue(value: unknown, maxDepth: number, repair: JsonRepair, depth = 0): unknown {
  if (typeof value === 'string') {
    if (!hasUnstorable(value)) return value;
    repair.replacedValues = true;
    return storableText(value);
  }
  if (typeof value === 'bigint') return value.toString();
  if (value === null || typeof value !== 'object') return value;
  // Byte arrays serialise as {type, data: [numbers]}; dates as ISO text: both storable.
  if (Buffer.isBuffer(value) || value instanceof Date) return value;
  if (depth >= maxDepth) {
    repair.cutDeep = true;
    return `[nested deeper than ${maxDepth} levels: left out]`;
  }
  if (Array.isArray(value)) return value.map((v) => storableJsonValue(v, maxDepth, repair, depth + 1));
  const entries = Object.entries(value);
  // A repaired name never takes the place of a name that arrived as it is: it gets U+FFFD added.
  const taken = new Set(entries.map(([name]) => name).filter((name) => !hasUnstorable(name)));
  const out: Record<string, unknown> = {};
  for (const [name, v] of entries) {
    let key = name;
    if (!taken.has(name)) {
      repair.replacedNames = true;
      key = storableText(name);
      while (taken.has(key)) key += REPLACEMENT;
      taken.add(key);
    }
    out[key] = storableJsonValue(v, maxDepth, repair, depth + 1);
  }
  return out;
}

/**
 * Why `jsonb` would refuse a parsed JSON payload (a NUL or an unpaired surrogate in a string or
 * a name, or nesting deeper than `maxDepth`), or null when it can hold it. Iterative, so a
 * payload nested a million levels deep costs its size and no stack.
 */
export function jsonbProblem(payload: unknown, maxDepth: number): string | null {
  const stack: Array<{ value: unknown; depth: number }> = [{ value: payload, depth: 0 }];
  while (stack.length > 0) {
    const { value, depth } = stack.pop() as { value: unknown; depth: number };
    if (typeof value === 'string') {
      if (hasUnstorable(value)) return 'it holds a NUL character or an unpaired surrogate, which jsonb cannot store';
      continue;
    }
    if (value === null || typeof value !== 'object') continue;
    if (depth >= maxDepth) return `it is nested deeper than ${maxDepth} levels`;
    if (Array.isArray(value)) {
      for (const v of value) stack.push({ value: v, depth: depth + 1 });
      continue;
    }
    for (const [name, v] of Object.entries(value)) {
      if (hasUnstorable(name)) return 'a name in it holds a NUL character or an unpaired surrogate, which jsonb cannot store';
      stack.push({ value: v, depth: depth + 1 });
    }
  }
  return null;
}
