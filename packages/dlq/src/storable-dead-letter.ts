import type { DecodedDeadLetter } from '@mailroom/core/internal';
import { STORED_CHANGES_HEADER } from '@mailroom/core/internal';
import type { NewDeadLetter } from './dead-letter.js';
import { cutText, hasUnstorable, jsonbProblem, storableJsonValue, storableText, type JsonRepair } from './storable-text.js';

/** The longest error text stored (a consumer sends at most 4000 characters; a forger anything). */
const MAX_ERROR_CHARS = 8000;
/** AMQP short strings (queue, exchange, routing key, type) hold at most 255 bytes. */
const MAX_NAME_CHARS = 255;
/** Header tables nested deeper than this are cut (jsonb and JSON.stringify recurse). */
const MAX_HEADER_DEPTH = 16;
/** A JSON body nested deeper than this is kept raw instead of as jsonb. */
const MAX_PAYLOAD_DEPTH = 100;
/** How many left-out header names a change note lists. */
const NAMES_IN_NOTE = 10;
const utf8 = new TextDecoder('utf-8', { fatal: true });

/** The sink's size limits (see the sink options `maxBodyBytes` and `maxHeaderBytes`). */
export interface SinkLimits {
  maxBodyBytes: number;
  maxHeaderBytes: number;
}

/** The kinds of change the sink makes to store a dead letter (the `change` label of its metric). */
export type StoreChangeKind = 'replaced' | 'truncated' | 'left_out' | 'raw_payload' | 'minimal';

/** Every {@link StoreChangeKind}. */
export const STORE_CHANGE_KINDS: readonly StoreChangeKind[] = ['replaced', 'truncated', 'left_out', 'raw_payload', 'minimal'];

/** A dead letter ready for the store, and what was changed to make it storable. */
export interface StorableDeadLetter {
  deadLetter: NewDeadLetter & { changes: string[] };
  /** The kinds of change made (empty: stored as received). */
  kinds: Set<StoreChangeKind>;
  /** The error as received, made storable, before the note of the changes. */
  error: string | null;
}

/** Adds the changes to the error text, so that whoever reads only the error learns of them. */
function errorWithChanges(error: string | null, changes: readonly string[]): string | null {
  if (changes.length === 0) return error;
  const note = `[stored with changes: ${changes.join('; ')}]`;
  return error === null || error === '' ? note : `${error} ${note}`;
}

/**
 * The dead letter the sink stores for a message read from the dead-letter queue: every text made
 * storable (NUL and unpaired surrogates replaced by U+FFFD), the body kept raw in `bytea` and cut
 * at `maxBodyBytes`, headers kept in order while they fit `maxHeaderBytes`, a key longer than that
 * left out, a JSON payload that jsonb cannot hold kept as the raw body. Each change is listed in
 * `changes` (stored with the headers and appended to the error): a changed dead letter is not the
 * message that failed, so a replay refuses it. Costs time proportional to the message's size.
 */
export function storableDeadLetter(decoded: Omit<DecodedDeadLetter, 'sealed'>, content: Buffer, limits: SinkLimits): StorableDeadLetter {
  const changes: string[] = [];
  const kinds = new Set<StoreChangeKind>();
  const note = (kind: StoreChangeKind, text: string): void => {
    kinds.add(kind);
    changes.push(text);
  };
  const text = (field: string, value: string | null, maxChars: number): string | null => {
    if (value === null) return null;
    let out = value;
    if (hasUnstorable(out)) {
      out = storableText(out);
      note('replaced', `${field}: NUL or unpaired surrogate replaced by U+FFFD`);
    }
    if (out.length > maxChars) {
      out = cutText(out, maxChars);
      note('truncated', `${field}: ${value.length} characters, cut to ${maxChars}`);
    }
    return out;
  };
  const source = text('source', decoded.source, MAX_NAME_CHARS) as string;
  const reason = text('reason', decoded.reason, MAX_NAME_CHARS) as string;
  const type = text('type', decoded.type, MAX_NAME_CHARS);
  const exchange = text('exchange', decoded.exchange, MAX_NAME_CHARS);
  const routingKey = text('routing key', decoded.routingKey, MAX_NAME_CHARS);
  let key = text('key', decoded.key, Number.MAX_SAFE_INTEGER);
  if (key !== null && Buffer.byteLength(key) > limits.maxHeaderBytes) {
    note('left_out', `key: ${Buffer.byteLength(key)} bytes, over maxHeaderBytes (${limits.maxHeaderBytes}): left out`);
    key = null;
  }
  const headers = storableHeaders(decoded.headers, limits.maxHeaderBytes, note);
  const { payload, body } = storableBody(content, limits.maxBodyBytes, note);
  let attempts = decoded.attempts;
  if (!Number.isInteger(attempts) || attempts < 0 || attempts > 2_147_483_647) {
    attempts = Number.isFinite(attempts) ? Math.min(Math.max(Math.trunc(attempts), 0), 2_147_483_647) : 0;
    note('truncated', `attempts: ${String(decoded.attempts)} is out of range: ${attempts} stored`);
  }
  let failedAt = decoded.failedAt;
  const now = Date.now();
  if (!(failedAt.getTime() >= Date.UTC(2000, 0, 1) && failedAt.getTime() <= now + 86_400_000)) {
    note('truncated', `failed at: ${Number.isNaN(failedAt.getTime()) ? 'invalid' : failedAt.toISOString()} is not plausible: the time it was stored is used`);
    failedAt = new Date(now);
  }
  const error = text('error', decoded.error, MAX_ERROR_CHARS);
  const deadLetter: StorableDeadLetter['deadLetter'] = {
    messageId: decoded.messageId,
    source,
    reason,
    error: errorWithChanges(error, changes),
    attempts,
    failedAt,
    type,
    exchange,
    routingKey,
    key,
    headers,
    body,
    changes,
  };
  if (payload !== undefined) deadLetter.payload = payload;
  return { deadLetter, kinds, error };
}

