import { DEAD_LETTER_REASON } from '../dead-letter-reason.js';
import { deriveMessageId } from '../derived-message-id.js';
import { deadLetterFields } from './copy-codec.js';
import type { EnvelopeSeal } from './envelope-seal.js';
import { H } from './header-names.js';
import { headerText, isBrokerHeader, occurredAtOfMessage } from './header-values.js';
import type { DecodedDeadLetter, WireMessage } from './wire-types.js';
import { isUuid } from '../uuid.js';

const DEAD_LETTER_BOOKKEEPING = new Set<string>([
  H.deadReason,
  H.deadError,
  H.deadSource,
  H.deadAt,
  H.originalMessageId,
  H.originExchange,
  H.originRoutingKey,
  H.publishId,
  H.seal,
]);

/** Who a dead letter without a valid seal is stored as coming from. */
export const UNSEALED_SOURCE = 'unsealed';

/**
 * Reads a dead letter from a message on the dead-letter queue (as a consumer published it). With
 * a `seal`, a message whose seal does not verify was not written by a mailroom consumer: it is
 * kept for inspection under source `unsealed`, reason `unsealed`, with no destination (so a
 * replay cannot publish it anywhere), and what it claims stays in its headers.
 */
export function decodeDeadLetter(message: WireMessage, seal?: EnvelopeSeal): DecodedDeadLetter {
  const headers = message.properties.headers ?? {};
  const text = (name: string): string | null => headerText(headers[name]);
  const sealed = seal === undefined ? null : seal.verify(deadLetterFields(message), message.content, text(H.seal));
  if (sealed === false) return unsealedDeadLetter(message);
  const source = text(H.deadSource) ?? 'unknown';
  const rawId = message.properties.messageId;
  const messageId = isUuid(rawId)
    ? rawId.toLowerCase()
    : deriveMessageId({ source, rawMessageId: text(H.originalMessageId) ?? (typeof rawId === 'string' ? rawId : null), body: message.content });
  const failedAt = new Date(text(H.deadAt) ?? Date.now());
  const attempts = Number(headers[H.attempts] ?? 0);
  const kept: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(headers)) if (!DEAD_LETTER_BOOKKEEPING.has(name)) kept[name] = value;
  // The store has no column for the occurred-at time: it keeps it in the stored headers, where
  // replay's retention check reads it (occurredAtOf). The relay sends it in the `timestamp`
  // property now, so a copy without the old header has it written from the property.
  if (kept[H.occurredAt] === undefined) {
    const occurred = occurredAtOfMessage(message.properties);
    if (occurred !== undefined) kept[H.occurredAt] = occurred.toISOString();
  }
  return {
    messageId,
    source,
    reason: text(H.deadReason) ?? 'unknown',
    error: text(H.deadError),
    attempts: Number.isFinite(attempts) ? Math.max(0, Math.trunc(attempts)) : 0,
    failedAt: Number.isNaN(failedAt.getTime()) ? new Date() : failedAt,
    type: typeof message.properties.type === 'string' ? message.properties.type : null,
    exchange: text(H.originExchange),
    routingKey: text(H.originRoutingKey),
    key: text(H.key),
    headers: kept,
    sealed,
  };
}

function unsealedDeadLetter(message: WireMessage): DecodedDeadLetter {
  const rawId = message.properties.messageId;
  const headers: Record<string, unknown> = {};
  // Keep what it claims for whoever inspects it, minus the broker's bookkeeping.
  for (const [name, value] of Object.entries(message.properties.headers ?? {})) if (!isBrokerHeader(name.toLowerCase())) headers[name] = value;
  return {
    messageId: deriveMessageId({ source: UNSEALED_SOURCE, rawMessageId: typeof rawId === 'string' ? rawId : null, body: message.content }),
    source: UNSEALED_SOURCE,
    reason: DEAD_LETTER_REASON.unsealed,
    error: 'The message on the dead-letter queue has no valid mailroom seal: no mailroom consumer wrote it.',
    attempts: 0,
    failedAt: new Date(),
    type: typeof message.properties.type === 'string' ? message.properties.type : null,
    exchange: null,
    routingKey: null,
    key: null,
    headers,
    sealed: false,
  };
}

