import type { Queryable } from '@mailroom/core';
import { quoteIdentifier } from '@mailroom/core/internal';

/** What every store operation works on: the database and mailroom's tables in one schema. */
export interface StoreContext {
  /** A pg Pool (or Client) or a kysely instance. */
  db: Queryable;
  /** The schema, validated. */
  schema: string;
  /** The quoted schema, for the other tables a replay reads (`outbox`, `inbox_consumers`). */
  quotedSchema: string;
  /** The quoted `dead_letters` table. */
  table: string;
  /** Who acts, for the audit of replays and discards, unless a call says otherwise. */
  actor: string;
}

/** Validates `schema` once and quotes the names every query uses. */
export function storeContext(db: Queryable, schema: string, actor: string): StoreContext {
  const quotedSchema = quoteIdentifier(schema);
  return { db, schema, quotedSchema, table: `${quotedSchema}.dead_letters`, actor };
}
