import { z } from 'zod';
import { DEFAULT_SCHEMA } from '@mailroom/core';
import { envSpec } from './env.js';

/**
 * What commands that talk to PostgreSQL or RabbitMQ read, beyond a library's own options
 * (`mailroom relay` takes these from the relay's schema instead).
 */
export const connectionEnvSchema = z.strictObject({
  /** MAILROOM_DATABASE_URL. */
  databaseUrl: z.string().min(1).meta({ description: 'PostgreSQL URL, e.g. postgres://user:pass@host:5432/db (required)' }),
  /** MAILROOM_SCHEMA. */
  schema: z.string().min(1).default(DEFAULT_SCHEMA).meta({ description: "schema of mailroom's tables" }),
  /** MAILROOM_AMQP_URL. */
  amqpUrl: z.string().min(1).meta({ description: 'RabbitMQ URL, e.g. amqp://user:pass@host:5672/vhost (required)' }),
});

/** MAILROOM_DATABASE_URL and MAILROOM_SCHEMA. */
export const DATABASE_ENV = envSpec(connectionEnvSchema, { pick: ['databaseUrl', 'schema'] });

/** MAILROOM_AMQP_URL. */
export const AMQP_ENV = envSpec(connectionEnvSchema, { pick: ['amqpUrl'] });
