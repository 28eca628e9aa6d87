// A service of the saga workload in its own process, started by the chaos harness
// (node dist/worker-saga.js): the orchestrator (the order saga's steps as inbox handlers) or a
// participant (inventory, payments). Each step writes one ledger row in its transaction.
import pg from 'pg';
import { createAmqpConnection } from '@mailroom/core';
import { createDeadLetterSink } from '@mailroom/dlq';
import { createConsumer, type HandlerBinding } from '@mailroom/inbox';
import { sagaHandlers } from '@mailroom/saga';
import { CHAOS_RETRY } from './chaos-event.js';
import { sagaContracts } from './saga-contracts.js';
import { defineChaosOrderSaga } from './saga-orchestrator.js';
import { inventoryHandlers, paymentsHandlers, type SagaDefect, type SagaServiceContext } from './saga-participants.js';
import { need, needInt, report } from './worker-env.js';

const name = need('CHAOS_NAME');
const schema = need('CHAOS_SCHEMA');
const role = need('CHAOS_SAGA_ROLE');
const prefetch = needInt('CHAOS_PREFETCH');
const defect = (process.env.CHAOS_SAGA_DEFECT ?? 'none') as SagaDefect;

const pool = new pg.Pool({ connectionString: need('CHAOS_DATABASE_URL'), max: prefetch + 4, application_name: name });
pool.on('error', () => undefined);
// The planted defect's own connection. It may wait for a row the handler's (group-committed)
// transaction holds, which PostgreSQL cannot see as a deadlock: a statement timeout turns that
// into a failure and a retry instead of a hang.
let outside: pg.Pool | undefined;
const outsidePool = (): pg.Pool => {
  if (outside === undefined) {
    outside = new pg.Pool({ connectionString: need('CHAOS_DATABASE_URL'), max: 2, application_name: `${name}-outside`, statement_timeout: 1000 });
    outside.on('error', () => undefined);
  }
  return outside;
};
const service: SagaServiceContext = {
  schema,
  contracts: sagaContracts(need('CHAOS_EXCHANGE')),
  process: name,
  failureRate: Number(need('CHAOS_FAILURE_RATE')),
  defect,
  outside: (text, params) => outsidePool().query(text, params),
  processorDelayMs: needInt('CHAOS_SAGA_PROCESSOR_DELAY_MS'),
};

let handlers: HandlerBinding[];
if (role === 'orchestrator') {
  const saga = defineChaosOrderSaga(service, { reserveTimeoutMs: needInt('CHAOS_SAGA_RESERVE_TIMEOUT_MS'), paymentTimeoutMs: needInt('CHAOS_SAGA_PAYMENT_TIMEOUT_MS') });
  handlers = [...sagaHandlers(saga, { schema })];
} else if (role === 'inventory') handlers = inventoryHandlers(service);
else if (role === 'payments') handlers = paymentsHandlers(service);
else throw new Error(`CHAOS_SAGA_ROLE ${JSON.stringify(role)}: expected orchestrator, inventory or payments`);

// Handler runs beyond the first of a message in this process are reported (the loop check).
const runs = new Map<string, number>();
const amqp = createAmqpConnection({ url: need('CHAOS_AMQP_URL'), name });
const deadLetters = { exchange: need('CHAOS_DEAD_LETTERS'), queue: need('CHAOS_DEAD_LETTERS') };
const sink = createDeadLetterSink({ db: pool, amqp, schema, topology: deadLetters });
const consumer = createConsumer({
  name: need('CHAOS_CONSUMER'),
  queue: need('CHAOS_QUEUE'),
  db: pool,
  amqp,
  schema,
  prefetch,
  stopTimeoutMs: 2000,
  retry: CHAOS_RETRY,
  deadLetters: { ...deadLetters, sink },
  handlers: handlers.map((h) => ({
    contract: h.contract,
    handle: async (ctx) => {
      const n = (runs.get(ctx.message.messageId) ?? 0) + 1;
      runs.set(ctx.message.messageId, n);
      if (runs.size > 100_000) runs.clear();
      if (n > 1 || ctx.message.attempt > 1) report('handler-run', { id: ctx.message.messageId, attempt: ctx.message.attempt, run: n });
      await h.handle(ctx);
    },
  })),
});
consumer.on('duplicate', (m) => report('duplicate', { id: m.messageId }));
consumer.on('conflictingDuplicate', (info) => report('conflicting-duplicate', { id: info.message.messageId }));
consumer.on('deadLettered', (i) => report('dead-lettered', { id: i.messageId, reason: i.reason, error: i.error }));
consumer.on('requeued', (i) => report('requeued', { id: i.messageId, error: i.error }));
consumer.on('retrying', (i) => report('retrying', { id: i.message.messageId, attempt: i.message.attempt, error: i.error, delayMs: i.delayMs }));
process.once('SIGTERM', () => {
  void consumer
    .stop()
    .then(() => amqp.close())
    .then(() => pool.end())
    .finally(() => process.exit(0));
});
await consumer.start();
report('ready', { pid: process.pid });
