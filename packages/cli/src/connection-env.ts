import { readFileSync } from 'node:fs';
import { z } from 'zod/v4';
import { DEFAULT_SCHEMA, MailroomError, describeError, type AmqpConnectionOptions, type AmqpTlsOptions } from '@mailroom/core';
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

/**
 * TLS and authentication of the RabbitMQ connection: the files are read at start, so a mounted
 * secret works as is. Everything is optional: without them `amqps://` uses Node's CA store and
 * the user and password of the URL.
 */
export const amqpTlsEnvSchema = z.strictObject({
  /** MAILROOM_AMQP_TLS_CA_FILE. */
  amqpTlsCaFile: z.string().min(1).optional().meta({ description: 'PEM file of the CA(s) that signed the broker certificate (amqps:// URLs)' }),
  /** MAILROOM_AMQP_TLS_CERT_FILE. */
  amqpTlsCertFile: z.string().min(1).optional().meta({ description: 'PEM file of the client certificate chain (mutual TLS)' }),
  /** MAILROOM_AMQP_TLS_KEY_FILE. */
  amqpTlsKeyFile: z.string().min(1).optional().meta({ description: 'PEM file of the client private key (with the certificate)' }),
  /** MAILROOM_AMQP_TLS_KEY_PASSPHRASE. */
  amqpTlsKeyPassphrase: z.string().min(1).optional().meta({ description: 'passphrase of that key, if it is encrypted' }),
  /** MAILROOM_AMQP_TLS_SERVERNAME. */
  amqpTlsServername: z.string().min(1).optional().meta({ description: 'server name for SNI and the certificate check (default: the URL host)' }),
  /** MAILROOM_AMQP_TLS_REJECT_UNAUTHORIZED. */
  amqpTlsRejectUnauthorized: z.boolean().default(true).meta({ description: 'refuse a broker certificate that does not verify (true/false)' }),
  /** MAILROOM_AMQP_AUTH. */
  amqpAuth: z
    .enum(['plain', 'external'])
    .default('plain')
    .meta({ description: 'plain (user and password from the URL) or external (SASL EXTERNAL: the identity of the client certificate)' }),
});

/** MAILROOM_AMQP_TLS_* and MAILROOM_AMQP_AUTH. */
export const AMQP_TLS_ENV = envSpec(amqpTlsEnvSchema);

/** The values of {@link AMQP_TLS_ENV}. */
export type AmqpTlsEnv = z.output<typeof amqpTlsEnvSchema>;

/** Several RabbitMQ URLs of one cluster may be given, separated by commas. */
export function splitAmqpUrls(text: string): string[] {
  return text
    .split(',')
    .map((u) => u.trim())
    .filter((u) => u !== '');
}

function readPem(variable: string, file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (error) {
    throw new MailroomError('INVALID_CONFIG', `Invalid environment: ${variable}: cannot read ${file}: ${describeError(error)}.`);
  }
}

/**
 * The options of `createAmqpConnection` (from @mailroom/core) for these URLs and variables: the
 * PEM files read, and the combinations that cannot work refused by variable name (a certificate
 * without its key, EXTERNAL without a certificate, TLS files with an `amqp://` URL).
 */
export function amqpConnectionOptions(urls: readonly string[], env: AmqpTlsEnv): Pick<AmqpConnectionOptions, 'url' | 'tls' | 'auth'> {
  const problems: string[] = [];
  if ((env.amqpTlsCertFile === undefined) !== (env.amqpTlsKeyFile === undefined)) {
    problems.push('MAILROOM_AMQP_TLS_CERT_FILE and MAILROOM_AMQP_TLS_KEY_FILE go together');
  }
  if (env.amqpAuth === 'external' && env.amqpTlsCertFile === undefined) {
    problems.push('MAILROOM_AMQP_AUTH=external needs a client certificate (MAILROOM_AMQP_TLS_CERT_FILE and MAILROOM_AMQP_TLS_KEY_FILE)');
  }
  const usesTls =
    env.amqpTlsCaFile !== undefined ||
    env.amqpTlsCertFile !== undefined ||
    env.amqpTlsServername !== undefined ||
    !env.amqpTlsRejectUnauthorized ||
    env.amqpAuth === 'external';
  if (usesTls && urls.some((u) => !u.toLowerCase().startsWith('amqps://'))) {
    problems.push('MAILROOM_AMQP_TLS_* and MAILROOM_AMQP_AUTH=external need amqps:// URLs in MAILROOM_AMQP_URL');
  }
  if (problems.length > 0) throw new MailroomError('INVALID_CONFIG', `Invalid environment: ${problems.join('; ')}. See --help for every variable.`);
  const tls: AmqpTlsOptions = {};
  if (env.amqpTlsCaFile !== undefined) tls.ca = readPem('MAILROOM_AMQP_TLS_CA_FILE', env.amqpTlsCaFile);
  if (env.amqpTlsCertFile !== undefined) tls.cert = readPem('MAILROOM_AMQP_TLS_CERT_FILE', env.amqpTlsCertFile);
  if (env.amqpTlsKeyFile !== undefined) tls.key = readPem('MAILROOM_AMQP_TLS_KEY_FILE', env.amqpTlsKeyFile);
  if (env.amqpTlsKeyPassphrase !== undefined) tls.passphrase = env.amqpTlsKeyPassphrase;
  if (env.amqpTlsServername !== undefined) tls.servername = env.amqpTlsServername;
  if (!env.amqpTlsRejectUnauthorized) tls.rejectUnauthorized = false;
  return { url: urls, ...(usesTls ? { tls } : {}), auth: env.amqpAuth };
}
