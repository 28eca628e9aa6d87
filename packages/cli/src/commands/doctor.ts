import pg from 'pg';
import { createAmqpConnection, describeError, redactUrl } from '@mailroom/core';
import { quoteIdentifier, validateIdentifier } from '@mailroom/core/internal';
import type { Command } from '../command.js';
import { AMQP_ENV, DATABASE_ENV } from '../connection-env.js';
import { combineEnv, describeEnv, readEnv } from '../env.js';

const DOCTOR_ENV = combineEnv(DATABASE_ENV, AMQP_ENV);

/** `mailroom doctor`: checks that PostgreSQL and RabbitMQ answer and the tables exist. */
export const doctorCommand: Command = {
  help: () => ['Usage: mailroom doctor', '', 'Environment:', describeEnv(DOCTOR_ENV)].join('\n'),
  async run({ env, stdout }) {
    const vars = readEnv(env, DOCTOR_ENV);
    validateIdentifier(vars.schema);
    let ok = true;
    const pool = new pg.Pool({ connectionString: vars.databaseUrl, max: 1, connectionTimeoutMillis: 5000 });
    pool.on('error', () => undefined);
    try {
      const version = await pool.query<{ v: string }>("SELECT current_setting('server_version') AS v");
      stdout.write(`ok    PostgreSQL ${version.rows[0]?.v ?? '?'} at ${redactUrl(vars.databaseUrl)}\n`);
      const table = `${quoteIdentifier(vars.schema)}.outbox`;
      const present = await pool.query<{ p: boolean }>('SELECT to_regclass($1) IS NOT NULL AS p', [table]);
      if (present.rows[0]?.p === true) {
        const backlog = await pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${table}`);
        stdout.write(`ok    ${table} exists, ${backlog.rows[0]?.n ?? 0} rows waiting\n`);
      } else {
        ok = false;
        stdout.write(`FAIL  ${table} does not exist: run \`mailroom migrate\`\n`);
      }
    } catch (error) {
      ok = false;
      stdout.write(`FAIL  PostgreSQL at ${redactUrl(vars.databaseUrl)}: ${describeError(error)}\n`);
    } finally {
      await pool.end().catch(() => undefined);
    }
    const amqp = createAmqpConnection({ url: vars.amqpUrl, name: 'mailroom-doctor' });
    try {
      const connection = await amqp.connectOnce();
      const props = (connection.connection as unknown as { serverProperties?: { version?: string } }).serverProperties;
      stdout.write(`ok    RabbitMQ ${props?.version ?? ''} at ${amqp.displayUrl}\n`);
    } catch (error) {
      ok = false;
      stdout.write(`FAIL  ${describeError(error)}\n`);
    } finally {
      await amqp.close();
    }
    return ok ? 0 : 1;
  },
};
