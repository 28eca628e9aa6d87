import { z } from 'zod/v4';
import { DEFAULT_SCHEMA, type Queryable } from '@mailroom/core';

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null;

/** A pg Pool, Client or PoolClient, or a kysely Kysely or Transaction (typed structurally). */
export const queryableSchema = z.custom<Queryable>(
  (v) => isObject(v) && (typeof v.query === 'function' || typeof v.executeQuery === 'function'),
  'expected a pg Pool or Client, or a kysely instance',
);

/** The options of `createDeadLetterStore`: the single source of their types and defaults. */
export const deadLetterStoreOptionsSchema = z.strictObject({
  /** A pg Pool (or Client) or a kysely instance. */
  db: queryableSchema.meta({ description: 'a pg Pool (or Client) or a kysely instance' }),
  /** The schema of mailroom's tables. Default: `mailroom`. */
  schema: z.string().default(DEFAULT_SCHEMA).meta({ description: "schema of mailroom's tables" }),
  /**
   * Who replays and discards through this store, as recorded in the audit (`dead_letter_actions`):
   * a service name, an operator. Each call can say otherwise. Default: `api:<os user>@<host>`.
   */
  actor: z.string().min(1).max(500).optional().meta({ description: 'who acts, for the audit of replays and discards' }),
});

/** Options of `createDeadLetterStore`. */
export type DeadLetterStoreOptions = z.input<typeof deadLetterStoreOptionsSchema>;
