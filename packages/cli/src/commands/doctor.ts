import pg from 'pg';
import { createAmqpConnection, describeError, quoteIdentifier, redactUrl } from '@mailroom/core';
import type { Command } from '../command.js';
import { AMQP_VARS, DATABASE_VARS, describeEnv, readEnv } from '../env.js';

/** `mailroom doctor`: checks that PostgreSQL and RabbitMQ answer and the tables exist. */
export const doctorCommand: Command = {
  name: 'doctor',
  summary: 'check that PostgreSQL and RabbitMQ are reachable and the tables are migrated',
  help: () => ['Usage: mailroom doctor', '', 'Environment:', describeEnv([...DATABASE_VARS, ...AMQP_VARS])].join('\n'),
  async run({ env, stdout }) {
    const vars = readEnv(env, [...DATABASE_VARS, ...AMQP_VARS]);
    let ok = true;
    const pool = new pg.Pool({ connectionString: vars.MAILROOM_DATABASE_URL, max: 1, connectionTimeoutMillis: 5000 });
    pool.on('error', () => undefined);
    try {
      const version = await pool.query<{ v: string }>("SELECT current_setting('server_version') AS v");
      stdout.write(`ok    PostgreSQL ${version.rows[0]?.v ?? '?'} at ${redactUrl(vars.MAILROOM_DATABASE_URL as string)}\n`);
      const table = `${quoteIdentifier(vars.MAILROOM_SCHEMA as string)}.outbox`;
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
      stdout.write(`FAIL  PostgreSQL at ${redactUrl(vars.MAILROOM_DATABASE_URL as string)}: ${describeError(error)}\n`);
    } finally {
      await pool.end().catch(() => undefined);
    }
    const amqp = createAmqpConnection({ url: vars.MAILROOM_AMQP_URL as string, name: 'mailroom-doctor' });
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
