import type { MessageContract, PayloadOf, Queryable } from '@mailroom/core';
import type { Executor } from '@mailroom/core/internal';

/** What a handler knows about the delivery it handles. */
export interface MessageMetadata {
  /** The message id (a UUID): the inbox key. */
  messageId: string;
  /** The message type. */
  type: string;
  /** The contract version the payload arrived as (1 when it carried none); the payload was upcast to the latest. */
  version: number;
  /** The ordering key, or null. */
  key: string | null;
  /** The message headers, as strings. */
  headers: Record<string, string>;
  /** When the producer created the event (the publish time when the producer did not say). */
  occurredAt: Date;
  /** This attempt, 1 for the first delivery; counted by mailroom, never read from `x-death`. */
  attempt: number;
  /** True when the broker says it delivered this message before (to this or another consumer). */
  redelivered: boolean;
  /** The exchange the message was first published to. */
  exchange: string;
  /** The routing key it was first published with. */
  routingKey: string;
  /** The consumer's name. */
  consumer: string;
  /** The queue it came from. */
  queue: string;
}

/** What a handler receives. */
export interface HandlerContext<P, TTx = Queryable> {
  /** The payload, validated by the contract and upcast to its latest version. */
  payload: P;
  /**
   * The open transaction: a pg client after BEGIN, or a kysely Transaction. Pass it to
   * `enqueue` for follow-up events, or to your own queries; all of it commits with the inbox row.
   * With group commit the transaction is shared with other deliveries, your work in a savepoint
   * of its own: never COMMIT or ROLLBACK it yourself.
   */
  tx: TTx;
  /** The same transaction behind mailroom's `query(text, params)` seam. */
  db: Executor;
  /** About the delivery. */
  message: MessageMetadata;
  /** Aborted when the consumer stops and its shutdown timeout runs out: give up and throw. */
  signal: AbortSignal;
}

/** A message handler. Throw to fail (a `NonRetryableError` to skip the retries). */
export type HandlerFunction<P, TTx = Queryable> = (context: HandlerContext<P, TTx>) => Promise<void>;

/** A contract and its handler, for `createConsumer({ handlers })`. */
export interface HandlerBinding<TTx = Queryable> {
  /** The message contract: its type selects the handler, its versions' schemas validate and upcast the payload. */
  readonly contract: MessageContract;
  /** The handler. */
  readonly handle: HandlerFunction<unknown, TTx>;
}

/**
 * Binds a handler to a contract, typing the payload from the contract's latest version: a message
 * of an older version is upcast before the handler sees it. `TTx` is the
 * transaction type your database handle gives (default: mailroom's structural `Queryable`;
 * with kysely, pass `Transaction<DB>`).
 *
 * ```ts
 * handler(OrderPlaced, async ({ payload, tx, db }) => {
 *   await db.query('UPDATE stock SET reserved = reserved + $1 WHERE sku = $2', [payload.qty, payload.sku]);
 *   await enqueue(tx, StockReserved.create({ orderId: payload.orderId }));
 * });
 * ```
 */
export function handler<C extends MessageContract, TTx = Queryable>(contract: C, handle: HandlerFunction<PayloadOf<C>, TTx>): HandlerBinding<TTx> {
  return { contract, handle: handle as HandlerFunction<unknown, TTx> };
}
