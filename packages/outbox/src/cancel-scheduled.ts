import { DEFAULT_SCHEMA, MailroomError, isUuid, type Queryable } from '@mailroom/core';
import { quoteIdentifier, transactionExecutor } from '@mailroom/core/internal';
import { reportUnmigratedSchema } from './unmigrated-schema.js';

/** Options of {@link cancelScheduled}. */
export interface CancelScheduledOptions {
  /** The schema of mailroom's tables. Default: `mailroom`. */
  schema?: string;
}

/**
 * Takes back a message enqueued with `deliverAt` or `delay` that has not fallen due yet, in the
 * caller's transaction (pass a pg client after BEGIN, or a kysely Transaction): if that
 * transaction commits, the message never leaves. Resolves true when it removed the message,
 * false when there was none to remove: an unknown id, one cancelled already, or one that fell
 * due and was handed to the relay (moved into the outbox; it is then published, and a saga must
 * treat that timeout as late). A relay moving the row at this very moment holds its lock: the
 * call waits for that move's commit (milliseconds) and then resolves false.
 *
 * A `messageId` that is not a UUID is refused with `INVALID_MESSAGE`.
 */
export async function cancelScheduled(tx: Queryable, messageId: string, options: CancelScheduledOptions = {}): Promise<boolean> {
  if (!isUuid(messageId)) {
    const given: unknown = messageId;
    const shown = typeof given === 'string' ? JSON.stringify(given.slice(0, 60)) : `of type ${typeof given}`;
    throw new MailroomError('INVALID_MESSAGE', `cancelScheduled: messageId ${shown} is not a UUID.`, { details: { field: 'messageId' } });
  }
  const schema = options.schema ?? DEFAULT_SCHEMA;
  const db = reportUnmigratedSchema(transactionExecutor(tx, 'cancelScheduled'), schema);
  const result = await db.query(
    `DELETE FROM ${quoteIdentifier(schema)}.outbox_scheduled WHERE message_id OPERATOR(pg_catalog.=) $1::pg_catalog.uuid RETURNING 1 AS n`,
    [messageId],
  );
  return result.rows.length > 0;
}
