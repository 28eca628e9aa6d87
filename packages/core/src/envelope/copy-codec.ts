import { deriveMessageId } from '../derived-message-id.js';
import type { EnvelopeSeal } from './envelope-seal.js';
import { H } from './header-names.js';
import { retryFields } from './delivery-codec.js';
import { headerText, isBrokerHeader } from './header-values.js';
import type { CopyProperties, DeadLetterVerdict, DecodedDelivery, WireMessage } from './wire-types.js';

/** The longest error text a dead-letter copy carries. */
const MAX_ERROR_CHARS = 4000;

// Headers the broker adds on dead-lettering grow with every retry; they are never read anyway.
function copyHeaders(message: WireMessage): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(message.properties.headers ?? {})) {
    if (!isBrokerHeader(name.toLowerCase())) out[name] = value;
  }
  return out;
}

function copyProperties(message: WireMessage, headers: Record<string, unknown>, messageId: unknown): CopyProperties {
  const p = message.properties;
  const options: CopyProperties = { persistent: true, headers };
  // userId is left out: the broker refuses a publish whose user-id is not the connection's user.
  if (typeof messageId === 'string') options.messageId = messageId;
  if (typeof p.type === 'string') options.type = p.type;
  if (typeof p.contentType === 'string') options.contentType = p.contentType;
  if (typeof p.contentEncoding === 'string') options.contentEncoding = p.contentEncoding;
  if (typeof p.correlationId === 'string') options.correlationId = p.correlationId;
  if (typeof p.replyTo === 'string') options.replyTo = p.replyTo;
  if (typeof p.appId === 'string') options.appId = p.appId;
  if (typeof p.timestamp === 'number') options.timestamp = p.timestamp;
  if (typeof p.priority === 'number') options.priority = p.priority;
  return options;
}

/**
 * The properties of the copy a failed delivery waits in a delay queue as: its attempt and origin,
 * sealed (when `sealing` is given) for the queue it returns to.
 */
export function encodeRetryCopy(message: WireMessage, delivery: DecodedDelivery, sealing?: { seal: EnvelopeSeal; queue: string }): CopyProperties {
  const headers = copyHeaders(message);
  headers[H.attempts] = String(delivery.attempt);
  headers[H.originExchange] = delivery.origin.exchange;
  headers[H.originRoutingKey] = delivery.origin.routingKey;
  delete headers[H.seal];
  const properties = copyProperties(message, headers, message.properties.messageId);
  if (sealing !== undefined) {
    headers[H.seal] = sealing.seal.seal(retryFields({ ...message, properties }, sealing.queue), message.content);
  }
  return properties;
}

/**
 * The properties of the copy a consumer publishes to the dead-letter exchange. A message without
 * a usable id gets a deterministic one derived from its body and `source`, so every redelivery
 * of it lands on the same dead-letter row; the id it came with is kept in a header.
 */
export function encodeDeadLetterCopy(
  message: WireMessage,
  delivery: DecodedDelivery,
  verdict: DeadLetterVerdict,
  seal?: EnvelopeSeal,
): CopyProperties & { messageId: string } {
  const raw = delivery.rawMessageId;
  const messageId =
    delivery.messageId ?? deriveMessageId({ source: verdict.source, rawMessageId: typeof raw === 'string' ? raw : null, body: message.content });
  const headers = copyHeaders(message);
  headers[H.attempts] = String(delivery.attempt);
  headers[H.deadReason] = verdict.reason;
  headers[H.deadError] = verdict.error.slice(0, MAX_ERROR_CHARS);
  headers[H.deadSource] = verdict.source;
  headers[H.deadAt] = (verdict.failedAt ?? new Date()).toISOString();
  headers[H.originExchange] = delivery.origin.exchange;
  headers[H.originRoutingKey] = delivery.origin.routingKey;
  if (delivery.messageId === null && typeof raw === 'string') headers[H.originalMessageId] = raw.slice(0, 200);
  delete headers[H.seal];
  const properties = { ...copyProperties(message, headers, messageId), messageId };
  if (seal !== undefined) headers[H.seal] = seal.seal(deadLetterFields({ ...message, properties }), message.content);
  return properties;
}

/** What a dead-letter copy's seal covers: everything the store trusts about it. */
export function deadLetterFields(message: WireMessage): (string | number)[] {
  const headers = message.properties.headers ?? {};
  const id = message.properties.messageId;
  const text = (name: string): string => headerText(headers[name]) ?? '';
  return ['dead', typeof id === 'string' ? id : '', text(H.deadSource), text(H.deadReason), text(H.attempts), text(H.originExchange), text(H.originRoutingKey), text(H.originalMessageId)];
}

