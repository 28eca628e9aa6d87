import { randomUUID } from 'node:crypto';
import { RESERVED_HEADER_PREFIX } from './envelope/header-names.js';
import { envelopeHeaders, isReservedHeader } from './envelope/header-values.js';
import { withVersionHeader } from './envelope/version-header.js';
import { MAX_CONTRACT_VERSION, decodeVersion, validateNow, type ContractVersion, type Upcaster } from './contract-versions.js';
import { isStandardSchema, type InferInput, type InferOutput, type StandardSchemaV1 } from './standard-schema.js';
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
  /**
   * The contract version of the payload: `create` sets the contract's latest. Absent means 1.
   * It travels in the `x-mailroom-version` header (from version 2 on), never in `headers`.
   */
  version?: number;
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


/**
 * A typed message contract, shared by the producer's `enqueue` and the consumer's handler. Its
 * schema is any Standard Schema validator (zod, valibot, arktype …). A contract may have
 * versions (see {@link MessageContract.version}): producers emit the latest, consumers accept
 * every version the contract knows and hand the handler the latest shape.
 */
export interface MessageContract<TType extends string = string, TSchema extends StandardSchemaV1 = StandardSchemaV1> {
  /** The type name carried in the AMQP `type` property. */
  readonly type: TType;
  /** The schema of the payload at the latest version. */
  readonly schema: TSchema;
  /** The latest version: what `create` emits and what a handler receives. 1 for a contract without versions. */
  readonly latestVersion: number;
  /** Every version, from 1 to `latestVersion`, with its schema and the upcaster from the one before. */
  readonly versions: readonly ContractVersion[];
  /** The exchange messages of this type go to. */
  readonly exchange: string;
  /** The default routing key of messages of this type. */
  readonly routingKey: string;
  /**
   * Validates a payload against the latest version's schema, synchronously; throws
   * `MailroomError('INVALID_PAYLOAD')` naming every problem (`INVALID_CONFIG` for a schema that
   * only validates asynchronously).
   */
  parse(payload: unknown): InferOutput<TSchema>;
  /**
   * Reads a payload that arrived as `version`: validated by that version's schema, then upcast
   * step by step to the latest, each step's output validated. Throws `INVALID_PAYLOAD` naming
   * the type and the version or step that failed, or a version newer than `latestVersion`.
   */
  decode(payload: unknown, version: number): Promise<InferOutput<TSchema>>;
  /** Validates a payload and wraps it in an outgoing envelope of the latest version with a fresh message id. */
  create(payload: InferInput<TSchema>, options?: CreateMessageOptions): OutgoingMessage<InferOutput<TSchema>>;
  /**
   * The contract with one more version: `schema` for the payload at `version` (the latest plus
   * one) and `upcast` from the latest's output to it. The contract it is called on is left as
   * it is (still a producer of its own latest version).
   *
   * ```ts
   * const UserCreatedV1 = defineMessage('user.created', z.object({ id: z.string(), name: z.string() }));
   * const UserCreated = UserCreatedV1.version(2, z.object({ id: z.string(), firstName: z.string(), lastName: z.string() }), (v1) => {
   *   const [firstName = '', ...rest] = v1.name.split(' ');
   *   return { id: v1.id, firstName, lastName: rest.join(' ') };
   * });
   * ```
   */
  version<TNext extends StandardSchemaV1>(version: number, schema: TNext, upcast: Upcaster<InferOutput<TSchema>, InferInput<TNext>>): MessageContract<TType, TNext>;
}

/**
 * Where `create` keeps the contract a message was made from (a non-enumerable property), so that
 * `enqueue` can validate the payload again right before it is stored.
 */
export const CONTRACT_OF = Symbol.for('mailroom.contract');

// Marks contracts made by defineMessage (across package copies: a registered symbol).
const IS_CONTRACT = Symbol.for('mailroom.message-contract');

/** The contract a message was created from, if it came from `contract.create`. */
export function contractOf(message: object): MessageContract | undefined {
  return (message as { [CONTRACT_OF]?: MessageContract })[CONTRACT_OF];
}

/** True for a contract made by {@link defineMessage} (any copy of @mailroom/core). */
export function isMessageContract(value: unknown): value is MessageContract {
  return typeof value === 'object' && value !== null && (value as { [IS_CONTRACT]?: unknown })[IS_CONTRACT] === true;
}

