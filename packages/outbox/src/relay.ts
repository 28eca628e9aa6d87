import { EventEmitter } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { MailroomError, MetricsRegistry, describeError, redactUrl, silentLogger, type AmqpConnection, type PgPoolLike } from '@mailroom/core';
import { assertGrants, checkOut, describeLostConnection, describeTransient, guardPool, quoteIdentifier, resolveAmqpConnection, retryTransient } from '@mailroom/core/internal';
import { backlogSql, cachedBacklog, readBacklog, type Backlog } from './backlog-probe.js';
import type { Settlement } from './batch-settlement.js';
import { LinkFailure, LinkHealth, causeOf, unwrapFailure, type RelayLinks } from './link-health.js';
import { runOrderedLoop } from './ordered-loop.js';
import type { PartitionLease } from './partition-lease.js';
import type { RelayEvents, RelayStats } from './relay-events.js';
import { createRelayMetrics, type RelayMetrics } from './relay-metrics.js';
import { resolveRelayOptions, type RelayOptions, type ResolvedRelayOptions } from './relay-options.js';
import type { RelayRuntime } from './relay-runtime.js';
import { relaySql } from './relay-sql.js';
import { emitSafely } from './safe-emit.js';
import { scheduledCount, type ScheduledCount } from './scheduled-count.js';
import { createScheduledMover, type ScheduledMover } from './scheduled-mover.js';
import { runUnorderedLoop } from './unordered-loop.js';
import { createWakeUp } from './wake-up.js';

/**
 * A running outbox relay: claims committed rows, publishes them with confirms, deletes them.
 * Made by {@link createRelay}.
 */
export interface Relay extends EventEmitter<RelayEvents> {
  /**
   * Starts the relay: checks the tables and the role's grants (`INVALID_CONFIG` naming each one
   * missing), listens for NOTIFY and starts the publish loops. Once only.
   */
  start(): Promise<void>;
  /** Stops claiming, finishes the batch in flight, closes what the relay opened. Always resolves. */
  stop(): Promise<void>;
  /** Settles when the relay has stopped. */
  readonly done: Promise<void>;
  /** True while the relay can publish: the database answered and the broker is connected. */
  readonly ready: boolean;
  /** Which link is up and, when one is down, why (what the sidecar's `/readyz` shows). */
  readonly links: RelayLinks;
  /** The metrics registry (Prometheus text via `metrics.render()`). */
  readonly metrics: MetricsRegistry;
  /** Counts so far, of committed batches only (a copy). */
  readonly stats: RelayStats;
  /** Partitions leased now (ordering mode). */
  leasedPartitions(): number[];
  /**
   * Outbox rows waiting and the age in seconds of the oldest one, in bounded work: exact up to
   * 10,000 rows, above that PostgreSQL's estimate (never less than 10,001).
   */
  backlog(): Promise<{ rows: number; oldestAgeSeconds: number }>;
  /**
   * Scheduled messages waiting for their time (`enqueue` with `deliverAt` / `delay`): how many
   * (bounded like `backlog()`), the earliest due time, and how far past it the earliest one is.
   * The same as `scheduledCount(pool, { schema })`.
   */
  scheduled(): Promise<ScheduledCount>;
  /** `await using relay = createRelay(…)` stops it at the end of the scope. */
  [Symbol.asyncDispose](): Promise<void>;
}

/** Creates a relay. Options are validated now (unknown keys are named); nothing connects until `start()`. */
export function createRelay(options: RelayOptions): Relay {
  return new OutboxRelay(resolveRelayOptions(options));
}

