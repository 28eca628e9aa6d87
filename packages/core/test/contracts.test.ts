// Versioned contracts and Standard Schema validators, without a broker or a database: the upcast
// chain, what each failure says, the version header's reading of hostile values, and the types.
import { type } from 'arktype';
import * as v from 'valibot';
import { describe, expect, expectTypeOf, it } from 'vitest';
import { z } from 'zod';
import { z as z4 } from 'zod/v4';
import { MAX_CONTRACT_VERSION, defineMessage, isMessageContract, type PayloadOf, type StandardSchemaV1 } from '@mailroom/core';
import { readVersionHeader, versionOfHeaders, withVersionHeader } from '@mailroom/core/internal';

const UserCreatedV1 = defineMessage('user.created', z.object({ id: z.string(), name: z.string() }));
const UserCreatedV2 = UserCreatedV1.version(2, z.object({ id: z.string(), firstName: z.string(), lastName: z.string() }), (v1) => {
  const [firstName = '', ...rest] = v1.name.split(' ');
  return { id: v1.id, firstName, lastName: rest.join(' ') };
});
const UserCreated = UserCreatedV2.version(3, z.object({ id: z.string(), firstName: z.string(), lastName: z.string(), locale: z.string() }), (v2) => ({
  ...v2,
  locale: 'en',
}));

describe('versioned contracts', () => {
  it('producers emit the latest version; version 1 carries no version at all', () => {
    const old = UserCreatedV1.create({ id: 'u-1', name: 'Ada Lovelace' });
    expect(old.version).toBeUndefined();
    const now = UserCreated.create({ id: 'u-1', firstName: 'Ada', lastName: 'Lovelace', locale: 'en' });
    expect(now.version).toBe(3);
    expect(now.headers).toEqual({});
    expect(UserCreated.latestVersion).toBe(3);
    expect(UserCreated.versions.map((x) => x.version)).toEqual([1, 2, 3]);
    // The contract a version was added to is left as it was.
    expect(UserCreatedV1.latestVersion).toBe(1);
    expect(UserCreatedV2.latestVersion).toBe(2);
    expect(() => UserCreated.create({ id: 'u-1', name: 'Ada' } as never)).toThrowError(/Invalid payload for message type "user.created" at version 3: firstName/);
  });

  it('decodes every known version to the latest shape, step by step', async () => {
    await expect(UserCreated.decode({ id: 'u-1', name: 'Ada King Lovelace' }, 1)).resolves.toEqual({ id: 'u-1', firstName: 'Ada', lastName: 'King Lovelace', locale: 'en' });
    await expect(UserCreated.decode({ id: 'u-2', firstName: 'Grace', lastName: 'Hopper' }, 2)).resolves.toEqual({ id: 'u-2', firstName: 'Grace', lastName: 'Hopper', locale: 'en' });
    await expect(UserCreated.decode({ id: 'u-3', firstName: 'A', lastName: 'B', locale: 'fr' }, 3)).resolves.toEqual({ id: 'u-3', firstName: 'A', lastName: 'B', locale: 'fr' });
    // A v2 payload claimed to be v1 fails v1's schema, naming the version.
    await expect(UserCreated.decode({ id: 'u-2', firstName: 'Grace', lastName: 'Hopper' }, 1)).rejects.toThrowError(/"user.created" at version 1: name/);
  });

  it('says which version is unknown, which step threw and which step produced an invalid shape', async () => {
    await expect(UserCreatedV1.decode({ id: 'x', firstName: 'a', lastName: 'b' }, 2)).rejects.toMatchObject({
      code: 'INVALID_PAYLOAD',
      message: 'Message type "user.created" version 2 is newer than this contract knows (1).',
    });
    await expect(UserCreated.decode({}, 0)).rejects.toThrowError(/has no version 0/);
    const Throwing = UserCreatedV1.version(2, z.object({ id: z.string(), first: z.string() }), () => {
      throw new Error('cannot split names');
    });
    await expect(Throwing.decode({ id: 'u', name: 'n' }, 1)).rejects.toMatchObject({
      code: 'INVALID_PAYLOAD',
      message: expect.stringMatching(/^Upcasting message type "user.created" from version 1 to 2 failed: .*cannot split names/) as unknown,
      details: { type: 'user.created', version: 1, step: 2 },
    });
    const Wrong = UserCreatedV1.version(2, z.object({ id: z.string(), first: z.string() }), (v1) => ({ id: v1.id }) as never);
    await expect(Wrong.decode({ id: 'u', name: 'n' }, 1)).rejects.toThrowError(/after upcasting from version 1 to 2: first/);
  });

  it('refuses versions out of order, non-schemas and a missing upcaster', () => {
    expect(() => UserCreatedV1.version(3, z.object({}), () => ({}))).toThrowError(/the next one is 2, not 3/);
    expect(() => UserCreatedV1.version(2, { parse: () => 1 } as never, () => ({}) as never)).toThrowError(/not a Standard Schema validator/);
    expect(() => UserCreatedV1.version(2, z.object({}), undefined as never)).toThrowError(/needs an upcaster/);
    expect(() => defineMessage('x', z.string as never)).toThrowError(/not a Standard Schema/);
    expect(isMessageContract(UserCreated)).toBe(true);
    expect(isMessageContract({ ...UserCreated })).toBe(false);
    expect(isMessageContract(z.object({}))).toBe(false);
  });

  it('types the handler payload as the latest version and create as its input', () => {
    expectTypeOf<PayloadOf<typeof UserCreated>>().toEqualTypeOf<{ id: string; firstName: string; lastName: string; locale: string }>();
    expectTypeOf<PayloadOf<typeof UserCreatedV1>>().toEqualTypeOf<{ id: string; name: string }>();
    expectTypeOf<Awaited<ReturnType<typeof UserCreated.decode>>>().toEqualTypeOf<{ id: string; firstName: string; lastName: string; locale: string }>();
    // The upcaster's argument is the previous version's output.
    UserCreatedV1.version(2, z.object({ n: z.number() }), (previous) => {
      expectTypeOf(previous).toEqualTypeOf<{ id: string; name: string }>();
      return { n: previous.name.length };
    });
    // @ts-expect-error: the upcaster must return the next version's input.
    UserCreatedV1.version(2, z.object({ n: z.number() }), (previous) => ({ n: previous.name }));
  });
});

