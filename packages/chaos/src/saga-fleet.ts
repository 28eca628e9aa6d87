import { MailroomError } from '@mailroom/core';
import type { ResolvedChaosOptions } from './chaos-options.js';
import type { History } from './history.js';
import type { RunResources } from './run-resources.js';
import { sagaQueues } from './saga-workload.js';
import { ProcessSlot } from './supervisor.js';
import { recordReport, workerScript, type WorkerFleet } from './worker-fleet.js';

/**
 * The processes of the saga workload: the orchestrators (`sagaOrchestrators`, sharing one queue,
 * so two of them apply messages of one instance at once), inventory and payments, and the
 * relays (which also publish the scheduled timeouts). The saga services are the nemesis's
 * consumers: it kills, pauses and crashes them like any consumer.
 */
export function createSagaFleet(o: ResolvedChaosOptions, r: RunResources, urls: { databaseUrl: string; amqpUrl: string }, history: History): WorkerFleet {
  const sagaScript = workerScript('worker-saga');
  const relayScript = workerScript('worker-relay');
  const onLine = recordReport(history);
  const restartDelayMs = 500;
  const queues = sagaQueues(r);
  const common = { CHAOS_DATABASE_URL: urls.databaseUrl, CHAOS_AMQP_URL: urls.amqpUrl, CHAOS_SCHEMA: r.schema, CHAOS_ORDERING: 'false' };
  const sagaEnv = (role: keyof typeof queues, i: number): Record<string, string> => ({
    ...common,
    CHAOS_NAME: `${r.applicationPrefix}consumer-${role}-${i}`,
    CHAOS_SAGA_ROLE: role,
    CHAOS_CONSUMER: queues[role].consumer,
    CHAOS_QUEUE: queues[role].queue,
    CHAOS_EXCHANGE: r.exchange,
    CHAOS_DEAD_LETTERS: r.deadLetters,
    CHAOS_FAILURE_RATE: String(o.handlerFailureRate),
    CHAOS_PREFETCH: '20',
    CHAOS_SAGA_RESERVE_TIMEOUT_MS: String(o.saga.reserveTimeoutMs),
    CHAOS_SAGA_PAYMENT_TIMEOUT_MS: String(o.saga.paymentTimeoutMs),
    CHAOS_SAGA_PROCESSOR_DELAY_MS: String(o.saga.processorDelayMs),
    CHAOS_SAGA_DEFECT: o.saga.defect,
  });
  const consumers: ProcessSlot[] = [];
  // Participants first: their queues must be bound before the orchestrator sends them commands.
  consumers.push(new ProcessSlot({ name: 'inventory-1', role: 'consumer', script: sagaScript, env: sagaEnv('inventory', 1) }, history, restartDelayMs, onLine));
  consumers.push(new ProcessSlot({ name: 'payments-1', role: 'consumer', script: sagaScript, env: sagaEnv('payments', 1) }, history, restartDelayMs, onLine));
  for (let i = 1; i <= o.saga.orchestrators; i += 1) {
    consumers.push(new ProcessSlot({ name: `orchestrator-${i}`, role: 'consumer', script: sagaScript, env: sagaEnv('orchestrator', i) }, history, restartDelayMs, onLine));
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
