import { EventEmitter } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { MailroomError, MetricsRegistry, describeError, redactUrl, silentLogger, type AmqpConnection, type PgPoolLike } from '@mailroom/core';
import { quoteIdentifier, resolveAmqpConnection } from '@mailroom/core/internal';
import type { Settlement } from './batch-settlement.js';
import { runOrderedLoop } from './ordered-loop.js';
import type { PartitionLease } from './partition-lease.js';
import type { RelayEvents, RelayStats } from './relay-events.js';
import { createRelayMetrics, type RelayMetrics } from './relay-metrics.js';
import { resolveRelayOptions, type RelayOptions, type ResolvedRelayOptions } from './relay-options.js';
import type { RelayRuntime } from './relay-runtime.js';
import { relaySql } from './relay-sql.js';
import { runUnorderedLoop } from './unordered-loop.js';
import { createWakeUp } from './wake-up.js';

/**
 * A running outbox relay: claims committed rows, publishes them with confirms, deletes them.
 * Made by {@link createRelay}.
 */
export interface Relay extends EventEmitter<RelayEvents> {
  /** Starts the relay: checks the tables, listens for NOTIFY and starts the publish loops. Once only. */
  start(): Promise<void>;
  /** Stops claiming, finishes the batch in flight, closes what the relay opened. Always resolves. */
  stop(): Promise<void>;
  /** Settles when the relay has stopped. */
  readonly done: Promise<void>;
  /** True while the relay can publish: the database answered and the broker is connected. */
  readonly ready: boolean;
  /** The metrics registry (Prometheus text via `metrics.render()`). */
  readonly metrics: MetricsRegistry;
  /** Counts so far, of committed batches only (a copy). */
  readonly stats: RelayStats;
  /** Partitions leased now (ordering mode). */
  leasedPartitions(): number[];
  /** Outbox rows waiting and the age in seconds of the oldest one. */
  backlog(): Promise<{ rows: number; oldestAgeSeconds: number }>;
  /** `await using relay = createRelay(…)` stops it at the end of the scope. */
  [Symbol.asyncDispose](): Promise<void>;
}

/** Creates a relay. Options are validated now (unknown keys are named); nothing connects until `start()`. */
export function createRelay(options: RelayOptions): Relay {
  return new OutboxRelay(resolveRelayOptions(options));
}

type State = 'new' | 'running' | 'stopping' | 'stopped';

// The handle: lifecycle, readiness and reporting. The work is in the loops (unordered-loop.ts,
// ordered-loop.ts), one batch in relay-batch.ts; they reach the handle through `#runtime`.
class OutboxRelay extends EventEmitter<RelayEvents> implements Relay {
  readonly metrics: MetricsRegistry;
  readonly done: Promise<void>;
  readonly #o: ResolvedRelayOptions;
  readonly #pool: PgPoolLike;
  readonly #ownsPool: boolean;
  readonly #amqp: AmqpConnection;
  readonly #ownsAmqp: boolean;
  readonly #counts: RelayMetrics;
  readonly #runtime: RelayRuntime;
  readonly #resolveDone: () => void;
  #state: State = 'new';
  #loops: Promise<void>[] = [];
  #lease: PartitionLease | undefined;
  /** Whether the last batch (or the start-up check) reached the database without error. */
  #healthy = false;