describe('Standard Schema validators', () => {
  it('accepts valibot, arktype, zod/v4 and a hand-written validator, typed', async () => {
    const withValibot = defineMessage('order.valibot', v.object({ orderId: v.string(), total: v.pipe(v.number(), v.minValue(0)) }));
    expect(withValibot.create({ orderId: 'o', total: 1 }).payload).toEqual({ orderId: 'o', total: 1 });
    expect(() => withValibot.create({ orderId: 'o', total: -1 })).toThrowError(/Invalid payload for message type "order.valibot": total: /);
    expectTypeOf<PayloadOf<typeof withValibot>>().toEqualTypeOf<{ orderId: string; total: number }>();

    const withArktype = defineMessage('order.arktype', type({ orderId: 'string', total: 'number >= 0' }));
    expect(withArktype.create({ orderId: 'o', total: 2 }).payload).toEqual({ orderId: 'o', total: 2 });
    expect(() => withArktype.parse({ orderId: 'o', total: 'two' })).toThrowError(/Invalid payload for message type "order.arktype": total: /);
    expectTypeOf<PayloadOf<typeof withArktype>>().toEqualTypeOf<{ orderId: string; total: number }>();

    const withZodV4 = defineMessage('order.zod4', z4.object({ orderId: z4.string() }));
    expect(withZodV4.create({ orderId: 'o' }).payload).toEqual({ orderId: 'o' });
    expectTypeOf<PayloadOf<typeof withZodV4>>().toEqualTypeOf<{ orderId: string }>();

    // A version chain across libraries: a valibot v1 upcast into an arktype v2.
    const Mixed = withValibot.version(2, type({ orderId: 'string', cents: 'number' }), (v1) => ({ orderId: v1.orderId, cents: Math.round(v1.total * 100) }));
    await expect(Mixed.decode({ orderId: 'o', total: 1.25 }, 1)).resolves.toEqual({ orderId: 'o', cents: 125 });

    const positive: StandardSchemaV1<number, number> = {
      '~standard': {
        version: 1,
        vendor: 'hand-written',
        validate: (value) => (typeof value === 'number' && value > 0 ? { value } : { issues: [{ message: 'must be a positive number', path: [{ key: 'amount' }] }] }),
      },
    };
    const handWritten = defineMessage('amount.hand', positive);
    expect(handWritten.create(3).payload).toBe(3);
    expect(() => handWritten.parse(-3)).toThrowError('Invalid payload for message type "amount.hand": amount: must be a positive number');
    expectTypeOf<PayloadOf<typeof handWritten>>().toEqualTypeOf<number>();
  });

  it('an asynchronous validator is read by consumers but refused by create, which must not wait', async () => {
    const slow: StandardSchemaV1<string, string> = {
      '~standard': {
        version: 1,
        vendor: 'async',
        validate: async (value) => {
          await Promise.resolve();
          return typeof value === 'string' ? { value } : { issues: [{ message: 'not a string' }] };
        },
      },
    };
    const Slow = defineMessage('slow.thing', slow);
    expect(() => Slow.create('x')).toThrowError(/validates asynchronously/);
    await expect(Slow.decode('x', 1)).resolves.toBe('x');
    await expect(Slow.decode(1, 1)).rejects.toThrowError('Invalid payload for message type "slow.thing": (payload): not a string');
  });
});

