import { randomBytes, randomUUID } from 'node:crypto';
import { CONTENT_TYPE, DEAD_LETTER_REASON } from '@mailroom/core';
import { decodeDelivery, encodeDeadLetterCopy, encodeRetryCopy, envelopeHeaders, type WireMessage } from '@mailroom/core/internal';
import { CHAOS_EVENT_TYPE, type ChaosPayload } from './chaos-event.js';
import type { HostileExpectation, HostileInjection } from './hostile-injection.js';
import type { Random } from './random.js';

/** A hostile delivery, ready to publish, and what the history records about it. */
export interface HostileDelivery {
  injection: HostileInjection;
  exchange: string;
  routingKey: string;
  body: Buffer;
  messageId: string | undefined;
  type: string;
  /** Header values are strings (and so is everything mailroom writes). */
  headers: Record<string, string>;
  /** Headers too large for amqplib's 64 KiB encoding buffer: published with the raw publisher. */
  raw: boolean;
}

/** Where hostile deliveries go and what the consumers allow. */
export interface HostileTargets {
  /** The workload's exchange (routing key: the event type). */
  exchange: string;
  /** The consumers' work queue (the default exchange routes its name there). */
  queue: string;
  /** The dead-letter exchange the consumers publish to and the sink drains. */
  deadLetters: string;
  /** The consumers' attempts per message. */
  maxAttempts: number;
}

/** Marks every hostile message, so its dead letter is found even under a derived id. */
export const HOSTILE_HEADER = 'x-chaos-hostile';

/** How a hostile message is made to end as a dead letter whatever else it carries. */
const ENDINGS = ['invalid id', 'handler refuses', 'fails every attempt', 'invalid payload'] as const;
type Ending = (typeof ENDINGS)[number];

/** What a forger claims as the origin: a replay of a believed forgery would publish there. */
export const FORGED_ORIGIN = { exchange: 'amq.topic', routingKey: 'chaos.forged.destination' } as const;
/** The source a forged dead letter claims. */
export const FORGED_SOURCE = 'chaos.forged.source';

function payloadFor(id: string, ending: Ending | undefined, key: string | null): Record<string, unknown> {
  if (ending === 'invalid payload') return { eventId: id, poison: 'not a key' };
  const payload: Record<string, unknown> = { eventId: id, key: key ?? 'hostile', producer: 0 };
  if (ending === 'handler refuses') payload.poison = 'throw' satisfies ChaosPayload['poison'];
  if (ending === 'fails every attempt') payload.poison = 'transient' satisfies ChaosPayload['poison'];
  return payload;
}

/**
 * One hostile message that must end as a dead letter: `ending` decides how (an id that is no
 * UUID, a handler that refuses it, fails on every attempt, or a payload the contract refuses).
 */
function build(
  t: HostileTargets,
  random: Random,
  kind: string,
  variant: string,
  opts: { ending?: Ending; headers?: Record<string, string>; type?: string; key?: string | null; body?: (payload: Record<string, unknown>) => string; expect?: Partial<HostileExpectation> },
): HostileDelivery {
  const id = randomUUID();
  const ending = opts.ending;
  const key = opts.key === undefined ? (random.chance(0.5) ? `hostile-${id.slice(0, 8)}` : null) : opts.key;
  const messageId = ending === 'invalid id' ? `not-a-uuid-${randomBytes(4).toString('hex')}` : id;
  const payload = payloadFor(id, ending, key);
  const text = opts.body !== undefined ? opts.body(payload) : JSON.stringify(payload);
  const headers: Record<string, string> = { ...envelopeHeaders({ key }), [HOSTILE_HEADER]: id, ...opts.headers };
  const expect: HostileExpectation = { deadLetter: true, ...opts.expect };
  return {
    injection: { id, kind, variant: ending !== undefined ? `${variant}, ${ending}` : variant, messageId, expect },
    exchange: t.exchange,
    routingKey: CHAOS_EVENT_TYPE,
    body: Buffer.from(text, 'utf8'),
    messageId,
    type: opts.type ?? CHAOS_EVENT_TYPE,
    headers,
    raw: false,
  };
}

/**
 * Headers near amqplib's 64 KiB encoding limit (they fit, but not once a consumer adds its
 * retry or dead-letter headers), or over it (up to the broker's 128 KiB frame, sent raw).
 */
export function hostileHeaders(t: HostileTargets, random: Random): HostileDelivery {
  const oversized = random.chance(0.5);
  const size = oversized ? random.int(70_000, 125_000) : random.int(64_900, 65_350);
  const variant = `${oversized ? 'oversized' : 'near-limit'} headers (${size} bytes)`;
  const d = build(t, random, 'hostile-headers', variant, { ending: random.pick(ENDINGS), headers: { 'x-pad': 'p'.repeat(size) } });
  return { ...d, raw: oversized };
}

