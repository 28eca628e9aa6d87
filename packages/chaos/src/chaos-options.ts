import { randomInt } from 'node:crypto';
import { z } from 'zod/v4';
import { MailroomError } from '@mailroom/core';
import { parseConfig } from '@mailroom/core/internal';
import { BROKER_NODE_FAULTS, CLUSTER_FAULTS, DEFAULT_FAULTS, FAULT_KINDS, SAGA_FAULTS } from './fault-kind.js';
import { assertLoopbackTargets } from './loopback-target.js';

/** What `setup` and `verify` get: a query function on the run's database (not through the fault proxy) and its schema. */
export interface ChaosDbContext {
  query: <R extends Record<string, unknown> = Record<string, unknown>>(text: string, params?: unknown[]) => Promise<{ rows: R[] }>;
  /** The run's schema: mailroom's tables, the workload's and yours. */
  schema: string;
  /** The workload's keys (`k0` … `k<keys - 1>`): every event carries one of them. */
  keys: readonly string[];
}

/** What `verify` gets: the run's database and every event whose transaction committed. */
export interface ChaosVerifyContext extends ChaosDbContext {
  committed: ReadonlyArray<{ eventId: string; key: string; seq: number }>;
}

const isFunction = (v: unknown): boolean => typeof v === 'function';
const rate = z.number().min(0).max(1);

/**
 * The options of `runChaos`: the single source of each option's type, default and description
 * (the `ChaosOptions` type is derived from it). Only the two URLs are required.
 */
