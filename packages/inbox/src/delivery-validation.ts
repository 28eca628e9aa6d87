import { DEAD_LETTER_REASON, describeError, type DeadLetterReason } from '@mailroom/core';
import type { DecodedDelivery, WireMessage } from '@mailroom/core/internal';
import type { HandlerBinding } from './handler.js';
import { exceedsJsonDepth } from './json-depth.js';

/** A delivery the consumer can hand to its handler transaction. */
export interface AcceptedDelivery<TTx> {
  accepted: true;
  /** The message id, lower-cased: the inbox key. */
  messageId: string;
  /** The handler of its type. */
  binding: HandlerBinding<TTx>;
  /** The contract version the payload arrived as (1 when no header says otherwise); the handler gets the latest. */
  version: number;
  /** The parsed JSON body, not yet validated by the contract (that happens in the transaction). */
  body: unknown;
}

/** A delivery the consumer refuses unread: it goes to the dead letters with this reason. */
export interface RefusedDelivery {
  accepted: false;
  reason: DeadLetterReason;
  error: string;
}

/** What the validation ladder needs to know about the consumer. */
export interface DeliveryLimits<TTx> {
  /** The consumer's name, for error texts. */
  consumer: string;
  /** The handler of each message type. */
  handlers: ReadonlyMap<string, HandlerBinding<TTx>>;
  /** Bodies larger than this are refused unread. */
  maxBodyBytes: number;
  /** JSON nested deeper than this is refused unparsed. */
  maxJsonDepth: number;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * The validation ladder: the checks a delivery passes before any database work, cheapest first,
 * so a hostile message costs bounded work (an oversized body is never decoded, a too deeply
 * nested one never parsed). Each refusal is a dead-letter verdict, never a requeue: another
 * attempt cannot fix any of them (a version newer than the contract knows is fixed by upgrading
 * the consumer, then replaying the dead letter).
 */
export function validateDelivery<TTx>(message: WireMessage, delivery: DecodedDelivery, limits: DeliveryLimits<TTx>): AcceptedDelivery<TTx> | RefusedDelivery {
  if (message.content.length > limits.maxBodyBytes) {
    return refuse(DEAD_LETTER_REASON.oversized, `The body is ${message.content.length} bytes, over the limit of ${limits.maxBodyBytes} (maxBodyBytes).`);
  }
  const rawId = delivery.rawMessageId;
  if (rawId === undefined || rawId === null || rawId === '') {
    return refuse(DEAD_LETTER_REASON.missingMessageId, 'The message has no messageId property, so the inbox cannot tell a duplicate from a new message.');
  }
  if (delivery.messageId === null) {
    return refuse(
      DEAD_LETTER_REASON.invalidMessageId,
      `The messageId ${typeof rawId === 'string' ? JSON.stringify(rawId.slice(0, 100)) : `(a ${typeof rawId})`} is not a UUID.`,
    );
  }
  const binding = delivery.type !== null ? limits.handlers.get(delivery.type) : undefined;
  if (binding === undefined) {
    return refuse(
      DEAD_LETTER_REASON.unknownType,
      `No handler for message type ${delivery.type !== null ? `"${delivery.type}"` : '(none)'} in consumer "${limits.consumer}"; it handles ${[...limits.handlers.keys()].map((t) => `"${t}"`).join(', ')}.`,
    );
  }
  // A version this consumer cannot read is settled before any parsing or database work: a newer
  // one waits in the dead letters until the consumer is upgraded and it is replayed.
  if (!delivery.version.ok) return refuse(DEAD_LETTER_REASON.invalidVersion, delivery.version.problem);
  const version = delivery.version.version;
  const latest = binding.contract.latestVersion;
  if (version > latest) {
    return refuse(
      DEAD_LETTER_REASON.unknownVersion,
      `Message type "${binding.contract.type}" version ${version} is newer than consumer "${limits.consumer}" knows (${latest}); replay it once the consumer knows version ${version}.`,
    );
  }
  if (exceedsJsonDepth(message.content, limits.maxJsonDepth)) {
    return refuse(DEAD_LETTER_REASON.invalidPayload, `The JSON body nests objects or arrays deeper than ${limits.maxJsonDepth} levels (maxJsonDepth); it was not parsed.`);
  }
  let body: unknown;
  try {
    body = JSON.parse(utf8.decode(message.content));
  } catch (error) {
    return refuse(DEAD_LETTER_REASON.notJson, `The body is not UTF-8 JSON: ${describeError(error)}`);
  }
  return { accepted: true, messageId: delivery.messageId, binding, version, body };
}

function refuse(reason: DeadLetterReason, error: string): RefusedDelivery {
  return { accepted: false, reason, error };
}
