// Starts `mailroom relay` (the built CLI) as a child process, as a sidecar would run.
import { fileURLToPath } from 'node:url';
import { vi } from 'vitest';
import { spawnNode, testUrls, type Child } from '../../../test/helpers.js';

const CLI = fileURLToPath(new URL('../../cli/dist/main.js', import.meta.url));

/** A relay child process and the port of its HTTP server. */
export interface RelayProcess extends Child {
  port(): Promise<number>;
  metrics(): Promise<string>;
}

/** Starts a relay process on `schema` with extra MAILROOM_* variables. */
export function startRelayProcess(schema: string, env: Record<string, string> = {}): RelayProcess {
  const { databaseUrl, amqpUrl } = testUrls();
  const child = spawnNode(CLI, ['relay'], {
    MAILROOM_DATABASE_URL: databaseUrl,
    MAILROOM_AMQP_URL: amqpUrl,
    MAILROOM_SCHEMA: schema,
    MAILROOM_HTTP_HOST: '127.0.0.1',
    MAILROOM_HTTP_PORT: '0',
    MAILROOM_POLL_INTERVAL_MS: '200',
    MAILROOM_LOG_LEVEL: 'info',
    ...env,
  });
  const port$ = vi
    .waitFor(
      () => {
        const match = /"event":"listening","port":(\d+)/.exec(child.output());
        if (match) return Number(match[1]);
        // Exited without listening: stop waiting, and say so below.
        if (child.process.exitCode !== null || child.process.signalCode !== null) return undefined;
        throw new Error(`the relay is not listening yet:\n${child.output()}`);
      },
      { timeout: 20_000, interval: 50 },
    )
    .then((port) => {
      if (port === undefined) throw new Error(`relay exited before listening:\n${child.output()}`);
      return port;
    });
  // A process that is expected to fail never listens: that is not an unhandled error.
  port$.catch(() => undefined);
  return {
    ...child,
    port: () => port$,
    async metrics() {
      const res = await fetch(`http://127.0.0.1:${await port$}/metrics`);
      return res.text();
    },
  };
}

/** Reads one sample of a Prometheus metric (without labels) from a metrics text. */
export function metricValue(text: string, name: string): number {
  const match = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  return match ? Number(match[1]) : Number.NaN;
}

/** Rows left in the outbox of `schema`. */
export async function outboxCount(pool: { query(text: string): Promise<{ rows: unknown[] }> }, schema: string): Promise<number> {
  const result = await pool.query(`SELECT count(*)::int AS n FROM "${schema}".outbox`);
  return (result.rows[0] as { n: number }).n;
}
