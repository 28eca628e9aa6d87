// The repairs behind the sink's storable rows, without services: NUL and unpaired surrogates
// replaced, surrogate pairs kept, deep nesting bounded, and every change listed.
import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { DEAD_LETTER_REASON } from '@mailroom/core';
import { minimalDeadLetter, storableDeadLetter } from '../src/storable-dead-letter.js';
import { hasUnstorable, jsonbProblem, storableJsonValue, storableText } from '../src/storable-text.js';

const limits = { maxBodyBytes: 1024 * 1024, maxHeaderBytes: 64 * 1024 };

function decoded(fields: Partial<Parameters<typeof storableDeadLetter>[0]> = {}): Parameters<typeof storableDeadLetter>[0] {
  return {
    messageId: randomUUID(),
    source: 'billing',
    reason: DEAD_LETTER_REASON.maxAttempts,
    error: 'Error: x',
    attempts: 3,
    failedAt: new Date(),
    type: 'order.placed',
    exchange: 'orders',
    routingKey: 'order.placed',
    key: null,
    headers: {},
    ...fields,
  };
}

describe('storable text', () => {
  it('replaces NUL and unpaired surrogates by U+FFFD and keeps pairs', () => {
    expect(storableText('a\u0000b')).toBe('a\ufffdb');
    expect(storableText('\ud83d\ude00 ok')).toBe('\ud83d\ude00 ok');
    expect(storableText('x\ud83dy\ude00z\ud800')).toBe('x\ufffdy\ufffdz\ufffd');
    expect(hasUnstorable('plain')).toBe(false);
    // The replaced text is what PostgreSQL takes: JSON of it has no \u0000 and no lone \udXXX.
    expect(JSON.stringify(storableText('\u0000\udc00'))).toBe('"\ufffd\ufffd"');
  });

  it('finds what jsonb refuses in a payload nested 200,000 levels deep, without recursion', () => {
    const deep = JSON.parse('['.repeat(200_000) + ']'.repeat(200_000)) as unknown;
    expect(jsonbProblem(deep, 100)).toBe('it is nested deeper than 100 levels');
    expect(jsonbProblem({ a: ['x\u0000'] }, 100)).toMatch(/NUL/);
    expect(jsonbProblem({ 'k\ud800': 1 }, 100)).toMatch(/a name in it/);
    expect(jsonbProblem({ a: [1, { b: 'ok' }] }, 100)).toBeNull();
  });

  it('repairs header tables: names, values, nesting, BigInts, byte arrays', () => {
    const repair = { replacedNames: false, replacedValues: false, cutDeep: false };
    let nested: unknown = 'bottom';
    for (let i = 0; i < 40; i++) nested = { n: nested };
    const out = storableJsonValue({ 'a\u0000': 'v\u0000', 'a\ufffd': 'taken', big: 10n, bytes: Buffer.from([0, 1]), nested }, 16, repair) as Record<string, unknown>;
    expect(Object.keys(out)).toEqual(['a\ufffd\ufffd', 'a\ufffd', 'big', 'bytes', 'nested']);
    expect(out['a\ufffd\ufffd']).toBe('v\ufffd');
    expect(out.big).toBe('10');
    expect(JSON.stringify(out)).toContain('[nested deeper than 16 levels: left out]');
    expect(repair).toEqual({ replacedNames: true, replacedValues: true, cutDeep: true });
  });
});

describe('storableDeadLetter', () => {
  it('stores a clean message as received, with no changes', () => {
    const body = Buffer.from('{"a":1}');
    const { deadLetter, kinds } = storableDeadLetter(decoded(), body, limits);
    expect(kinds.size).toBe(0);
    expect(deadLetter).toMatchObject({ error: 'Error: x', payload: { a: 1 }, changes: [] });
  });

  it('lists each change, appends them to the error, and keeps the raw body when jsonb cannot hold the payload', () => {
    const body = Buffer.from('{"a":"\\u0000"}');
    const { deadLetter, kinds } = storableDeadLetter(
      decoded({ type: 'a\u0000', error: 'e\u0000', attempts: 1e12, failedAt: new Date('1960-01-01'), key: 'k\ud800' }),
      body,
      limits,
    );
    expect([...kinds].sort()).toEqual(['raw_payload', 'replaced', 'truncated']);
    expect(deadLetter.changes).toEqual([
      'type: NUL or unpaired surrogate replaced by U+FFFD',
      'key: NUL or unpaired surrogate replaced by U+FFFD',
      "payload: it holds a NUL character or an unpaired surrogate, which jsonb cannot store: kept as the raw body",
      'attempts: 1000000000000 is out of range: 2147483647 stored',
      'failed at: 1960-01-01T00:00:00.000Z is not plausible: the time it was stored is used',
      'error: NUL or unpaired surrogate replaced by U+FFFD',
    ]);
    expect(deadLetter.error).toBe(`e\ufffd [stored with changes: ${deadLetter.changes.join('; ')}]`);
    expect(deadLetter.payload).toBeUndefined();
    expect(deadLetter.body).toBe(body);
    const minimal = minimalDeadLetter({ deadLetter, kinds, error: 'e\ufffd' }, 'error [22023]: refused');
    expect(minimal.deadLetter).toMatchObject({ type: null, exchange: null, routingKey: null, key: null, headers: {}, body });
    expect(minimal.deadLetter.changes[0]).toBe('stored minimally: the store refused the full row (error [22023]: refused)');
    expect(minimal.kinds.has('minimal')).toBe(true);
  });
});
