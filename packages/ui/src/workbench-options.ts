import { z } from 'zod/v4';
import { DEFAULT_SCHEMA, type Queryable } from '@mailroom/core';

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null;

/** The options of `createWorkbench`: the single source of their types and defaults. */
export const workbenchOptionsSchema = z.strictObject({
  /** A pg Pool (or Client) or a kysely instance: the workbench reads and writes through the dead-letter store on it. */
  db: z.custom<Queryable>(
    (v) => isObject(v) && (typeof v.query === 'function' || typeof v.executeQuery === 'function'),
    'expected a pg Pool or Client, or a kysely instance',
  ),
  /** The schema of mailroom's tables. Default: `mailroom`. */
  schema: z.string().min(1).default(DEFAULT_SCHEMA),
  /**
   * Where the workbench is mounted in your server: `''` for the root, or a path such as
   * `/ops/mailroom` (no trailing slash). The handler answers only below it. Default: `''`.
   */
  basePath: z
    .string()
    .regex(/^(\/[A-Za-z0-9._~-]+)*$/, 'a path like /ops/mailroom (no trailing slash), or empty')
    .default(''),
  /** Show everything, change nothing: no action forms, and every POST is refused (403). Default: false. */
  readOnly: z.boolean().default(false),
  /**
   * A secret every request must carry: `Authorization: Bearer <token>`, or once as `?token=` (the
   * workbench then sets an HttpOnly cookie and drops it from the address). Default: none (no check;
   * `startWorkbench` requires one when it binds anything but a loopback address).
   */
  token: z.string().min(16, 'a token of at least 16 characters').optional(),
  /**
   * Host names (with port) requests may carry in `Host`: a guard against DNS rebinding, where a web
   * page renames its own host to your loopback address. Default: any (`startWorkbench` sets the
   * loopback names when it binds a loopback address).
   */
  allowedHosts: z.array(z.string().min(1)).optional(),
  /** Who acts, for the audit of replays and discards. Default: `ui:<os user>@<host>`. */
  actor: z.string().min(1).max(400).optional(),
  /**
   * A request header naming the person behind a proxy that authenticated them (`x-forwarded-user`):
   * the audit then records `ui:<that name>`. Only set it behind such a proxy. Default: none.
   */
  actorHeader: z.string().min(1).optional(),
  /** The default rate limit of a bulk replay, in messages per second (each job may say otherwise). Default: 200. */
  replayRatePerSecond: z.number().positive().max(100_000).default(200),
  /** Dead letters per page of the list. Default: 50. */
  pageSize: z.number().int().min(1).max(1000).default(50),
});

/** Options of `createWorkbench`. */
export type WorkbenchOptions = z.input<typeof workbenchOptionsSchema>;

/** The options with their defaults filled in. */
export type ResolvedWorkbenchOptions = z.output<typeof workbenchOptionsSchema>;
