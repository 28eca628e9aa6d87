import { randomInt } from 'node:crypto';
import { z } from 'zod';
import { MailroomError } from '@mailroom/core';
import { parseConfig } from '@mailroom/core/internal';
import { DEFAULT_FAULTS, FAULT_KINDS } from './fault-kind.js';
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
  /** RabbitMQ URL. */
  amqpUrl: z.string().min(1).meta({ description: 'RabbitMQ URL (required)' }),
  /**
   * Allow PostgreSQL and RabbitMQ on another machine. The harness terminates backends, breaks
   * links and publishes hostile messages, so a run against anything but 127.0.0.0/8, ::1 or
   * localhost is refused, before any connection, unless this says the servers are yours to
   * break. Default: false.
   */
  allowRemote: z.boolean().default(false).meta({ description: 'allow servers that are not on this machine (default: loopback only)' }),
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
  seed: number;
  consumers: number;
  handlerFailureRate: number;
  log: (line: string) => void;
};

/** Validates the options of a run and fills in the defaults (a random seed when none is given). */
export function resolveChaosOptions(input: ChaosOptions): ResolvedChaosOptions {
  const o = parseConfig(chaosOptionsSchema, input, 'chaos options');
  assertLoopbackTargets(o);
  const consumers = o.consumers ?? (o.ordering ? 1 : 2);
  if (o.ordering && consumers > 1) {
    throw new MailroomError('INVALID_CONFIG', 'chaos options: with ordering, run one consumer (several consumer processes do not pin keys).');
  }
  return {
    ...o,
    seed: o.seed ?? randomInt(0, 2 ** 31),
    consumers,
    handlerFailureRate: o.handlerFailureRate ?? (o.ordering ? 0 : 0.02),
    log: o.log ?? ((): void => undefined),
  };
}
