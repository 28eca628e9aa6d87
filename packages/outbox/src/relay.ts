import { EventEmitter } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import {
  LATENCY_BUCKETS,
  MailroomError,
  MetricsRegistry,
  resolveAmqpConnection,
  crashPoint,
  describeError,
  failureFingerprint,
  quoteIdentifier,
  redactUrl,
  silentLogger,
  toExecutor,
  type AmqpConnection,
  type Executor,
  type Logger,
  type PgPoolClientLike,
  type PgPoolLike,
} from '@mailroom/core';
import { notifyChannel } from './names.js';
import { PartitionLease } from './partition-lease.js';
import { ConfirmPublisher, type PublishOutcome } from './publisher.js';
import { relaySql, type OutboxRow, type RelaySql } from './relay-sql.js';
import { resolveRelayOptions, type RelayOptions, type ResolvedRelayOptions } from './relay-options.js';

/** What one batch did. */
export interface BatchSummary {
  claimed: number;
  published: number;
  retried: number;
  deadLettered: number;
  durationMs: number;
}

/** Events of a {@link Relay}. None of them is `error`: a relay never crashes its process by emitting. */
export interface RelayEvents {
  /** A batch committed. */
  batch: [summary: BatchSummary];
  /** A row was moved to the dead-letter store. */
  deadLetter: [info: { messageId: string; reason: string; error: string }];
  /** Something failed and will be retried (database or broker unreachable, a batch rolled back). */
  failure: [info: { stage: string; error: string }];
  /** The relay stopped. */
  stopped: [];
}

/** The relay's counters, for tests and for `/metrics`. */
export interface RelayCounters {
  published: number;
  returned: number;
  nacked: number;
  failed: number;
  deadLettered: number;
}

/** A running outbox relay: claims committed rows, publishes them with confirms, deletes them. */
export interface Relay extends EventEmitter<RelayEvents> {
  /** Starts the relay: checks the tables, listens for NOTIFY and starts the publish loops. */
  start(): Promise<void>;
  /** Stops claiming, finishes the batch in flight, closes what the relay opened. Always resolves. */
  stop(): Promise<void>;
  /** Settles when the relay has stopped. */
  readonly done: Promise<void>;
  /** True while the relay can publish: the database answered and the broker is connected. */
  readonly ready: boolean;
  /** The metrics registry (Prometheus text via `metrics.render()`). */
  readonly metrics: MetricsRegistry;
  /** Counts so far. */
  counters(): RelayCounters;
  /** Partitions leased now (ordering mode). */
  leasedPartitions(): number[];
  /** Outbox rows waiting and the age in seconds of the oldest one. */
  backlog(): Promise<{ rows: number; oldestAgeSeconds: number }>;
  [Symbol.asyncDispose](): Promise<void>;
}

/** Creates a relay. Nothing connects until `start()`. */
export function createRelay(options: RelayOptions): Relay {
  return new OutboxRelay(resolveRelayOptions(options));
}