/**
 * The smallest row that still says what failed and keeps the body: for a dead letter the store
 * refused in full (a rule of the database the sink cannot know, say). No type, destination, key,
 * headers or JSON payload; the refusal is the first change listed.
 */
export function minimalDeadLetter(full: StorableDeadLetter, refusal: string): StorableDeadLetter {
  const changes = [`stored minimally: the store refused the full row (${cutText(storableText(refusal), 500)})`, ...full.deadLetter.changes];
  const d = full.deadLetter;
  return {
    deadLetter: {
      messageId: d.messageId,
      source: d.source,
      reason: d.reason,
      error: errorWithChanges(full.error, changes),
      attempts: d.attempts ?? 0,
      failedAt: d.failedAt ?? new Date(),
      type: null,
      exchange: null,
      routingKey: null,
      key: null,
      headers: {},
      body: d.body ?? null,
      changes,
    },
    kinds: new Set([...full.kinds, 'minimal']),
    error: full.error,
  };
}

type Note = (kind: StoreChangeKind, text: string) => void;

/** Headers made storable, then kept in their order while they fit the budget (their JSON text). */
function storableHeaders(received: Record<string, unknown>, budget: number, note: Note): Record<string, unknown> {
  const repair: JsonRepair = { replacedNames: false, replacedValues: false, cutDeep: false };
  const { [STORED_CHANGES_HEADER]: _theirs, ...rest } = received;
  const repaired = storableJsonValue(rest, MAX_HEADER_DEPTH, repair) as Record<string, unknown>;
  if (repair.replacedNames) note('replaced', 'header names: NUL or unpaired surrogate replaced by U+FFFD');
  if (repair.replacedValues) note('replaced', 'header values: NUL or unpaired surrogate replaced by U+FFFD');
  if (repair.cutDeep) note('left_out', `header values: nested deeper than ${MAX_HEADER_DEPTH} levels: left out`);
  const kept: Record<string, unknown> = {};
  const leftOut: string[] = [];
  let used = 2; // {}
  const entries = Object.entries(repaired);
  for (const [name, value] of entries) {
    const json = JSON.stringify(value) as string | undefined;
    if (json === undefined) continue;
    const size = Buffer.byteLength(JSON.stringify(name)) + 1 + Buffer.byteLength(json) + (used > 2 ? 1 : 0);
    if (used + size > budget) {
      leftOut.push(name);
      continue;
    }
    kept[name] = value;
    used += size;
  }
  if (leftOut.length > 0) {
    const names = leftOut.slice(0, NAMES_IN_NOTE).join(', ') + (leftOut.length > NAMES_IN_NOTE ? ', …' : '');
    note('left_out', `headers: ${leftOut.length} of ${entries.length} left out (over maxHeaderBytes ${budget}): ${names}`);
  }
  return kept;
}

/** The body: cut at the limit (then raw), else its JSON when jsonb can hold it, else raw. */
function storableBody(content: Buffer, maxBytes: number, note: Note): { payload: unknown; body: Buffer } {
  if (content.length > maxBytes) {
    note('truncated', `body: ${content.length} bytes, over maxBodyBytes (${maxBytes}): the first ${maxBytes} kept`);
    return { payload: undefined, body: content.subarray(0, maxBytes) };
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(utf8.decode(content)) as unknown;
  } catch {
    // Not UTF-8 JSON: the raw body is what there is.
    return { payload: undefined, body: content };
  }
  const problem = jsonbProblem(parsed, MAX_PAYLOAD_DEPTH);
  if (problem !== null) {
    note('raw_payload', `payload: ${problem}: kept as the raw body`);
    return { payload: undefined, body: content };
  }
  return { payload: parsed, body: content };
}
