import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import type { CommitValue, History } from './history.js';
import { createRandom, type Random } from './random.js';

/** What every producer workload shares: where to commit, with how many producers, how fast. */
export interface ProducerConfig {
  databaseUrl: string;
  applicationName: string;
  seed: number;
  producers: number;
  /** Transactions per second of all producers together (each waits 0.5–1.5 times its share between two). */
  transactionsPerSecond: number;
}

/** One transaction a workload planned: its events, whether it rolls back, what it writes. */
export interface PlannedTransaction {
  value: CommitValue;
  rollback: boolean;
  /** Writes the rows and outbox events after `BEGIN`; `COMMIT` or `ROLLBACK` follows. */
  write: (client: pg.PoolClient) => Promise<void>;
}

/** How a workload plans its transactions. */
export interface TransactionPlanner {
  /** Producer `p` (0-based) draws from the random stream seeded `seed * seedFactor + p + 1`. */
  seedFactor: number;
  /** Plans producer `p`'s next transaction, named `tx`, drawing everything random from `random`. */
  plan: (random: Random, p: number, tx: string) => PlannedTransaction;
}

/**
 * Producer workers until `stopSignal` aborts: each runs the planner's transactions one after the
 * other. Every transaction is an invoke and an ok / fail / info `commit` in the history: before
 * `COMMIT` is sent a failure is a certain `fail`; a lost reply to `COMMIT` is an `info` (unknown
 * outcome), settled later by the final state.
 */
export function runProducers(config: ProducerConfig, planner: TransactionPlanner, history: History, stopSignal: AbortSignal): Promise<void> {
  const pool = new pg.Pool({
    connectionString: config.databaseUrl,
    max: config.producers,
    application_name: config.applicationName,
    connectionTimeoutMillis: 3000,
    query_timeout: 5000,
  });
  pool.on('error', () => undefined);
  pool.on('connect', (client) => client.on('error', () => undefined));
  const gapMs = (config.producers / config.transactionsPerSecond) * 1000;
  let txCounter = 0;

  const worker = async (p: number): Promise<void> => {
    const random = createRandom(config.seed * planner.seedFactor + p + 1);
    const name = `producer-${p + 1}`;
    while (!stopSignal.aborted) {
      txCounter += 1;
      const { value, rollback, write } = planner.plan(random, p, `${name}.${txCounter}`);
      history.add('invoke', name, 'commit', value);
      let client: pg.PoolClient | undefined;
      let committing = false;
      try {
        client = await pool.connect();
        await client.query('BEGIN');
        await write(client);
        if (rollback) {
          await client.query('ROLLBACK');
          history.add('fail', name, 'commit', { ...value, reason: 'rolled back' });
        } else {
          committing = true;
          await client.query('COMMIT');
          history.add('ok', name, 'commit', value);
        }
        client.release();
      } catch (error) {
        client?.release(error instanceof Error ? error : new Error(String(error)));
        const reason = error instanceof Error ? error.message : String(error);
        // Before COMMIT was sent the transaction cannot have committed; after, nobody knows.
        history.add(committing ? 'info' : 'fail', name, 'commit', { ...value, reason });
        if (!rollback && !committing) await sleep(100);
      }
      await sleep(Math.max(1, gapMs * (0.5 + random.next())));
    }
  };
  return Promise.all(Array.from({ length: config.producers }, (_, p) => worker(p)))
    .then(() => undefined)
    .finally(() => pool.end().catch(() => undefined));
}