/** A NUL byte in the type, a header name or value, the key, or the payload. */
export function hostileNul(t: HostileTargets, random: Random): HostileDelivery {
  const where = random.pick(['type', 'header name', 'header value', 'key', 'payload'] as const);
  const ending = random.pick(ENDINGS);
  switch (where) {
    case 'type':
      // An unknown type is a dead letter by itself.
      return build(t, random, 'hostile-nul', 'NUL in the type', { type: `${CHAOS_EVENT_TYPE}\u0000nul` });
    case 'header name':
      return build(t, random, 'hostile-nul', 'NUL in a header name', { ending, headers: { 'x-nul\u0000name': 'value' } });
    case 'header value':
      return build(t, random, 'hostile-nul', 'NUL in a header value', { ending, headers: { 'x-nul-value': 'before\u0000after' } });
    case 'key':
      return build(t, random, 'hostile-nul', 'NUL in the key', { ending, key: `hostile\u0000${randomBytes(3).toString('hex')}` });
    case 'payload':
      return build(t, random, 'hostile-nul', 'NUL in the payload', { ending, body: (p) => JSON.stringify({ ...p, note: 'before\u0000after' }) });
  }
}

/** JSON nested thousands of levels deep (a valid payload otherwise: only a depth cap stops it). */
export function deepJson(t: HostileTargets, random: Random): HostileDelivery {
  const depth = random.int(2_000, 8_000);
  return build(t, random, 'deep-json', `JSON ${depth} levels deep`, {
    // The deep part comes after the payload's own fields, under a name longer than `eventId`
    // (jsonb orders keys by length), so the id stays readable in a stored letter.
    body: (p) => `${JSON.stringify(p).slice(0, -1)},"nestedDeeply":${'['.repeat(depth)}${']'.repeat(depth)}}`,
  });
}

function wire(d: HostileDelivery, exchange: string, routingKey: string): WireMessage {
  return { content: d.body, fields: { exchange, routingKey }, properties: { messageId: d.messageId, type: d.type, contentType: CONTENT_TYPE, headers: d.headers } };
}

/**
 * Retry state forged by a sender without access to the delay queues: through the default
 * exchange straight to the work queue, claiming attempt 99 and an origin of its choosing, with a
 * handler that fails every attempt (the attempts must still all be used) or refuses it (its
 * dead letter must not carry the forged destination).
 */
export function forgedRetry(t: HostileTargets, random: Random): HostileDelivery {
  const ending = random.pick(['fails every attempt', 'handler refuses'] as const);
  const d = build(t, random, 'forged-retry', 'attempt 99 and a forged origin through the default exchange', {
    ending,
    expect: { forged: { ...FORGED_ORIGIN }, maxAttempts: t.maxAttempts },
  });
  const message = wire(d, '', t.queue);
  const copy = encodeRetryCopy(message, { ...decodeDelivery(message, t.queue), attempt: 99, origin: { ...FORGED_ORIGIN } });
  return { ...d, exchange: '', routingKey: t.queue, headers: copy.headers as Record<string, string> };
}

/** A dead letter forged straight into the dead-letter exchange, claiming a source, a reason and a destination. */
export function forgedDeadLetter(t: HostileTargets, random: Random): HostileDelivery {
  const d = build(t, random, 'forged-dead-letter', 'a dead letter published straight to the dead-letter exchange', {
    expect: { forged: { source: FORGED_SOURCE, ...FORGED_ORIGIN } },
  });
  const message = wire(d, t.exchange, CHAOS_EVENT_TYPE);
  const delivery = { ...decodeDelivery(message, t.queue), origin: { ...FORGED_ORIGIN } };
  const copy = encodeDeadLetterCopy(message, delivery, { reason: DEAD_LETTER_REASON.nonRetryable, error: 'forged by the chaos nemesis', source: FORGED_SOURCE });
  return { ...d, exchange: t.deadLetters, routingKey: FORGED_SOURCE, headers: copy.headers as Record<string, string> };
}

/** An event that took effect, sent again with its id and another payload. */
export function conflictingDuplicate(t: HostileTargets, event: { eventId: string; key: string; producer: number; createdAt: Date }): HostileDelivery {
  const payload = { eventId: event.eventId, key: event.key, producer: event.producer + 1000 };
  return {
    injection: { id: event.eventId, kind: 'conflicting-duplicate', variant: 'same id, another payload', messageId: event.eventId, expect: { deadLetter: false, conflict: true } },
    exchange: t.exchange,
    routingKey: CHAOS_EVENT_TYPE,
    body: Buffer.from(JSON.stringify(payload)),
    messageId: event.eventId,
    type: CHAOS_EVENT_TYPE,
    headers: { ...envelopeHeaders({ key: event.key, occurredAt: event.createdAt }), [HOSTILE_HEADER]: event.eventId },
    raw: false,
  };
}