class OutboxRelay extends EventEmitter<RelayEvents> implements Relay {
  readonly metrics: MetricsRegistry;
  readonly #o: ResolvedRelayOptions;
  readonly #log: Logger;
  readonly #sql: RelaySql;
  readonly #pool: PgPoolLike;
  readonly #ownsPool: boolean;
  readonly #amqp: AmqpConnection;
  readonly #ownsAmqp: boolean;
  readonly #m;
  #state: 'new' | 'running' | 'stopping' | 'stopped' = 'new';
  #wake: { pending: boolean; waiters: Array<() => void> } = { pending: false, waiters: [] };
  #loops: Promise<void>[] = [];
  #listener: PgPoolClientLike | undefined;
  #lease: PartitionLease | undefined;
  /** Whether the last batch (or the start-up check) reached the database without error. */
  #healthy = false;
  #resolveDone!: () => void;
  readonly done: Promise<void>;
  readonly #stopController = new AbortController();
  readonly #stopped = new Promise<undefined>((resolve) =>
    this.#stopController.signal.addEventListener('abort', () => resolve(undefined), { once: true }),
  );

  constructor(options: ResolvedRelayOptions) {
    super();
    this.#o = options;
    this.#log = options.logger ?? silentLogger;
    this.#sql = relaySql(options.schema);
    if (typeof options.database === 'string') {
      const pool = new pg.Pool({
        connectionString: options.database,
        max: options.concurrency + 3,
        application_name: options.name,
      });
      pool.on('error', (error) => this.#log.warn('idle database connection failed', { error: describeError(error) }));
      this.#pool = pool;
      this.#ownsPool = true;
    } else {
      this.#pool = options.database;
      this.#ownsPool = false;
    }
    ({ connection: this.#amqp, owned: this.#ownsAmqp } = resolveAmqpConnection(options.amqp, { name: options.name, logger: this.#log }));
    this.metrics = options.metrics ?? new MetricsRegistry();
    this.#m = {
      published: this.metrics.counter('mailroom_relay_published_total', 'Outbox rows published and confirmed by the broker.'),
      returned: this.metrics.counter('mailroom_relay_returned_total', 'Publishes the broker returned as unroutable (mandatory).'),
      nacked: this.metrics.counter('mailroom_relay_nacked_total', 'Publishes the broker nacked.'),
      failed: this.metrics.counter('mailroom_relay_publish_failures_total', 'Publishes lost to a closed channel, a lost connection or a confirm timeout.'),
      deadLettered: this.metrics.counter('mailroom_relay_dead_lettered_total', 'Rows moved to the dead-letter store, by reason.'),
      batches: this.metrics.counter('mailroom_relay_batches_total', 'Batches committed.'),
      rolledBack: this.metrics.counter('mailroom_relay_batches_failed_total', 'Batches rolled back (their rows are published again).'),
      latency: this.metrics.histogram(
        'mailroom_relay_commit_to_confirm_seconds',
        'Time from the outbox insert to the broker confirm.',
        LATENCY_BUCKETS,
      ),
    };
    this.metrics.gauge('mailroom_outbox_backlog', 'Rows waiting in the outbox.', async () => (await this.backlog()).rows);
    this.metrics.gauge(
      'mailroom_outbox_oldest_age_seconds',
      'Age of the oldest unpublished outbox row.',
      async () => (await this.backlog()).oldestAgeSeconds,
    );
    this.metrics.gauge('mailroom_relay_ready', 'Whether the relay can publish (1) or not (0).', async () => (this.ready ? 1 : 0));
    this.done = new Promise((resolve) => (this.#resolveDone = resolve));
  }

  get ready(): boolean {
    return this.#state === 'running' && this.#healthy && this.#amqp.connected;
  }

  counters(): RelayCounters {
    return {
      published: this.#m.published.get(),
      returned: this.#m.returned.get(),
      nacked: this.#m.nacked.get(),
      failed: this.#m.failed.get(),
      deadLettered: ['too_large', 'unroutable'].reduce((n, reason) => n + this.#m.deadLettered.get({ reason }), 0),
    };
  }

  leasedPartitions(): number[] {
    return this.#lease?.held ?? [];
  }

  async backlog(): Promise<{ rows: number; oldestAgeSeconds: number }> {
    const result = await this.#pool.query(this.#sql.backlog);
    const row = result.rows[0] as { rows: number; oldest_age: number } | undefined;
    return { rows: row?.rows ?? 0, oldestAgeSeconds: row?.oldest_age ?? 0 };
  }

  async start(): Promise<void> {
    if (this.#state !== 'new') throw new MailroomError('STOPPED', 'A relay can be started once.');
    const table = `${quoteIdentifier(this.#o.schema)}.outbox`;
    let present: unknown;
    try {
      present = (await this.#pool.query('SELECT to_regclass($1) IS NOT NULL AS present', [table])).rows[0];
    } catch (error) {
      const where = typeof this.#o.database === 'string' ? ` at ${redactUrl(this.#o.database)}` : '';
      throw new MailroomError('UNREACHABLE', `The relay cannot reach PostgreSQL${where}: ${describeError(error)}`, { cause: error });
    }
    if ((present as { present?: boolean } | undefined)?.present !== true) {
      throw new MailroomError('MIGRATION_FAILED', `Table ${table} does not exist: run \`mailroom migrate\` (or migrate()) first.`);
    }
    this.#healthy = true;
    this.#state = 'running';
    await this.#listen();
    // Connect in the background: the loops wait for the broker, readiness reports it.
    this.#amqp.get().catch(() => undefined);
    const workers = this.#o.ordering ? 1 : this.#o.concurrency;
    for (let i = 0; i < workers; i++) this.#loops.push(this.#o.ordering ? this.#orderedLoop() : this.#loop(i));
    this.#log.info(
      `relay started: schema "${this.#o.schema}", ${this.#o.ordering ? `ordering on, ${this.#o.partitions} partitions` : `${workers} workers`}, batch ${this.#o.batchSize}`,
    );
  }

  async stop(): Promise<void> {
    if (this.#state === 'stopped' || this.#state === 'stopping') return this.done;
    const wasRunning = this.#state === 'running';
    this.#state = 'stopping';
    this.#stopController.abort();
    this.#nudge();
    if (wasRunning) {
      const timeout = sleep(this.#o.shutdownTimeoutMs, undefined, { ref: false }).then(() => 'timeout' as const);
      const finished = await Promise.race([Promise.allSettled(this.#loops).then(() => 'done' as const), timeout]);
      if (finished === 'timeout') this.#log.warn(`relay stop: batch still in flight after ${this.#o.shutdownTimeoutMs} ms, closing anyway`);
    }
    this.#listener?.release(true);
    this.#listener = undefined;
    if (this.#ownsAmqp) await this.#amqp.close();
    if (this.#ownsPool) await (this.#pool as unknown as pg.Pool).end().catch(() => undefined);
    this.#state = 'stopped';
    this.#log.info('relay stopped');
    this.emit('stopped');
    this.#resolveDone();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }

  get #running(): boolean {
    return this.#state === 'running';
  }

  // ---- wake-ups: NOTIFY, poll timer, stop ----

  #nudge(): void {
    this.#wake.pending = true;
    const waiters = this.#wake.waiters;
    this.#wake.waiters = [];
    for (const w of waiters) w();
  }

  /** Waits for a NOTIFY, the poll interval or stop; a NOTIFY that came during the batch counts. */
  async #idle(ms: number): Promise<void> {
    if (!this.#running) return;
    if (this.#wake.pending) {
      this.#wake.pending = false;
      return;
    }
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.#wake.waiters.push(done);
    });
    this.#wake.pending = false;
  }

  async #listen(): Promise<void> {
    try {
      const client = await this.#pool.connect();
      const raw = client as unknown as pg.PoolClient;
      raw.on('notification', () => this.#nudge());
      raw.on('error', (error: Error) => {
        this.#log.warn('LISTEN connection lost; polling until it is back', { error: describeError(error) });
        if (this.#listener === client) this.#listener = undefined;
        client.release(true);
        if (this.#running) setTimeout(() => void this.#listen(), this.#o.pollIntervalMs).unref();
      });
      await client.query(`LISTEN "${notifyChannel(this.#o.schema)}"`);
      this.#listener = client;
      // Rows committed while we were not listening are picked up at once.
      this.#nudge();
    } catch (error) {
      this.#failure('listen', error);
      if (this.#running) setTimeout(() => void this.#listen(), this.#o.pollIntervalMs).unref();
    }
  }

  #failure(stage: string, error: unknown): void {
    const text = describeError(error);
    this.#log.warn(`relay ${stage} failed: ${text}`);
    this.emit('failure', { stage, error: text });
  }

  // ---- the loops ----

  async #loop(worker: number): Promise<void> {
    const publisher = new ConfirmPublisher(this.#amqp, { declareExchanges: this.#o.declareExchanges, logger: this.#log });
    let failures = 0;
    while (this.#running) {
      try {
        const channel = await this.#channelOrStop(publisher);
        if (channel === undefined) break;
        const client = await this.#pool.connect();
        let claimed: number;
        try {
          claimed = await this.#batch(client, publisher, false, []);
          client.release();
        } catch (error) {
          client.release(true);
          throw error;
        }
        this.#healthy = true;
        failures = 0;
        if (claimed < this.#o.batchSize) await this.#idle(this.#o.pollIntervalMs);
      } catch (error) {
        failures++;
        this.#failure(`batch (worker ${worker})`, error);
        await this.#backoff(failures);
      }
    }
    await publisher.close();
  }

  async #orderedLoop(): Promise<void> {
    const publisher = new ConfirmPublisher(this.#amqp, { declareExchanges: this.#o.declareExchanges, logger: this.#log });
    let failures = 0;
    let client: PgPoolClientLike | undefined;
    let lastRebalance = 0;
    while (this.#running) {
      try {
        const channel = await this.#channelOrStop(publisher);
        if (channel === undefined) break;
        if (client === undefined) {
          client = await this.#pool.connect();
          (client as unknown as pg.PoolClient).on('error', () => undefined);
          this.#lease = new PartitionLease(client, this.#o.schema, this.#o.partitions, Math.max(10_000, this.#o.leaseHeartbeatMs * 10));
          await this.#lease.join();
          lastRebalance = 0;
        }
        const lease = this.#lease as PartitionLease;
        if (Date.now() - lastRebalance >= this.#o.leaseHeartbeatMs) {
          await lease.rebalance();
          lastRebalance = Date.now();
        }
        const claimed = lease.held.length > 0 ? await this.#batch(client, publisher, true, lease.held) : 0;
        this.#healthy = true;
        failures = 0;
        if (claimed < this.#o.batchSize) await this.#idle(Math.min(this.#o.pollIntervalMs, this.#o.leaseHeartbeatMs));
      } catch (error) {
        failures++;
        this.#failure('ordered batch', error);
        // The session may be gone and its leases with it: start over on a new connection.
        this.#lease?.lost();
        client?.release(true);
        client = undefined;
        await this.#backoff(failures);
      }
    }
    this.#lease?.lost();
    client?.release(true);
    await publisher.close();
  }

  /** Waits for a confirm channel (the broker may be down), or for stop. */
  async #channelOrStop(publisher: ConfirmPublisher): Promise<unknown> {
    if (!this.#running) return undefined;
    return Promise.race([publisher.channel(), this.#stopped]);
  }

  async #backoff(failures: number): Promise<void> {
    this.#healthy = false;
    const delay = Math.min(this.#o.pollIntervalMs * 2 ** Math.min(failures - 1, 5), 10_000);
    await sleep(delay, undefined, { signal: this.#stopController.signal }).catch(() => undefined);
  }

  /** Claims, publishes and settles one batch in one transaction; returns how many rows it claimed. */
  async #batch(client: PgPoolClientLike, publisher: ConfirmPublisher, ordered: boolean, partitions: number[]): Promise<number> {
    const started = Date.now();
    const db = toExecutor(client);
    const guard = `${Math.max(this.#o.publishTimeoutMs * 3, 30_000)}ms`;
    await client.query(
      ordered
        ? `BEGIN; SET LOCAL lock_timeout = '5s'; SET LOCAL idle_in_transaction_session_timeout = '${guard}'`
        : `BEGIN; SET LOCAL idle_in_transaction_session_timeout = '${guard}'`,
    );
    let committed = false;
    try {
      const rows = ordered
        ? (await db.query<OutboxRow>(this.#sql.claimOrdered, [this.#o.batchSize, this.#o.partitions, partitions])).rows
        : (await db.query<OutboxRow>(this.#sql.claim, [this.#o.batchSize])).rows;
      if (rows.length === 0) {
        await client.query('COMMIT');
        committed = true;
        return 0;
      }
      crashPoint('relay.after-claim');
      const outcomes = await this.#publishRows(publisher, rows, ordered);
      crashPoint('relay.after-confirm-before-commit');
      const summary = await this.#settle(db, rows, outcomes);
      await client.query('COMMIT');
      committed = true;
      crashPoint('relay.after-commit');
      summary.durationMs = Date.now() - started;
      this.#m.batches.inc();
      this.emit('batch', summary);
      return rows.length;
    } finally {
      if (!committed) {
        this.#m.rolledBack.inc();
        await client.query('ROLLBACK').catch(() => undefined);
      }
    }
  }

  async #publishRows(publisher: ConfirmPublisher, rows: OutboxRow[], ordered: boolean): Promise<PublishOutcome[]> {
    const outcomes: PublishOutcome[] = rows.map(() => ({ kind: 'skipped' }));
    const pending: number[] = [];
    for (let i = 0; i < rows.length; i++) {
      const row = rows[i] as OutboxRow;
      if (Buffer.byteLength(row.payload) > this.#o.maxMessageBytes) {
        outcomes[i] = { kind: 'failed', error: `too_large: payload of ${Buffer.byteLength(row.payload)} bytes exceeds maxMessageBytes ${this.#o.maxMessageBytes}` };
      } else {
        pending.push(i);
      }
    }
    const missing = await publisher.ensureExchanges(pending.map((i) => (rows[i] as OutboxRow).exchange));
    const channel = await publisher.channel();
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<void>((resolve) => (timer = setTimeout(resolve, this.#o.publishTimeoutMs)));
    const publishOne = async (i: number): Promise<PublishOutcome> => {
      const row = rows[i] as OutboxRow;
      const absent = missing.get(row.exchange);
      const outcome: PublishOutcome = absent !== undefined ? { kind: 'returned', error: absent } : await publisher.publish(channel, row, deadline);
      outcomes[i] = outcome;
      return outcome;
    };
    try {
      if (!ordered) {
        const all: Promise<PublishOutcome>[] = [];
        for (const i of pending) {
          all.push(publishOne(i));
          await publisher.drained();
        }
        crashPoint('relay.after-publish-before-confirm');
        await Promise.all(all);
      } else {
        // One chain per key: the next event of a key is sent only after the previous one was
        // confirmed, so a nack or a return can never let a later event overtake an earlier one.
        const chains = new Map<string, number[]>();
        for (const i of pending) {
          const row = rows[i] as OutboxRow;
          const chainKey = row.key ?? `\u0000${row.message_id}`;
          const chain = chains.get(chainKey);
          if (chain) chain.push(i);
          else chains.set(chainKey, [i]);
        }
        await Promise.all(
          [...chains.values()].map(async (chain) => {
            for (const i of chain) {
              const outcome = await publishOne(i);
              if (outcome.kind !== 'confirmed') break;
            }
          }),
        );
      }
    } finally {
      clearTimeout(timer);
    }
    if (outcomes.some((o) => o.kind === 'failed' && o.error.startsWith('no publisher confirm'))) await publisher.reset();
    return outcomes;
  }

  /** Deletes confirmed rows, schedules retries, moves dead letters; returns the counts. */
  async #settle(db: Executor, rows: OutboxRow[], outcomes: PublishOutcome[]): Promise<BatchSummary> {
    const done: string[] = [];
    const retry = { ids: [] as string[], delays: [] as number[], errors: [] as string[] };
    const dead = { ids: [] as string[], reasons: [] as string[], errors: [] as string[], fingerprints: [] as string[] };
    const now = Date.now();
    rows.forEach((row, i) => {
      const outcome = outcomes[i] as PublishOutcome;
      switch (outcome.kind) {
        case 'confirmed':
          done.push(row.id);
          this.#m.published.inc();
          this.#m.latency.observe(Math.max(0, now - row.created_ms) / 1000);
          return;
        case 'skipped':
          return;
        case 'returned':
          this.#m.returned.inc();
          break;
        case 'nacked':
          this.#m.nacked.inc();
          break;
        case 'failed':
          if (!outcome.error.startsWith('too_large')) this.#m.failed.inc();
          break;
      }
      const attempts = row.attempts + 1;
      const reason = outcome.error.startsWith('too_large')
        ? 'too_large'
        : outcome.kind === 'returned' && attempts >= this.#o.maxUnroutableAttempts
          ? 'unroutable'
          : undefined;
      if (reason !== undefined) {
        dead.ids.push(row.id);
        dead.reasons.push(reason);
        dead.errors.push(outcome.error);
        dead.fingerprints.push(failureFingerprint({ source: 'relay', reason, type: row.type, error: outcome.error }));
        this.#m.deadLettered.inc({ reason });
        this.#log.warn(`outbox row ${row.message_id} moved to dead letters: ${outcome.error}`);
        this.emit('deadLetter', { messageId: row.message_id, reason, error: outcome.error });
      } else {
        retry.ids.push(row.id);
        retry.delays.push(this.#retryDelay(attempts));
        retry.errors.push(outcome.error);
      }
    });
    if (done.length > 0) await db.query(this.#sql.complete, [done]);
    if (retry.ids.length > 0) await db.query(this.#sql.retry, [retry.ids, retry.delays, retry.errors]);
    if (dead.ids.length > 0) await db.query(this.#sql.deadLetter, [dead.ids, dead.reasons, dead.errors, dead.fingerprints]);
    if (retry.ids.length > 0) this.#log.warn(`relay: ${retry.ids.length} row(s) will be retried: ${retry.errors[0]}`);
    return { claimed: rows.length, published: done.length, retried: retry.ids.length, deadLettered: dead.ids.length, durationMs: 0 };
  }

  #retryDelay(attempts: number): number {
    const base = Math.min(this.#o.retryMaxDelayMs, this.#o.retryInitialDelayMs * 2 ** Math.min(attempts - 1, 30));
    // ±20% jitter so rows that failed together do not retry together.
    return Math.round(base * (0.8 + Math.random() * 0.4));
  }
}
