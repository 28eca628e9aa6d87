import * as amqp from 'amqplib';
import pg from 'pg';
import type { ChaosDbContext } from './chaos-options.js';

/**
 * The harness's own links, straight to PostgreSQL and RabbitMQ (never through the fault
 * proxies): setup, the nemesis's injections and backend terminations, the drain's progress and
 * the final reads must work while the workers' links are broken.
 */
export interface AdminLinks {
  readonly pool: pg.Pool;
  /** `setup` and `verify`'s query function, on `pool`. */
  readonly query: ChaosDbContext['query'];
  /** The AMQP connection, opened again if it closed (a bound function: the nemesis keeps it). */
  readonly connection: () => Promise<amqp.ChannelModel>;
  /** One confirm channel on it, opened again if it closed (a bound function too). */
  readonly channel: () => Promise<amqp.ConfirmChannel>;
  /** Closes both; never rejects. */
  close(): Promise<void>;
}

/** Opens the harness's links (the AMQP connection on first use). */
export function openAdminLinks(databaseUrl: string, amqpUrl: string): AdminLinks {
  const pool = new pg.Pool({ connectionString: databaseUrl, max: 4, application_name: 'mailroom-chaos-harness' });
  pool.on('error', () => undefined);
  let model: amqp.ChannelModel | undefined;
  let confirm: amqp.ConfirmChannel | undefined;
  // A cluster's node URLs, comma-separated: tried in turn from the last that worked (a node may be down).
  const urls = amqpUrl.split(',').map((u) => u.trim()).filter((u) => u !== '');
  let next = 0;
  const connectAny = async (): Promise<amqp.ChannelModel> => {
    let last: unknown;
    for (let i = 0; i < urls.length; i += 1) {
      const index = (next + i) % urls.length;
      try {
        const c = await amqp.connect(urls[index] as string);
        next = index;
        return c;
      } catch (error) {
        last = error;
      }
    }
    throw last;
  };
  const connection = async (): Promise<amqp.ChannelModel> => {
    if (model === undefined) {
      const c = await connectAny();
      c.on('error', () => undefined);
      c.on('close', () => {
        model = undefined;
        confirm = undefined;
      });
      model = c;
    }
    return model;
  };
  return {
    pool,
    async query<R extends Record<string, unknown>>(text: string, params?: unknown[]) {
      const result = await pool.query<R>(text, params);
      return { rows: result.rows };
    },
    connection,
    channel: async () => {
      if (confirm !== undefined) return confirm;
      const ch = await (await connection()).createConfirmChannel();
      ch.on('error', () => undefined);
      ch.on('close', () => {
        if (confirm === ch) confirm = undefined;
      });
      confirm = ch;
      return ch;
    },
    async close() {
      await model?.close().catch(() => undefined);
      await pool.end().catch(() => undefined);
    },
  };
}
