// The depth scan the validation ladder runs before parsing (issue 9, defect 11): one pass over
// the bytes, strings and escapes skipped, no recursion whatever the depth.
import { describe, expect, it } from 'vitest';
import { exceedsJsonDepth } from '../src/json-depth.js';

const over = (text: string, max: number): boolean => exceedsJsonDepth(Buffer.from(text), max);

describe('exceedsJsonDepth', () => {
  it('counts objects and arrays, not scalars', () => {
    expect(over('1', 0)).toBe(false);
    expect(over('{"a":[1,{"b":[]}]}', 4)).toBe(false);
    expect(over('{"a":[1,{"b":[]}]}', 3)).toBe(true);
    expect(over('[[],[],[]]', 2)).toBe(false);
  });

  it('skips brackets inside strings, with escaped quotes and backslashes', () => {
    expect(over('{"a":"[[[[{{{{"}', 1)).toBe(false);
    expect(over('{"a":"\\"[[[["}', 1)).toBe(false);
    // An escaped backslash ends the escape: the quote after it closes the string.
    expect(over('{"a":"\\\\"}', 1)).toBe(false);
    expect(over('{"a":"\\\\","b":[[]]}', 2)).toBe(true);
    expect(over('{"\\u005b\\u005b":"x"}', 1)).toBe(false);
  });

  it('is bounded on hostile input: a million levels, unterminated strings, stray closers', () => {
    const deep = Buffer.alloc(1_000_000, '[');
    expect(exceedsJsonDepth(deep, 64)).toBe(true);
    expect(over('"never closed [[[[[', 1)).toBe(false);
    expect(over(']]]]]][[', 1)).toBe(false);
    expect(over(`${'['.repeat(64)}${']'.repeat(64)}`, 64)).toBe(false);
    expect(over(`${'['.repeat(65)}${']'.repeat(65)}`, 64)).toBe(true);
  });
});
