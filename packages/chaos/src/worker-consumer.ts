// A consumer in its own process, started by the chaos harness (node dist/worker-consumer.js).
// Each handled event writes one ledger row in the handler's transaction; the ledger has no
// unique constraint, so an effect applied twice stays visible to the checker.
import { pathToFileURL } from 'node:url';
import pg from 'pg';
import { createAmqpConnection } from '@mailroom/core';
import { crashPoint, quoteIdentifier } from '@mailroom/core/internal';
import { createDeadLetterSink } from '@mailroom/dlq';
import { createConsumer, handler, NonRetryableError } from '@mailroom/inbox';
import { CHAOS_RETRY, chaosEvent, type ChaosEffect } from './chaos-event.js';
import { need, needInt, report } from './worker-env.js';

const name = need('CHAOS_NAME');
const schema = need('CHAOS_SCHEMA');
const ordering = need('CHAOS_ORDERING') === 'true';
const failureRate = Number(need('CHAOS_FAILURE_RATE'));
const prefetch = needInt('CHAOS_PREFETCH');
const ledger = `${quoteIdentifier(schema)}.chaos_ledger`;
const modulePath = process.env.CHAOS_HANDLER_MODULE ?? '';
let effect: ChaosEffect | undefined;
if (modulePath !== '') {
  const mod = (await import(modulePath.startsWith('file:') ? modulePath : pathToFileURL(modulePath).href)) as { effect?: ChaosEffect; default?: ChaosEffect };
  effect = mod.effect ?? mod.default;
  if (typeof effect !== 'function') throw new Error(`${modulePath} exports no function "effect"`);
}

// Handler runs beyond the first of a message in this process are reported: the checker counts
// them after the heal (a retry in place never shows on the wire). First runs, the rule, are not.
const runs = new Map<string, number>();
function noteRun(id: string, attempt: number): void {
  const n = (runs.get(id) ?? 0) + 1;
  runs.set(id, n);
  if (runs.size > 100_000) runs.clear();
  if (n > 1 || attempt > 1) report('handler-run', { id, attempt, run: n });
}

const pool = new pg.Pool({ connectionString: need('CHAOS_DATABASE_URL'), max: prefetch + 4, application_name: name });
pool.on('error', () => undefined);
const contract = chaosEvent(need('CHAOS_EXCHANGE'));
// One connection for the consumer and its sink, as a service shares it.
// Several URLs (a cluster's nodes, comma-separated): the connection fails over between them.
const amqp = createAmqpConnection({ url: need('CHAOS_AMQP_URL').split(','), name });
const queueType = process.env.CHAOS_QUEUE_TYPE === 'quorum' ? 'quorum' : 'classic';
const partitionCount = Number(process.env.CHAOS_PARTITIONS ?? '0');
const deadLetters = { exchange: need('CHAOS_DEAD_LETTERS'), queue: need('CHAOS_DEAD_LETTERS') };
// The sink runs in the consumer's process (the consumer starts and stops it), so the nemesis's
// kills and crash points (`dlq.sink.after-commit-before-ack`) hit it too.
const sink = createDeadLetterSink({ db: pool, amqp, schema, topology: deadLetters });
const consumer = createConsumer({
  name: need('CHAOS_CONSUMER'),
  queue: need('CHAOS_QUEUE'),
  db: pool,
  amqp,
  schema,
  prefetch,
  ordering,
  queueType,
  // The leases move a dead process's partitions within about a second (the nemesis kills often).
  ...(partitionCount > 0 ? { partitions: { count: partitionCount, pool, rebalanceMs: 500, handoverTimeoutMs: 2000 } } : {}),
  stopTimeoutMs: 2000,
  retry: CHAOS_RETRY,
  deadLetters: { ...deadLetters, sink },
  handlers: [
    handler(contract, async (ctx) => {
      const { payload, db, message } = ctx;
      noteRun(message.messageId, message.attempt);
      if (payload.poison === 'throw') throw new NonRetryableError('chaos: poison message');
      if (payload.poison === 'transient') throw new Error('chaos: hostile message fails on every attempt');
      // Half the injected failures come after the user's effect and before COMMIT: an effect
      // written outside the transaction is then applied again by the retry.
      const failure = failureRate > 0 && Math.random() < failureRate ? (Math.random() < 0.5 ? 'before' : 'after') : undefined;
      if (failure === 'before') throw new Error('chaos: transient handler failure');
      if (effect !== undefined) await effect({ ...ctx, schema });
      crashPoint('chaos.handler.mid');
      await db.query(`INSERT INTO ${ledger} (event_id, key, consumer, pid) VALUES ($1, $2, $3, $4)`, [message.messageId, payload.key, name, process.pid]);
      if (failure === 'after') throw new Error('chaos: transient handler failure after the effect');
    }),
  ],
});
consumer.on('duplicate', (m) => report('duplicate', { id: m.messageId }));
// Same id, another payload: the checker wants it reported, never taken as a plain duplicate.
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
consumer.on('partitions', (held) => report('partitions', { held }));
report('ready', { pid: process.pid });