  constructor(options: ResolvedRelayOptions) {
    super();
    this.#o = options;
    const log = options.logger ?? silentLogger;
    if (typeof options.database === 'string') {
      const pool = new pg.Pool({ connectionString: options.database, max: options.concurrency + 3, application_name: options.name });
      pool.on('error', (error) => log.warn('idle database connection failed', { error: describeError(error) }));
      this.#pool = pool;
      this.#ownsPool = true;
    } else {
      this.#pool = options.database;
      this.#ownsPool = false;
    }
    ({ connection: this.#amqp, owned: this.#ownsAmqp } = resolveAmqpConnection(options.amqp, { name: options.name, logger: log }));
    this.metrics = options.metrics ?? new MetricsRegistry();
    this.#counts = createRelayMetrics(this.metrics, { backlog: () => this.backlog(), ready: () => this.ready });
    let resolveDone!: () => void;
    this.done = new Promise((resolve) => (resolveDone = resolve));
    this.#resolveDone = resolveDone;
    const failure = (stage: string, error: unknown): void => {
      const text = describeError(error);
      log.warn(`relay ${stage} failed: ${text}`);
      this.emit('failure', { stage, error: text });
    };
    this.#runtime = {
      options,
      log,
      sql: relaySql(options.schema),
      pool: this.#pool,
      amqp: this.#amqp,
      wake: createWakeUp({ pool: this.#pool, schema: options.schema, pollIntervalMs: options.pollIntervalMs, log, onFailure: failure }),
      setHealthy: (healthy) => (this.#healthy = healthy),
      failure,
      committed: (settlement, durationMs) => this.#committed(settlement, durationMs),
      rolledBack: () => this.#counts.rolledBack(),
    };
  }

  get ready(): boolean {
    return this.#state === 'running' && this.#healthy && this.#amqp.connected;
  }

  get stats(): RelayStats {
    return this.#counts.stats;
  }

  leasedPartitions(): number[] {
    return this.#lease?.held ?? [];
  }

  async backlog(): Promise<{ rows: number; oldestAgeSeconds: number }> {
    const result = await this.#pool.query(this.#runtime.sql.backlog);
    const row = result.rows[0] as { rows: number; oldest_age: number } | undefined;
    return { rows: row?.rows ?? 0, oldestAgeSeconds: row?.oldest_age ?? 0 };
  }

  async start(): Promise<void> {
    if (this.#state !== 'new') throw new MailroomError('STOPPED', 'A relay can be started once.');
    const o = this.#o;
    const table = `${quoteIdentifier(o.schema)}.outbox`;
    let present: unknown;
    try {
      present = (await this.#pool.query('SELECT to_regclass($1) IS NOT NULL AS present', [table])).rows[0];
    } catch (error) {
      const where = typeof o.database === 'string' ? ` at ${redactUrl(o.database)}` : '';
      throw new MailroomError('UNREACHABLE', `The relay cannot reach PostgreSQL${where}: ${describeError(error)}`, { cause: error });
    }
    if ((present as { present?: boolean } | undefined)?.present !== true) {
      throw new MailroomError('MIGRATION_FAILED', `Table ${table} does not exist: run \`mailroom migrate\` (or migrate()) first.`);
    }
    this.#healthy = true;
    this.#state = 'running';
    await this.#runtime.wake.listen();
    // Connect in the background: the loops wait for the broker, readiness reports it.
    this.#amqp.get().catch(() => undefined);
    if (o.ordering) {
      this.#loops.push(runOrderedLoop(this.#runtime, (lease) => (this.#lease = lease)));
    } else {
      for (let i = 0; i < o.concurrency; i++) this.#loops.push(runUnorderedLoop(this.#runtime, i));
    }
    this.#runtime.log.info(
      `relay started: schema "${o.schema}", ${o.ordering ? `ordering on, ${o.partitions} partitions` : `${o.concurrency} workers`}, batch ${o.batchSize}`,
    );
  }

  async stop(): Promise<void> {
    if (this.#state === 'stopped' || this.#state === 'stopping') return this.done;
    const wasRunning = this.#state === 'running';
    this.#state = 'stopping';
    this.#runtime.wake.stop();
    if (wasRunning) {
      const timeout = sleep(this.#o.shutdownTimeoutMs, undefined, { ref: false }).then(() => 'timeout' as const);
      const finished = await Promise.race([Promise.allSettled(this.#loops).then(() => 'done' as const), timeout]);
      if (finished === 'timeout') this.#runtime.log.warn(`relay stop: batch still in flight after ${this.#o.shutdownTimeoutMs} ms, closing anyway`);
    }
    this.#runtime.wake.close();
    if (this.#ownsAmqp) await this.#amqp.close();
    if (this.#ownsPool) await (this.#pool as unknown as pg.Pool).end().catch(() => undefined);
    this.#state = 'stopped';
    this.#runtime.log.info('relay stopped');
    this.emit('stopped');
    this.#resolveDone();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }

  /** Counts and announces a batch whose transaction committed. */
  #committed(settlement: Settlement, durationMs: number): void {
    this.#counts.committed(settlement);
    const log = this.#runtime.log;
    for (const dead of settlement.deadLetters) {
      log.warn(`outbox row ${dead.messageId} moved to dead letters (${dead.reason}): ${dead.error}`);
      this.emit('deadLettered', dead);
    }
    if (settlement.retried > 0) log.warn(`relay: ${settlement.retried} row(s) will be retried: ${settlement.firstRetryError}`);
    this.emit('batch', {
      claimed: settlement.claimed,
      published: settlement.published,
      retried: settlement.retried,
      deadLettered: settlement.deadLetters.length,
      durationMs,
    });
  }
}