type State = 'new' | 'starting' | 'running' | 'stopping' | 'stopped';

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
  readonly #links: LinkHealth;
  readonly #runtime: RelayRuntime;
  readonly #mover: ScheduledMover;
  readonly #backlogSql: string;
  readonly #resolveDone: () => void;
  readonly #onConnected = (): void => this.#links.up('rabbitmq');
  readonly #onDisconnected = (error: Error | undefined): void =>
    this.#links.down('rabbitmq', `connection to ${this.#amqp.displayUrl} lost${error ? `: ${describeError(error)}` : ''} (reconnecting)`);
  #state: State = 'new';
  #loops: Promise<void>[] = [];
  #lease: PartitionLease | undefined;
  #unguardPool: () => void = () => undefined;

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
    this.#backlogSql = backlogSql(options.schema);
    this.#links = new LinkHealth((link, error) => {
      this.#counts.outage(link);
      log.warn(`relay: ${link} is down: ${error}`);
    });
    this.#counts = createRelayMetrics(this.metrics, {
      backlog: cachedBacklog(() => this.backlog()),
      scheduled: cachedBacklog(() => this.scheduled()),
      ready: () => this.ready,
      links: () => this.links,
    });
    let resolveDone!: () => void;
    this.done = new Promise((resolve) => (resolveDone = resolve));
    this.#resolveDone = resolveDone;
    const failure = (stage: string, error: unknown): void => {
      const cause = causeOf(error);
      const text = describeError(unwrapFailure(error));
      log.warn(`relay ${stage} failed (${cause}): ${text}`);
      this.#emit('failure', { stage, link: cause, error: text });
    };
    this.#runtime = {
      options,
      log,
      sql: relaySql(options.schema),
      pool: this.#pool,
      amqp: this.#amqp,
      wake: createWakeUp({
        checkOut: (onError) => checkOut(this.#pool, onError),
        schema: options.schema,
        pollIntervalMs: options.pollIntervalMs,
        log,
        onFailure: (stage, error) => failure(stage, new LinkFailure('postgres', error)),
        onScheduled: () => this.#mover.poke(),
      }),
      checkOut: () => checkOut(this.#pool, (error) => log.warn(`relay: ${describeLostConnection(error)}`)),
      linkUp: (link) => this.#links.up(link),
      linkDown: (link, error) => this.#links.down(link, error),
      batchFailed: (stage, error) => {
        const cause = causeOf(error);
        this.#counts.batchFailed(cause);
        if (cause !== 'other') this.#links.down(cause, describeError(unwrapFailure(error)));
        failure(stage, error);
      },
      failure,
      committed: (settlement, durationMs) => this.#committed(settlement, durationMs),
    };
    this.#mover = createScheduledMover(this.#runtime, {
      moved: (rows, duplicates) => {
        this.#counts.scheduledMoved(rows, duplicates.length);
        if (duplicates.length > 0) {
          log.warn(`relay: ${duplicates.length} scheduled message(s) fell due while the outbox held the same message id (not inserted twice): ${duplicates.slice(0, 5).join(', ')}`);
        }
      },
    });
  }

  get ready(): boolean {
    return this.#state === 'running' && this.#links.isUp('postgres') && this.#amqp.connected;
  }

  get links(): RelayLinks {
    const links = this.#links.snapshot();
    // The connection's own state is the truth for the broker (it may reconnect between batches).
    if (this.#amqp.connected && !links.rabbitmq.up) links.rabbitmq = { up: true, error: undefined, since: links.rabbitmq.since };
    if (!this.#amqp.connected && links.rabbitmq.up) links.rabbitmq = { up: false, error: `not connected to ${this.#amqp.displayUrl}`, since: new Date() };
    return links;
  }

  get stats(): RelayStats {
    return this.#counts.stats;
  }

  leasedPartitions(): number[] {
    return this.#lease?.held ?? [];
  }

  async backlog(): Promise<Backlog> {
    return readBacklog(this.#pool, this.#o.schema, this.#backlogSql);
  }

  async scheduled(): Promise<ScheduledCount> {
    return scheduledCount(this.#pool, { schema: this.#o.schema });
  }

  async start(): Promise<void> {
    if (this.#state !== 'new') throw new MailroomError('STOPPED', 'A relay can be started once.');
    this.#state = 'starting';
    try {
      await this.#checkDatabase();
    } catch (error) {
      // stop() during start() (a SIGTERM while the database is still being waited for) ends the
      // pool under the checks: the relay was told to stop, so start() has nothing left to do.
      if (this.#state !== 'starting') return;
      throw error;
    }
    if (this.#state !== 'starting') return;
    const o = this.#o;
    this.#links.up('postgres');
    this.#state = 'running';
    this.#unguardPool = guardPool(this.#pool);
    this.#amqp.on('connected', this.#onConnected);
    this.#amqp.on('disconnected', this.#onDisconnected);
    if (this.#amqp.connected) this.#links.up('rabbitmq');
    await this.#runtime.wake.listen();
    // Connect in the background: the loops wait for the broker, readiness reports it.
    this.#amqp.get().catch(() => undefined);
    // The loops never reject; the catch is the last guard of the host process.
    const guard = (loop: Promise<void>): Promise<void> => loop.catch((error: unknown) => this.#runtime.log.error(`relay loop ended: ${describeError(error)}`));
    if (o.ordering) {
      this.#loops.push(guard(runOrderedLoop(this.#runtime, (lease) => (this.#lease = lease))));
    } else {
      for (let i = 0; i < o.concurrency; i++) this.#loops.push(guard(runUnorderedLoop(this.#runtime, i)));
    }
    // Scheduled rows are moved into the outbox as they fall due, in either mode.
    this.#loops.push(guard(this.#mover.run()));
    this.#runtime.log.info(
      `relay started: schema "${o.schema}", ${o.ordering ? `ordering on, ${o.partitions} partitions` : `${o.concurrency} workers`}, batch ${o.batchSize}`,
    );
  }

  /** The start-up checks: the outbox table is there and the role has the relay's grants. */
  async #checkDatabase(): Promise<void> {
    const o = this.#o;
    const table = `${quoteIdentifier(o.schema)}.outbox`;
    // A link reset or a terminated backend during these checks is waited out (for up to 30 s);
    // a missing table, a missing grant or a wrong password fails start() at once.
    const present = await retryTransient(
      async () => {
        try {
          return (await this.#pool.query('SELECT pg_catalog.to_regclass($1::pg_catalog.text) IS NOT NULL AS present', [table])).rows[0];
        } catch (error) {
          const where = typeof o.database === 'string' ? ` at ${redactUrl(o.database)}` : '';
          throw new MailroomError('UNREACHABLE', `The relay cannot reach PostgreSQL${where}: ${describeError(error)}`, { cause: error });
        }
      },
      { onRetry: (error, ms) => this.#runtime.log.warn(`relay start: ${describeTransient(error, ms)}`) },
    );
    if ((present as { present?: boolean } | undefined)?.present !== true) {
      throw new MailroomError('NOT_MIGRATED', `Table ${table} does not exist: run \`mailroom migrate\` (or migrate()) first.`);
    }
    // A role without its grants is refused here, once, naming what is missing: at run time a
    // missing DELETE on outbox would roll back every confirmed batch and publish it again.
    await retryTransient(() => assertGrants(this.#pool, o.schema, 'relay', { archive: o.archive }), {
      onRetry: (error, ms) => this.#runtime.log.warn(`relay start: ${describeTransient(error, ms)}`),
    });
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
    this.#amqp.off('connected', this.#onConnected);
    this.#amqp.off('disconnected', this.#onDisconnected);
    this.#runtime.wake.close();
    this.#unguardPool();
    if (this.#ownsAmqp) await this.#amqp.close();
    // pg's end() waits for every client to come back: bounded, so stop() always resolves.
    if (this.#ownsPool) {
      const ended = (this.#pool as unknown as pg.Pool).end().then(
        () => true,
        () => true,
      );
      if (!(await Promise.race([ended, sleep(5_000, false, { ref: false })]))) this.#runtime.log.warn('relay stop: database pool still busy after 5 s, leaving it');
    }
    this.#state = 'stopped';
    this.#runtime.log.info('relay stopped');
    this.#emit('stopped');
    this.#resolveDone();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }

  /** Emits to each listener on its own: one that throws is logged and counted, never rethrown. */
  #emit<K extends keyof RelayEvents>(event: K, ...args: RelayEvents[K]): void {
    emitSafely(this, event, args, (error) => {
      this.#counts.listenerError(event);
      this.#runtime.log.error(`a relay '${event}' listener threw (ignored): ${describeError(error)}`);
    });
  }

  /** Counts and announces a batch whose transaction committed. Never throws. */
  #committed(settlement: Settlement, durationMs: number): void {
    this.#counts.committed(settlement);
    const log = this.#runtime.log;
    for (const dead of settlement.deadLetters) {
      log.warn(`outbox row ${dead.messageId} moved to dead letters (${dead.reason}): ${dead.error}`);
      this.#emit('deadLettered', dead);
    }
    for (const failed of settlement.deadLetterWriteFailures) {
      log.error(`outbox row ${failed.messageId} could not be written to the dead letters; left in the outbox for a retry: ${failed.error}`);
    }
    if (settlement.retried > 0) log.warn(`relay: ${settlement.retried} row(s) will be retried: ${settlement.firstRetryError}`);
    this.#emit('batch', {
      claimed: settlement.claimed,
      published: settlement.published,
      retried: settlement.retried,
      deadLettered: settlement.deadLetters.length,
      durationMs,
    });
  }
}
