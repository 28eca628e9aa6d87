import type { EnvelopeSeal } from './envelope-seal.js';
import { H } from './header-names.js';
import { headerText, occurredAtOfMessage } from './header-values.js';
import { readVersionHeader } from './version-header.js';
import type { DecodedDelivery, Origin, WireMessage } from './wire-types.js';
import { isUuid } from '../uuid.js';

/**
 * Reads a delivery as the consumer of `queue` sees it. Only a message that came back from one of
 * the consumer's delay queues (the default exchange, routed to `queue`) has an attempt count and
 * an origin mailroom wrote; on any other message those headers are a sender's and are ignored.
 */
export function decodeDelivery(message: WireMessage, queue: string, seal?: EnvelopeSeal): DecodedDelivery {
  const raw = message.properties.headers ?? {};
  const viaDelayRoute = message.fields.exchange === '' && message.fields.routingKey === queue;
  const fromRetry = viaDelayRoute && (seal === undefined || seal.verify(retryFields(message, queue), message.content, headerText(raw[H.seal])));
  const prior = fromRetry ? Number(headerText(raw[H.attempts]) ?? 0) : 0;
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(raw)) {
    const text = headerText(value);
    if (text !== null) headers[name] = text;
  }
  const rawMessageId = message.properties.messageId;
  // The relay sends the occurred-at time in the `timestamp` property (whole seconds); messages
  // published before that carry it in a header (milliseconds), which is read first.
  const occurredAt = occurredAtOfMessage(message.properties) ?? new Date();
  const type = message.properties.type;
  return {
    rawMessageId,
    messageId: isUuid(rawMessageId) ? rawMessageId.toLowerCase() : null,
    type: typeof type === 'string' ? type : null,
    key: headers[H.key] ?? null,
    version: readVersionHeader(raw),
    occurredAt,
    headers,
    attempt: Number.isInteger(prior) && prior >= 0 && prior < 1_000_000 ? prior + 1 : 1,
    fromRetry,
    // Forged means retry state without a valid seal. A plain message sent straight to the queue
    // (a history replay to one consumer, an operator's test message) claims nothing.
    forged: viaDelayRoute && !fromRetry && claimsRetryState(raw),
    origin: originOf(message, fromRetry),
  };
}

/** True when a message carries any of the headers only a retry copy has (attempts, origin, seal). */
function claimsRetryState(headers: Record<string, unknown>): boolean {
  return headers[H.attempts] !== undefined || headers[H.originExchange] !== undefined || headers[H.originRoutingKey] !== undefined || headers[H.seal] !== undefined;
}

/** What a retry copy's seal covers: the id, the attempt count, the origin and the queue it returns to. */
export function retryFields(message: WireMessage, queue: string): (string | number)[] {
  const headers = message.properties.headers ?? {};
  const id = message.properties.messageId;
  return ['retry', typeof id === 'string' ? id : '', headerText(headers[H.attempts]) ?? '', headerText(headers[H.originExchange]) ?? '', headerText(headers[H.originRoutingKey]) ?? '', queue];
}

function originOf(message: WireMessage, fromRetry: boolean): Origin {
  if (fromRetry) {
    const headers = message.properties.headers ?? {};
    const exchange = headerText(headers[H.originExchange]);
    const routingKey = headerText(headers[H.originRoutingKey]);
    if (exchange !== null && routingKey !== null) return { exchange, routingKey };
  }
  return { exchange: message.fields.exchange, routingKey: message.fields.routingKey };
}