export const chaosOptionsSchema = z.strictObject({
  /** PostgreSQL URL; the role must be allowed to `pg_terminate_backend` mailroom's sessions. */
  databaseUrl: z.string().min(1).meta({ description: 'PostgreSQL URL; the role must be allowed to pg_terminate_backend (required)' }),
  /** RabbitMQ URL, or the comma-separated URLs of a cluster's nodes (every process fails over between them). */
  amqpUrl: z.string().min(1).meta({ description: "RabbitMQ URL, or a cluster's node URLs comma-separated (required)" }),
  /**
   * Allow PostgreSQL and RabbitMQ on another machine. The harness terminates backends, breaks
   * links and publishes hostile messages, so a run against anything but 127.0.0.0/8, ::1 or
   * localhost is refused, before any connection, unless this says the servers are yours to
   * break. Default: false.
   */
  allowRemote: z.boolean().default(false).meta({ description: 'allow servers that are not on this machine (default: loopback only)' }),
  /**
   * What the producers start: `events` (domain rows with outbox events, the default) or `saga`
   * (orders, each the start of an orchestrated saga: an orchestrator and two participants as
   * processes, timeouts as scheduled messages; see `saga`).
   */
  workload: z.enum(['events', 'saga']).default('events').meta({ description: 'events (default) or saga: orders driven by an orchestrated saga' }),
  /** The saga workload's settings (only with `workload: 'saga'`). */
  saga: z
    .strictObject({
      /** Orchestrator processes on one queue. Default: 2. */
      orchestrators: z.number().int().min(1).max(8).default(2),
      /** Distinct SKUs. Default: 4. */
      skus: z.number().int().min(1).max(1000).default(4),
      /** Stock of each SKU at the start (orders take 1-3). Default: 40. */
      stockPerSku: z.number().int().min(0).max(1_000_000).default(40),
      /** How long the orchestrator waits for inventory, in ms. Default: 4000. */
      reserveTimeoutMs: z.number().int().positive().default(4000),
      /** How long the orchestrator waits for payments, in ms. Default: 2000. */
      paymentTimeoutMs: z.number().int().positive().default(2000),
      /** How late the slow card's processor answers, in ms (longer than the payment timeout: those orders time out). Default: 3000. */
      processorDelayMs: z.number().int().positive().default(3000),
      /** Share of orders with a declined card. Default: 0.15. */
      declinedRate: rate.default(0.15),
      /** Share of orders with a slow card. Default: 0.1. */
      slowRate: rate.default(0.1),
      /**
       * Every saga must end (order confirmed or cancelled) within this many ms of its order's
       * commit, plus the time the drain took (the backlog the run left, which a loaded machine's
       * orders also waited behind). Default: 30000.
       */
      boundMs: z.number().int().positive().default(30_000),
      /** A defect planted in the harness's own saga services, to prove the checker catches it. Default: none. */
      defect: z.enum(['none', 'leaky-compensation']).default('none'),
    })
    .prefault({})
    .meta({ description: 'saga workload settings' }),
  /** Seed of the fault schedule and the workload's choices. Default: random (printed in the report). */
  seed: z.number().int().min(0).max(0xffffffff).optional().meta({ description: 'seed of the fault schedule and the workload (default: random, printed)' }),
  /** How long the workload and the nemesis run, in ms (the heal, drain and quiet period follow). Default: 60000. */
  durationMs: z.number().int().positive().default(60_000).meta({ description: 'how long the workload and the faults run, in ms' }),
  /** Relay processes. Default: 2. */
  relays: z.number().int().min(1).max(16).default(2).meta({ description: 'relay processes' }),
  /** Consumer processes. Default: 2 (1 with `ordering`, since several consumers do not pin keys). */
  consumers: z.number().int().min(1).max(16).optional().meta({ description: 'consumer processes (default 2, 1 with ordering)' }),
  /** Producer workers (in the harness's process). Default: 3. */
  producers: z.number().int().min(1).max(64).default(3).meta({ description: "producer workers in the harness's process" }),
  /** Distinct keys of the events. Default: 16. */
  keys: z.number().int().min(1).max(100_000).default(16).meta({ description: 'distinct keys of the events' }),
  /** Producer transactions per second, all workers together. Default: 40. */
  transactionsPerSecond: z.number().positive().default(40).meta({ description: 'producer transactions per second, all workers together' }),
  /** Largest number of events per transaction (each on its own key). Default: 3. */
  maxEventsPerTransaction: z.number().int().min(1).max(100).default(3).meta({ description: 'largest number of events per transaction' }),
  /** Share of producer transactions rolled back after their enqueue. Default: 0.1. */
  rollbackRate: rate.default(0.1).meta({ description: 'share of producer transactions rolled back' }),
  /**
   * Share of producer transactions that wait 50–800 ms between their enqueue and COMMIT, so
   * rows commit out of id order (the sequence-gap trap of a relay cursor). Default: 0.1.
   */
  slowCommitRate: rate.default(0.1).meta({ description: 'share held open 50-800 ms before COMMIT (rows commit out of id order)' }),
  /**
   * Share of handler runs that throw a transient error (retried): half of them before your
   * `effect` runs, half after it and before COMMIT (so an effect written outside the transaction
   * is applied again by the retry, and `verify` sees it). Default: 0.02, and 0 with `ordering`.
   */
  handlerFailureRate: rate.optional().meta({ description: 'share of handler runs that throw a transient error (default 0.02, 0 with ordering)' }),
  /** Per-key order: relays and the consumer in ordering mode, and the checker looks for reorders. Default: false. */
  ordering: z.boolean().default(false).meta({ description: 'per-key order: relays and the consumer in ordering mode, reorders checked' }),
  /** The consumers' work queues: `classic`, or `quorum` (replicated: what survives a broker node's death). Default: classic. */
  queueType: z.enum(['classic', 'quorum']).default('classic').meta({ description: 'classic or quorum work queues (quorum on a cluster)' }),
  /**
   * Partitioned consumers: this many partition queues behind a consistent-hash exchange, shared
   * by the consumer processes (several may then run with `ordering`). Implies `ordering`.
   * Default: none (one work queue).
   */
  partitions: z.number().int().min(1).max(999).optional().meta({ description: 'partition queues shared by the consumer processes (implies ordering)' }),
  /**
   * The local RabbitMQ cluster `amqpUrl` lists, for the broker node faults: its control script
   * (`scripts/rabbit-cluster.sh`: `kill N`, `start-node N`, `stop-app N`, `start-app N`) and its
   * node count. With it, the default faults are the cluster's (`CLUSTER_FAULTS`).
   */
  cluster: z
    .strictObject({
      /** The control script's path. */
      script: z.string().min(1),
      /** Nodes 1..nodes. Default: 3. */
      nodes: z.number().int().min(3).max(9).default(3),
    })
    .optional()
    .meta({ description: 'the local cluster: its control script and node count (enables the broker node faults)' }),
  /** Fault kinds to inject, in a seeded shuffled round robin. Default: all but the service restarts. */
  faults: z
    .array(z.enum(FAULT_KINDS))
    .readonly()
    .default([...DEFAULT_FAULTS])
    .meta({ description: 'fault kinds to inject (default: every kind but the service restarts)' }),
  /** Mean gap between two faults, in ms. Default: 1500. */
  faultIntervalMs: z.number().int().positive().default(1500).meta({ description: 'mean gap between two faults, in ms' }),
  /** Fault streams running at once, each on its own seeded schedule (faults then overlap). Default: 1. */
  faultConcurrency: z.number().int().min(1).max(8).default(1).meta({ description: 'fault streams at once (faults overlap)' }),
  /**
   * Shell commands that restart PostgreSQL or RabbitMQ. Required for the `restart-*` faults,
   * which affect everything else on that server: use them on a machine of your own.
   */
  serviceRestarts: z
    .strictObject({ postgres: z.string().min(1).optional(), rabbitmq: z.string().min(1).optional() })
    .default({})
    .meta({ description: 'shell commands that restart PostgreSQL / RabbitMQ (enable the restart-* faults)' }),
  /**
   * A module your handler lives in: it exports `effect(context)` (a `ChaosEffect`), run in the
   * consumer's transaction before the harness's ledger row. A path or a file URL; `.js`/`.mjs`,
   * or `.ts` with erasable syntax only (Node strips the types). Without `verify`, the run proves
   * nothing about effects your handler makes outside that transaction: the report says so.
   */
  handlerModule: z.string().min(1).optional().meta({ description: "a module exporting effect(ctx): your handler, run in the consumer's transaction" }),
  /**
   * Runs once before the workload, after mailroom's migrations: create the tables your handler
   * writes to, in `schema` (the run's own schema, dropped afterwards unless `keep`).
   */
  setup: z.custom<(context: ChaosDbContext) => Promise<void>>(isFunction, 'expected a function').optional(),
  /**
   * Runs after the drain, when every process stopped: compare your own tables with the committed
   * events and return a problem per disagreement (a double effect your handler applied, say).
   * Any problem makes the run invalid.
   */
  verify: z.custom<(context: ChaosVerifyContext) => Promise<string[]>>(isFunction, 'expected a function').optional(),
  /** How long the drain may take before the remaining events count as stuck, in ms. Default: 60000. */
  drainTimeoutMs: z.number().int().positive().default(60_000).meta({ description: 'after it, events not applied count as stuck, in ms' }),
  /** How long nothing may change after the drain before the final reads, in ms. Default: 2000. */
  quietMs: z.number().int().min(0).default(2000).meta({ description: 'quiet period after the drain, before the final reads, in ms' }),
  /** Writes the history here as JSONL. Default: memory only. */
  historyPath: z.string().min(1).optional().meta({ description: 'write the history here as JSONL' }),
  /** Keep the schema and the broker objects after the run, for a look. Default: false. */
  keep: z.boolean().default(false).meta({ description: 'keep the schema, queues and exchanges for a look' }),
  /** Ends the workload phase early when aborted; the heal, drain and check still run. */
  signal: z.custom<AbortSignal>((v) => v instanceof AbortSignal, 'expected an AbortSignal').optional(),
  /** Progress lines (phases, faults); default: silent. */
  log: z.custom<(line: string) => void>(isFunction, 'expected a function').optional(),
});

