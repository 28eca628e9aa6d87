import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { MailroomError } from '@mailroom/core';
import type { ResolvedChaosOptions } from './chaos-options.js';
import type { History } from './history.js';
import type { RunResources } from './run-resources.js';
import { ProcessSlot } from './supervisor.js';

/** The relay and consumer processes of a run, each in a supervised slot. */
export interface WorkerFleet {
  readonly relays: ProcessSlot[];
  readonly consumers: ProcessSlot[];
  /** Every slot, consumers first. */
  readonly slots: ProcessSlot[];
  /** Starts every process and waits for each to report ready; rejects naming the first that did not. */
  start(): Promise<void>;
  /** Makes sure every process runs, without crash points armed (the heal). */
  ensureRunning(): Promise<void>;
  /** Stops every process for good; never rejects. */
  stop(): Promise<void>;
}

/** Where the built child-process entry points are (the sources run under vitest use the build). */
export function workerScript(name: string): string {
  const here = fileURLToPath(import.meta.url);
  const file = here.endsWith('.ts') ? join(dirname(here), '..', 'dist', `${name}.js`) : join(dirname(here), `${name}.js`);
  if (!existsSync(file)) throw new MailroomError('INVALID_CONFIG', `${file} is missing: build @mailroom/chaos first (pnpm build).`);
  return file;
}

/** Reports kept per message and kind: a loop must not flood the history (the checker needs only a few). */
const MAX_REPORTS_PER_MESSAGE = 100;

/** What a worker reports on stdout, as history operations of that process. */
export function recordReport(history: History): (slot: ProcessSlot, event: Record<string, unknown>) => void {
  const seen = new Map<string, number>();
  return (slot, event) => {
    // A partition change carries no message id: never capped (a rebalance is rare, and each one counts for the shares).
    if (event.event === 'partitions') {
      history.add('info', slot.name, 'partitions', { held: event.held });
      return;
    }
    const id = event.id;
    const tally = `${String(event.event)}\u0000${String(id)}`;
    const n = (seen.get(tally) ?? 0) + 1;
    seen.set(tally, n);
    if (n > MAX_REPORTS_PER_MESSAGE) return;
    if (event.event === 'duplicate') history.add('info', slot.name, 'duplicate-delivery', { id });
    else if (event.event === 'conflicting-duplicate') history.add('info', slot.name, 'conflicting-delivery', { id });
    else if (event.event === 'dead-lettered') history.add('info', slot.name, 'dead-letter', { id, reason: event.reason, error: event.error });
    else if (event.event === 'requeued') history.add('info', slot.name, 'requeued', { id, error: event.error });
    else if (event.event === 'retrying') history.add('info', slot.name, 'retrying', { id, attempt: event.attempt, error: event.error, delayMs: event.delayMs });
    else if (event.event === 'handler-run') history.add('info', slot.name, 'handler-run', { id, attempt: event.attempt, run: event.run });
  };
}

/**
 * Lays out the run's worker processes: consumers and relays reach PostgreSQL and RabbitMQ
 * through the fault proxies (`urls`). The supervisor restarts whatever dies, and records every
 * exit the harness did not cause as a failure.
 */
export function createWorkerFleet(
  o: ResolvedChaosOptions,
  r: RunResources,
  urls: { databaseUrl: string; amqpUrl: string },
  history: History,
): WorkerFleet {
  const relayScript = workerScript('worker-relay');
  const consumerScript = workerScript('worker-consumer');
  const onLine = recordReport(history);
  const restartDelayMs = 500;
  const common = { CHAOS_DATABASE_URL: urls.databaseUrl, CHAOS_AMQP_URL: urls.amqpUrl, CHAOS_SCHEMA: r.schema, CHAOS_ORDERING: String(o.ordering) };
  const consumers: ProcessSlot[] = [];
  for (let i = 1; i <= o.consumers; i += 1) {
    const env: Record<string, string> = {
      ...common,
      CHAOS_NAME: `${r.applicationPrefix}consumer-${i}`,
      CHAOS_CONSUMER: r.consumerName,
      CHAOS_QUEUE: r.queue,
      CHAOS_EXCHANGE: r.exchange,
      CHAOS_DEAD_LETTERS: r.deadLetters,
      CHAOS_FAILURE_RATE: String(o.handlerFailureRate),
      CHAOS_PREFETCH: o.ordering ? '50' : '20',
      CHAOS_QUEUE_TYPE: o.queueType,
      CHAOS_PARTITIONS: String(o.partitions ?? 0),
    };
    if (o.handlerModule !== undefined) env.CHAOS_HANDLER_MODULE = o.handlerModule;
    consumers.push(new ProcessSlot({ name: `consumer-${i}`, role: 'consumer', script: consumerScript, env }, history, restartDelayMs, onLine));
  }
  const relays: ProcessSlot[] = [];
  for (let i = 1; i <= o.relays; i += 1) {
    const env = { ...common, CHAOS_NAME: `${r.applicationPrefix}relay-${i}`, CHAOS_BATCH_SIZE: '100' };
    relays.push(new ProcessSlot({ name: `relay-${i}`, role: 'relay', script: relayScript, env }, history, restartDelayMs, onLine));
  }
  const slots = [...consumers, ...relays];
  return {
    relays,
    consumers,
    slots,
    async start() {
      // Consumers first: their queue must be bound before the relays publish (else: unroutable).
      for (const slot of slots) {
        if (!(await slot.start())) throw new MailroomError('UNREACHABLE', `${slot.name} did not start:\n${slot.output()}`);
      }
    },
    async ensureRunning() {
      await Promise.all(slots.map((s) => s.ensureRunning()));
    },
    async stop() {
      await Promise.all(slots.map((s) => s.stop().catch(() => undefined)));
    },
  };
}