describe('the version header', () => {
  it('absent is version 1; a whole number up to the bound is that version', () => {
    expect(readVersionHeader(undefined)).toEqual({ ok: true, version: 1 });
    expect(readVersionHeader({})).toEqual({ ok: true, version: 1 });
    expect(readVersionHeader({ 'x-mailroom-version': '2' })).toEqual({ ok: true, version: 2 });
    expect(readVersionHeader({ 'x-mailroom-version': Buffer.from('17') })).toEqual({ ok: true, version: 17 });
    expect(readVersionHeader({ 'x-mailroom-version': 3 })).toEqual({ ok: true, version: 3 });
    expect(readVersionHeader({ 'x-mailroom-version': String(MAX_CONTRACT_VERSION) })).toEqual({ ok: true, version: MAX_CONTRACT_VERSION });
  });

  it('anything else is a problem that says what it got, briefly', () => {
    const hostile: unknown[] = ['0', '-1', '+2', '02', '2.0', '1e3', ' 2', '2 ', '', 'two', '2\u0000', '\u0000', String(MAX_CONTRACT_VERSION + 1), '9'.repeat(400), 2.5, -3, true, null, [], { v: 2 }];
    for (const value of hostile) {
      const reading = readVersionHeader({ 'x-mailroom-version': value });
      expect(reading.ok, JSON.stringify(value)).toBe(false);
      if (!reading.ok) {
        expect(reading.problem).toMatch(/^The x-mailroom-version header .* is not a contract version: a whole number from 1 to 10000 is expected\.$/);
        expect(reading.problem.length).toBeLessThan(200);
        expect(reading.problem).not.toContain('\u0000');
      }
    }
  });

  it('is written from version 2 on, read back for a replay, and refused when it is no version', () => {
    expect(withVersionHeader({ a: 'b' }, undefined)).toEqual({ a: 'b' });
    expect(withVersionHeader({ a: 'b' }, 1)).toEqual({ a: 'b' });
    expect(withVersionHeader({}, 2)).toEqual({ 'x-mailroom-version': '2' });
    for (const bad of [0, -1, 1.5, Number.NaN, MAX_CONTRACT_VERSION + 1]) expect(() => withVersionHeader({}, bad)).toThrowError(/is not a whole number from 1 to 10000/);
    expect(versionOfHeaders({ 'x-mailroom-version': '2' })).toBe(2);
    expect(versionOfHeaders({})).toBeUndefined();
    expect(versionOfHeaders({ 'x-mailroom-version': 'x' })).toBeUndefined();
  });
});
