// Each hostile message the nemesis builds is what its variant says: headers at or over amqplib's
// limit, a NUL where claimed, JSON thousands of levels deep, retry state and dead letters forged
// with core's own codec (believed by a reader without the seal, refused by one with it).
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { createEnvelopeSeal, decodeDeadLetter, decodeDelivery, type WireMessage } from '@mailroom/core/internal';
import { createRandom } from '@mailroom/chaos';
import { FORGED_ORIGIN, FORGED_SOURCE, HOSTILE_HEADER, deepJson, forgedDeadLetter, forgedRetry, hostileHeaders, hostileNul, type HostileDelivery } from '../src/hostile-messages.js';

const targets = { exchange: 'chaos.x', queue: 'chaos.x.work', deadLetters: 'chaos.x.dead', maxAttempts: 12 };
const seal = createEnvelopeSeal(randomBytes(32));
const many = (build: (r: ReturnType<typeof createRandom>) => HostileDelivery, n = 40): HostileDelivery[] => {
  const random = createRandom(11);
  return Array.from({ length: n }, () => build(random));
};
const asWire = (d: HostileDelivery): WireMessage => ({ content: d.body, fields: { exchange: d.exchange, routingKey: d.routingKey }, properties: { messageId: d.messageId, type: d.type, headers: d.headers } });
const headerBytes = (d: HostileDelivery): number => Object.entries(d.headers).reduce((a, [k, v]) => a + Buffer.byteLength(k) + Buffer.byteLength(v), 0);

describe('hostile messages', () => {
  it('headers near the 64 KiB limit go through amqplib, larger ones raw; each carries its marker and must end as a dead letter', () => {
    const all = many((r) => hostileHeaders(targets, r));
    const near = all.filter((d) => !d.raw);
    const over = all.filter((d) => d.raw);
    expect(near.length).toBeGreaterThan(0);
    expect(over.length).toBeGreaterThan(0);
    for (const d of near) expect(headerBytes(d)).toBeGreaterThan(64_900);
    for (const d of near) expect(headerBytes(d)).toBeLessThan(65_536);
    for (const d of over) expect(headerBytes(d)).toBeGreaterThan(70_000);
    for (const d of all) {
      expect(d.headers[HOSTILE_HEADER]).toBe(d.injection.id);
      expect(JSON.parse(d.body.toString())).toMatchObject({ eventId: d.injection.id });
      expect(d.injection.expect.deadLetter).toBe(true);
    }
    expect(new Set(all.map((d) => d.injection.variant.split(', ')[1]))).toEqual(new Set(['invalid id', 'handler refuses', 'fails every attempt', 'invalid payload']));
  });

  it('puts a NUL where each variant says', () => {
    const seen = new Set<string>();
    for (const d of many((r) => hostileNul(targets, r), 60)) {
      seen.add(d.injection.variant.split(',')[0] as string);
      const where = [d.type, ...Object.keys(d.headers), ...Object.values(d.headers), d.body.toString()].join('|');
      expect(where.includes('\u0000') || d.body.toString().includes('\\u0000'), d.injection.variant).toBe(true);
    }
    expect(seen).toEqual(new Set(['NUL in the type', 'NUL in a header name', 'NUL in a header value', 'NUL in the key', 'NUL in the payload']));
  });

  it('nests JSON thousands of levels deep, after the payload’s own fields', () => {
    for (const d of many((r) => deepJson(targets, r), 5)) {
      const text = d.body.toString();
      expect(text.startsWith(`{"eventId":"${d.injection.id}"`)).toBe(true);
      expect(text.split('[').length - 1).toBeGreaterThanOrEqual(2000);
      expect(() => JSON.parse(text) as unknown).not.toThrow();
    }
  });

  it('forges retry state through the default exchange: attempt 99 and its origin, believed only without the seal', () => {
    const d = forgedRetry(targets, createRandom(3));
    expect([d.exchange, d.routingKey]).toEqual(['', targets.queue]);
    expect(d.injection.expect).toMatchObject({ forged: { exchange: FORGED_ORIGIN.exchange }, maxAttempts: 12 });
    expect(decodeDelivery(asWire(d), targets.queue)).toMatchObject({ attempt: 100, origin: FORGED_ORIGIN });
    expect(decodeDelivery(asWire(d), targets.queue, seal)).toMatchObject({ attempt: 1, forged: true, origin: { exchange: '', routingKey: targets.queue } });
  });

  it('forges a dead letter straight into the dead-letter exchange: its source and destination, believed only without the seal', () => {
    const d = forgedDeadLetter(targets, createRandom(4));
    expect(d.exchange).toBe(targets.deadLetters);
    expect(decodeDeadLetter(asWire(d))).toMatchObject({ source: FORGED_SOURCE, exchange: FORGED_ORIGIN.exchange, routingKey: FORGED_ORIGIN.routingKey });
    expect(decodeDeadLetter(asWire(d), seal)).toMatchObject({ sealed: false, exchange: null, routingKey: null });
  });
});
