import { z } from 'zod/v4';
import { DEFAULT_DEAD_LETTERS, DEFAULT_SCHEMA, type AmqpConnection, type Logger, type MetricsRegistry } from '@mailroom/core';
import { queryableSchema } from './dead-letter-store-options.js';

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null;

/**
 * The options of `createDeadLetterSink`: the single source of each option's type, default and
 * description. `mailroom dlq sink` derives its environment variables (`env`, or `MAILROOM_` +
 * the name in upper snake case) and its `--help` from this schema.
 */
export const deadLetterSinkOptionsSchema = z.strictObject({
  /** A pg Pool or a kysely instance; dead letters are written to `<schema>.dead_letters`. */
  db: queryableSchema.meta({ description: 'a pg Pool or a kysely instance; dead letters are written to <schema>.dead_letters' }),
  /** The schema of mailroom's tables. Default: `mailroom`. */
  schema: z.string().default(DEFAULT_SCHEMA).meta({ description: "schema of mailroom's tables" }),
  /** A RabbitMQ URL (the sink opens and closes its own connection) or a shared connection (left open). */
  amqp: z
    .union([z.string().min(1), z.custom<AmqpConnection>((v) => isObject(v) && typeof v.get === 'function', 'expected an AmqpConnection')])
    .meta({ env: 'MAILROOM_AMQP_URL', description: 'RabbitMQ URL, e.g. amqp://user:pass@host:5672/vhost (required)' }),
  /** The dead-letter exchange and queue to drain. Default: `mailroom.dead-letters` for both. */
  topology: z
    .strictObject({
      /** The exchange consumers publish dead letters to. Default: `mailroom.dead-letters`. */
      exchange: z
        .string()
        .min(1)
        .default(DEFAULT_DEAD_LETTERS)
        .meta({ env: 'MAILROOM_DEAD_LETTER_EXCHANGE', description: 'dead-letter exchange consumers publish to' }),
      /** The queue the sink drains. Default: `mailroom.dead-letters`. */
      queue: z.string().min(1).default(DEFAULT_DEAD_LETTERS).meta({ env: 'MAILROOM_DEAD_LETTER_QUEUE', description: 'dead-letter queue the sink drains' }),
    })
    // prefault: a missing topology is parsed as `{}`, so the two defaults above fill it in.
    .prefault({})
    .meta({ description: 'the dead-letter exchange and queue' }),
  /** Unacknowledged dead letters in flight. Default: 20. */
  prefetch: z
    .number()
    .int()
    .min(1)
    .max(65_535)
    .default(20)
    .meta({ env: 'MAILROOM_DEAD_LETTER_PREFETCH', description: 'unacknowledged dead letters the sink has in flight' }),
  /**
   * The largest body stored whole, in bytes. A larger one is stored cut to this size (raw, so
   * never replayed) and the cut is recorded in the row. Default: 1 MiB.
   */
  maxBodyBytes: z
    .number()
    .int()
    .min(1024)
    .max(64 * 1024 * 1024)
    .default(1024 * 1024)
    .meta({ env: 'MAILROOM_DEAD_LETTER_MAX_BODY_BYTES', description: 'largest dead-letter body stored whole, in bytes (larger: cut, never replayed)' }),
  /**
   * The budget, in bytes of JSON, for the headers of one dead letter (and the longest key kept).
   * Headers are kept in their order while they fit; the others are left out and named in the
   * row. Default: 64 KiB.
   */
  maxHeaderBytes: z
    .number()
    .int()
    .min(1024)
    .max(16 * 1024 * 1024)
    .default(64 * 1024)
    .meta({ env: 'MAILROOM_DEAD_LETTER_MAX_HEADER_BYTES', description: 'budget for the headers of one dead letter, in bytes of JSON (the rest: left out)' }),
  /** Registry the sink's counters are added to (`mailroom_dead_letter_sink_*`). Default: none (stats only). */
  metrics: z.custom<MetricsRegistry>((v) => isObject(v) && typeof v.counter === 'function', 'expected a MetricsRegistry').optional(),
  /** Where problems are logged. Default: silent. */
  logger: z.custom<Logger>((v) => isObject(v) && typeof v.warn === 'function', 'expected a Logger').optional(),
});

/** Options of `createDeadLetterSink`. Every field but `db` and `amqp` has a default. */
export type DeadLetterSinkOptions = z.input<typeof deadLetterSinkOptionsSchema>;
