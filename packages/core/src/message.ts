import { randomUUID } from 'node:crypto';
import type { z } from 'zod';
import { RESERVED_HEADER_PREFIX } from './envelope/header-names.js';
import { envelopeHeaders, isReservedHeader } from './envelope/header-values.js';
import { checkPublishLimits, TRACE_CONTEXT_RESERVE_BYTES } from './publish-limits.js';
import { MailroomError } from './errors.js';
import { isUuid } from './uuid.js';

export { isUuid };

/** The exchange messages go to when a contract names none: a durable topic exchange. */
export const DEFAULT_EXCHANGE = 'mailroom';

/** What a consumer sees of a message, and what a producer stores: the envelope. */
export interface Envelope<P = unknown> {
  /** Stable identity: the outbox row's id, the AMQP `messageId`, the inbox key. A UUID. */
  messageId: string;
  /** The contract's type name, e.g. `order.placed`. */
  type: string;
  /** Ordering / partition key; events of one key are published and handled in order. */
  key: string | null;
  /** String headers that travel with the message (trace context included). */
  headers: Record<string, string>;
  /** The validated payload. */
  payload: P;
  /** When the producer created the event. */
  occurredAt: Date;
}

/** An envelope ready for `enqueue`: it also says where it is published. */
export interface OutgoingMessage<P = unknown> extends Envelope<P> {
  /** The exchange to publish to (`''` is RabbitMQ's default exchange). */
  exchange: string;
  /** The routing key to publish with. */
  routingKey: string;
}

/** Options of {@link MessageContract.create}. */
export interface CreateMessageOptions {
  /** Ordering key (an aggregate id, say). Default: none, no ordering. */
  key?: string | null;
  /** A message id to use instead of a fresh UUID (for a replay or an id derived upstream). */
  messageId?: string;
  /** Extra string headers. Names starting with the reserved prefix (`RESERVED_HEADER_PREFIX`) are refused. */
  headers?: Record<string, string>;
  /** Overrides the contract's routing key for this message. */
  routingKey?: string;
  /** When the event happened. Default: now. */
  occurredAt?: Date;
}

/** Options of {@link defineMessage}. */
export interface DefineMessageOptions {
  /** Exchange the message is published to. Default: `mailroom` (a durable topic exchange). */
  exchange?: string;
  /** Routing key. Default: the message type. */
  routingKey?: string;
}

/** A typed message contract, shared by the producer's `enqueue` and the consumer's handler. */
export interface MessageContract<TType extends string = string, TSchema extends z.ZodType = z.ZodType> {
  /** The type name carried in the AMQP `type` property. */
  readonly type: TType;
  /** The zod schema of the payload. */
  readonly schema: TSchema;
  /** The exchange messages of this type go to. */
  readonly exchange: string;
  /** The default routing key of messages of this type. */
  readonly routingKey: string;
  /** Validates a payload; throws `MailroomError('INVALID_PAYLOAD')` naming every problem. */
  parse(payload: unknown): z.output<TSchema>;
  /** Validates a payload and wraps it in an outgoing envelope with a fresh message id. */
  create(payload: z.input<TSchema>, options?: CreateMessageOptions): OutgoingMessage<z.output<TSchema>>;
}

/**
 * Where `create` keeps the contract a message was made from (a non-enumerable property), so that
 * `enqueue` can validate the payload again right before it is stored.
 */
export const CONTRACT_OF = Symbol.for('mailroom.contract');

/** The contract a message was created from, if it came from `contract.create`. */
export function contractOf(message: object): MessageContract | undefined {
  return (message as { [CONTRACT_OF]?: MessageContract })[CONTRACT_OF];
}

/** The payload type of a contract. */
export type PayloadOf<C> = C extends MessageContract<string, infer S> ? z.output<S> : never;

const TYPE_NAME = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$/;

/**
 * Defines a message contract: a type name and a zod schema for its payload.
 *
 * ```ts
 * const OrderPlaced = defineMessage('order.placed', z.object({ orderId: z.string(), total: z.number() }));
 * await enqueue(trx, OrderPlaced.create({ orderId: 'o-1', total: 42 }, { key: 'o-1' }));
 * ```
 */
export function defineMessage<const TType extends string, TSchema extends z.ZodType>(
  type: TType,
  schema: TSchema,
  options: DefineMessageOptions = {},
): MessageContract<TType, TSchema> {
  if (!TYPE_NAME.test(type)) {
    throw new MailroomError(
      'INVALID_MESSAGE',
      `Invalid message type ${JSON.stringify(type)}: use letters, digits and . _ : - (at most 200 characters).`,
    );
  }
  const exchange = options.exchange ?? DEFAULT_EXCHANGE;
  const routingKey = options.routingKey ?? type;
  const parse = (payload: unknown): z.output<TSchema> => {
    const result = schema.safeParse(payload);
    if (!result.success) {
      const problems = result.error.issues.map((i) => `${i.path.length > 0 ? i.path.join('.') : '(payload)'}: ${i.message}`);
      throw new MailroomError('INVALID_PAYLOAD', `Invalid payload for message type "${type}": ${problems.join('; ')}`, {
        details: { type, issues: problems },
      });
    }
    return result.data;
  };
  const contract: MessageContract<TType, TSchema> = {
    type,
    schema,
    exchange,
    routingKey,
    parse,
    create(payload, createOptions = {}) {
      const messageId = createOptions.messageId ?? randomUUID();
      if (!isUuid(messageId)) {
        throw new MailroomError('INVALID_MESSAGE', `Invalid message id ${JSON.stringify(messageId)}: it must be a UUID.`);
      }
      const headers = createOptions.headers ?? {};
      for (const name of Object.keys(headers)) {
        if (isReservedHeader(name)) {
          throw new MailroomError('INVALID_MESSAGE', `Header "${name}" is reserved: names starting with ${RESERVED_HEADER_PREFIX} belong to mailroom.`);
        }
      }
      const message: OutgoingMessage<z.output<TSchema>> = {
        messageId,
        type,
        key: createOptions.key ?? null,
        headers: { ...headers },
        payload: parse(payload),
        occurredAt: createOptions.occurredAt ?? new Date(),
        exchange,
        routingKey: createOptions.routingKey ?? routingKey,
      };
      // Sizes the broker or the client would refuse are refused here, where the caller can fix them.
      checkPublishLimits({
        exchange,
        routingKey: message.routingKey,
        type,
        messageId,
        headers: { ...message.headers, ...envelopeHeaders(message) },
        reserveHeaderBytes: TRACE_CONTEXT_RESERVE_BYTES,
      });
      Object.defineProperty(message, CONTRACT_OF, { value: contract, enumerable: false });
      return message;
    },
  };
  return contract;
}