/** Options of `runChaos`. Only the two URLs are required. */
export type ChaosOptions = z.input<typeof chaosOptionsSchema>;

/** Chaos options with every default filled in, the ones that depend on `ordering` included. */
export type ResolvedChaosOptions = z.output<typeof chaosOptionsSchema> & {
  /** `amqpUrl` split at its commas. */
  amqpUrls: string[];
  seed: number;
  consumers: number;
  handlerFailureRate: number;
  log: (line: string) => void;
};

/** Validates the options of a run and fills in the defaults (a random seed when none is given). */
export function resolveChaosOptions(input: ChaosOptions): ResolvedChaosOptions {
  const o = parseConfig(chaosOptionsSchema, input, 'chaos options');
  assertLoopbackTargets(o);
  if (o.workload === 'saga') {
    if (o.ordering) throw new MailroomError('INVALID_CONFIG', 'chaos options: the saga workload runs without ordering.');
    const foreign = o.faults.filter((k) => !SAGA_FAULTS.includes(k) && !k.startsWith('restart-'));
    // Only the kinds the user named are refused; by default the saga workload takes its own set.
    if (input.faults !== undefined && foreign.length > 0) {
      throw new MailroomError('INVALID_CONFIG', `chaos options: the saga workload does not inject ${foreign.join(', ')} (its faults: ${SAGA_FAULTS.join(', ')}, restart-*)`);
    }
    if (input.faults === undefined) o.faults = [...SAGA_FAULTS];
  }
  const amqpUrls = o.amqpUrl
    .split(',')
    .map((u) => u.trim())
    .filter((u) => u !== '');
  if (o.partitions !== undefined) {
    if (o.workload === 'saga') throw new MailroomError('INVALID_CONFIG', 'chaos options: the saga workload runs without partitions.');
    if (input.ordering === false) throw new MailroomError('INVALID_CONFIG', 'chaos options: partitions keep each key in order and need ordering; leave ordering out or set it to true.');
    o.ordering = true;
  }
  if (amqpUrls.length > 1 && o.workload === 'saga') throw new MailroomError('INVALID_CONFIG', 'chaos options: the saga workload runs on one broker URL.');
  const brokerFaults = o.faults.filter((k) => BROKER_NODE_FAULTS.includes(k));
  if (o.cluster === undefined && brokerFaults.length > 0) {
    throw new MailroomError('INVALID_CONFIG', `chaos options: ${brokerFaults.join(', ')} need a cluster (cluster: { script }, mailroom chaos run --cluster-script)`);
  }
  if (o.cluster !== undefined && amqpUrls.length < 2) {
    throw new MailroomError('INVALID_CONFIG', "chaos options: with a cluster, give amqpUrl every node's URL, comma-separated (scripts/rabbit-cluster.sh urls): a client of one node cannot fail over");
  }
  if (o.cluster !== undefined && input.faults === undefined && o.workload === 'events') o.faults = [...CLUSTER_FAULTS];
  // Partitions pin each key to one process at a time; one queue without them does not.
  const consumers = o.consumers ?? (o.partitions !== undefined ? 3 : o.ordering ? 1 : 2);
  if (o.ordering && o.partitions === undefined && consumers > 1) {
    throw new MailroomError('INVALID_CONFIG', 'chaos options: with ordering, run one consumer (several consumer processes do not pin keys), or give partitions.');
  }
  return {
    ...o,
    amqpUrls,
    seed: o.seed ?? randomInt(0, 2 ** 31),
    consumers,
    handlerFailureRate: o.handlerFailureRate ?? (o.ordering ? 0 : 0.02),
    log: o.log ?? ((): void => undefined),
  };
}