/** The payload type of a contract: its latest version's output. */
export type PayloadOf<C> = C extends MessageContract<string, infer S> ? InferOutput<S> : never;

const TYPE_NAME = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$/;

/**
 * Defines a message contract: a type name and a schema for its payload, any Standard Schema
 * validator (zod, valibot, arktype …). Add versions with {@link MessageContract.version}.
 *
 * ```ts
 * const OrderPlaced = defineMessage('order.placed', z.object({ orderId: z.string(), total: z.number() }));
 * await enqueue(trx, OrderPlaced.create({ orderId: 'o-1', total: 42 }, { key: 'o-1' }));
 * ```
 */
export function defineMessage<const TType extends string, TSchema extends StandardSchemaV1>(
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
  checkSchema(type, 1, schema);
  return buildContract<TType, TSchema>(type, Object.freeze([{ version: 1, schema }]), options.exchange ?? DEFAULT_EXCHANGE, options.routingKey ?? type);
}

function checkSchema(type: string, version: number, schema: unknown): void {
  if (!isStandardSchema(schema)) {
    throw new MailroomError(
      'INVALID_MESSAGE',
      `The schema of message type "${type}" version ${version} is not a Standard Schema validator (an object with "~standard"): use zod, valibot, arktype or another Standard Schema library.`,
    );
  }
}

function buildContract<TType extends string, TSchema extends StandardSchemaV1>(
  type: TType,
  versions: readonly ContractVersion[],
  exchange: string,
  routingKey: string,
): MessageContract<TType, TSchema> {
  type Out = InferOutput<TSchema>;
  const latestVersion = versions.length;
  const schema = (versions[latestVersion - 1] as ContractVersion).schema as TSchema;
  // One version: the error texts stay as they were before contracts had versions.
  const parse = (payload: unknown): Out => validateNow(type, schema, payload, latestVersion > 1 ? ` at version ${latestVersion}` : '');
  const contract: MessageContract<TType, TSchema> = {
    type,
    schema,
    latestVersion,
    versions,
    exchange,
    routingKey,
    parse,
    async decode(payload, version) {
      return (await decodeVersion(type, versions, payload, version));
    },
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
      const message: OutgoingMessage<Out> = {
        messageId,
        type,
        key: createOptions.key ?? null,
        headers: { ...headers },
        payload: parse(payload),
        occurredAt: createOptions.occurredAt ?? new Date(),
        exchange,
        routingKey: createOptions.routingKey ?? routingKey,
      };
      // Version 1 stays off the message, so a contract without versions makes what it always made.
      if (latestVersion > 1) message.version = latestVersion;
      // Sizes the broker or the client would refuse are refused here, where the caller can fix them.
      checkPublishLimits({
        exchange,
        routingKey: message.routingKey,
        type,
        messageId,
        headers: withVersionHeader({ ...message.headers, ...envelopeHeaders(message) }, message.version),
        reserveHeaderBytes: TRACE_CONTEXT_RESERVE_BYTES,
      });
      Object.defineProperty(message, CONTRACT_OF, { value: contract, enumerable: false });
      return message;
    },
    version<TNext extends StandardSchemaV1>(version: number, next: TNext, upcast: Upcaster<Out, InferInput<TNext>>): MessageContract<TType, TNext> {
      if (version !== latestVersion + 1) {
        throw new MailroomError(
          'INVALID_MESSAGE',
          `Versions of message type "${type}" are numbered 1, 2, 3 … without gaps: the next one is ${latestVersion + 1}, not ${String(version)}.`,
        );
      }
      if (version > MAX_CONTRACT_VERSION) throw new MailroomError('INVALID_MESSAGE', `Message type "${type}" cannot have more than ${MAX_CONTRACT_VERSION} versions.`);
      checkSchema(type, version, next);
      if (typeof upcast !== 'function') {
        throw new MailroomError('INVALID_MESSAGE', `Version ${version} of message type "${type}" needs an upcaster: a function from version ${latestVersion}'s payload to version ${version}'s.`);
      }
      return buildContract<TType, TNext>(type, Object.freeze([...versions, { version, schema: next, upcast: upcast }]), exchange, routingKey);
    },
  };
  Object.defineProperty(contract, IS_CONTRACT, { value: true, enumerable: false });
  return contract;
}
