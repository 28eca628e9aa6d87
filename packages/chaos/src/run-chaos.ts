import { randomBytes, randomInt } from 'node:crypto';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import * as amqp from 'amqplib';
import pg from 'pg';
import { z } from 'zod';
import { MailroomError, migrate, parseConfig, quoteIdentifier } from '@mailroom/core';
import { retryDelays } from '@mailroom/inbox';
import { CHAOS_RETRY } from './chaos-event.js';
import { check } from './checker.js';
import { startFaultProxy, type FaultProxy } from './fault-proxy.js';
import type { FinalState } from './final-state.js';
import { History } from './history.js';
import { Nemesis } from './nemesis.js';
import { DEFAULT_FAULTS, FAULT_KINDS, type ChaosDbContext, type ChaosOptions } from './options.js';
import { createRandom } from './random.js';
import type { ChaosReport } from './report.js';
import { ProcessSlot } from './supervisor.js';
import { startWorkload, workloadTablesSql } from './workload.js';

const optionsSchema = z.strictObject({
  databaseUrl: z.string().min(1),
  amqpUrl: z.string().min(1),
  seed: z.number().int().min(0).max(0xffffffff).optional(),
  durationMs: z.number().int().positive().default(60_000),
  relays: z.number().int().min(1).max(16).default(2),
  consumers: z.number().int().min(1).max(16).optional(),
  producers: z.number().int().min(1).max(64).default(3),
  keys: z.number().int().min(1).max(100_000).default(16),
  transactionsPerSecond: z.number().positive().default(40),
  maxEventsPerTransaction: z.number().int().min(1).max(100).default(3),
  rollbackRate: z.number().min(0).max(1).default(0.1),
  slowCommitRate: z.number().min(0).max(1).default(0.1),
  handlerFailureRate: z.number().min(0).max(1).optional(),
  ordering: z.boolean().default(false),
  faults: z.array(z.enum(FAULT_KINDS)).default([...DEFAULT_FAULTS]),
  faultIntervalMs: z.number().int().positive().default(1500),
  faultConcurrency: z.number().int().min(1).max(8).default(1),
  serviceRestarts: z.strictObject({ postgres: z.string().min(1).optional(), rabbitmq: z.string().min(1).optional() }).default({}),
  handlerModule: z.string().min(1).optional(),
  drainTimeoutMs: z.number().int().positive().default(60_000),
  quietMs: z.number().int().min(0).default(2000),
  historyPath: z.string().min(1).optional(),
  keep: z.boolean().default(false),
  setup: z.custom<NonNullable<ChaosOptions['setup']>>((v) => typeof v === 'function', 'expected a function').optional(),
  verify: z.custom<NonNullable<ChaosOptions['verify']>>((v) => typeof v === 'function', 'expected a function').optional(),
  signal: z.custom<AbortSignal>((v) => v instanceof AbortSignal, 'expected an AbortSignal').optional(),
  log: z.custom<(line: string) => void>((v) => typeof v === 'function', 'expected a function').optional(),
});

/** Where the built child-process entry points are (the sources run under vitest use the build). */
function workerScript(name: string): string {
  const here = fileURLToPath(import.meta.url);
  const file = here.endsWith('.ts') ? join(dirname(here), '..', 'dist', `${name}.js`) : join(dirname(here), `${name}.js`);
  if (!existsSync(file)) throw new MailroomError('INVALID_CONFIG', `${file} is missing: build @mailroom/chaos first (pnpm build).`);
  return file;
}

function target(url: string, defaultPort: number): { host: string; port: number } {
  const u = new URL(url);
  return { host: u.hostname === 'localhost' ? '127.0.0.1' : u.hostname, port: Number(u.port || defaultPort) };
}

/**
 * Runs a chaos test: producers commit domain rows with outbox events while relays and
 * consumers run as child processes and a seeded nemesis injects faults; then everything heals
 * and drains, and the checker compares the history with the final state. Resolves with the
 * report (check `report.valid`); rejects only when the run could not be set up.
 */
export async function runChaos(input: ChaosOptions): Promise<ChaosReport> {
  const o = parseConfig(optionsSchema, input, 'chaos options');
  const seed = o.seed ?? randomInt(0, 2 ** 31);
  const consumersCount = o.consumers ?? (o.ordering ? 1 : 2);
  if (o.ordering && consumersCount > 1) {
    throw new MailroomError('INVALID_CONFIG', 'chaos options: with ordering, run one consumer (several consumer processes do not pin keys).');
  }
  const failureRate = o.handlerFailureRate ?? (o.ordering ? 0 : 0.02);
  const log = o.log ?? ((): void => undefined);
  const random = createRandom(seed);
  const runId = randomBytes(3).toString('hex');
  const schema = `chaos_${runId}`;
  const exchange = `chaos.${runId}`;
  const queue = `chaos.${runId}.work`;
  const deadLetters = `chaos.${runId}.dead`;
  const consumerName = `chaos-${runId}`;
  const appPrefix = `mailroom-chaos-${runId}-`;
  const retryQueues = [...new Set(retryDelays(CHAOS_RETRY))].map((ms) => `${queue}.retry.${ms}ms`);
  const relayScript = workerScript('worker-relay');
  const consumerScript = workerScript('worker-consumer');
  const startedAt = new Date();
  const history = new History(o.historyPath);
  const phases: Record<string, number> = {};
  const config = {
    durationMs: o.durationMs,
    relays: o.relays,
    consumers: consumersCount,
    producers: o.producers,
    keys: o.keys,
    transactionsPerSecond: o.transactionsPerSecond,
    rollbackRate: o.rollbackRate,
    slowCommitRate: o.slowCommitRate,
    handlerFailureRate: failureRate,
    ordering: o.ordering,
    faults: o.faults,
    faultIntervalMs: o.faultIntervalMs,
    faultConcurrency: o.faultConcurrency,
    handlerModule: o.handlerModule,
    schema,
    exchange,
  };
  history.add('info', 'harness', 'phase', { phase: 'setup', seed, ...config });
  log(`chaos run ${runId}, seed ${seed}, schema ${schema}`);

  const admin = new pg.Pool({ connectionString: o.databaseUrl, max: 4, application_name: 'mailroom-chaos-harness' });
  admin.on('error', () => undefined);
  let connection: amqp.ChannelModel | undefined;
  let confirm: amqp.ConfirmChannel | undefined;
  const model = async (): Promise<amqp.ChannelModel> => {
    if (connection === undefined) {
      const c = await amqp.connect(o.amqpUrl);
      c.on('error', () => undefined);
      c.on('close', () => {
        connection = undefined;
        confirm = undefined;
      });
      connection = c;
    }
    return connection;
  };
  const channel = async (): Promise<amqp.ConfirmChannel> => {
    if (confirm !== undefined) return confirm;
    const ch = await (await model()).createConfirmChannel();
    ch.on('error', () => undefined);
    ch.on('close', () => {
      if (confirm === ch) confirm = undefined;
    });
    confirm = ch;
    return ch;
  };
  const dbQuery: ChaosDbContext['query'] = async <R extends Record<string, unknown>>(text: string, params?: unknown[]) => {
    const result = await admin.query<R>(text, params);
    return { rows: result.rows };
  };
  let verifyProblems: string[] = [];
  const proxies: { pg?: FaultProxy; amqp?: FaultProxy } = {};
  const slots: ProcessSlot[] = [];
  const stopWorkload = new AbortController();
  let workload: Promise<void> | undefined;
  let drained = false;
  let state: FinalState | undefined;
  const unjudgeable: string[] = [];

  try {
    await admin.query(`CREATE SCHEMA ${quoteIdentifier(schema)}`);
    await migrate(admin, { schema });
    await admin.query(workloadTablesSql(schema, o.keys));
    await o.setup?.({ query: dbQuery, schema });
    const ch = await channel();
    await ch.assertExchange(exchange, 'topic', { durable: true });

    proxies.pg = await startFaultProxy('pg', target(o.databaseUrl, 5432));
    proxies.amqp = await startFaultProxy('amqp', target(o.amqpUrl, 5672));
    const viaPg = proxies.pg.url(o.databaseUrl);
    const viaAmqp = proxies.amqp.url(o.amqpUrl);
    const onLine = (slot: ProcessSlot, event: Record<string, unknown>): void => {
      if (event.event === 'duplicate') history.add('info', slot.name, 'duplicate-delivery', { id: event.id });
      else if (event.event === 'dead-lettered') history.add('info', slot.name, 'dead-letter', { id: event.id, reason: event.reason, error: event.error });
      else if (event.event === 'requeued') history.add('info', slot.name, 'requeued', { id: event.id, error: event.error });
      else if (event.event === 'retrying') history.add('info', slot.name, 'retrying', { id: event.id, attempt: event.attempt, error: event.error, delayMs: event.delayMs });
    };
    const common = { CHAOS_DATABASE_URL: viaPg, CHAOS_AMQP_URL: viaAmqp, CHAOS_SCHEMA: schema, CHAOS_ORDERING: String(o.ordering) };
    for (let i = 1; i <= consumersCount; i += 1) {
      const env: Record<string, string> = {
        ...common,
        CHAOS_NAME: `${appPrefix}consumer-${i}`,
        CHAOS_CONSUMER: consumerName,
        CHAOS_QUEUE: queue,
        CHAOS_EXCHANGE: exchange,
        CHAOS_DEAD_LETTERS: deadLetters,
        CHAOS_FAILURE_RATE: String(failureRate),
        CHAOS_PREFETCH: o.ordering ? '50' : '20',
      };
      if (o.handlerModule !== undefined) env.CHAOS_HANDLER_MODULE = o.handlerModule;
      slots.push(new ProcessSlot({ name: `consumer-${i}`, role: 'consumer', script: consumerScript, env }, history, 500, onLine));
    }
    for (let i = 1; i <= o.relays; i += 1) {
      const env = { ...common, CHAOS_NAME: `${appPrefix}relay-${i}`, CHAOS_BATCH_SIZE: '100' };
      slots.push(new ProcessSlot({ name: `relay-${i}`, role: 'relay', script: relayScript, env }, history, 500, onLine));
    }
    // Consumers first: their queue must be bound before the relays publish (else: unroutable).
    for (const slot of slots) {
      if (!(await slot.start())) throw new MailroomError('UNREACHABLE', `${slot.name} did not start:\n${slot.output()}`);
    }

    history.add('info', 'harness', 'phase', { phase: 'workload' });
    log(`workload and nemesis for ${o.durationMs} ms`);
    const t0 = Date.now();
    workload = startWorkload(
      {
        databaseUrl: viaPg,
        schema,
        exchange,
        applicationName: `${appPrefix}producer`,
        seed,
        producers: o.producers,
        keys: o.keys,
        transactionsPerSecond: o.transactionsPerSecond,
        maxEventsPerTransaction: o.maxEventsPerTransaction,
        rollbackRate: o.rollbackRate,
        slowCommitRate: o.slowCommitRate,
      },
      history,
      stopWorkload.signal,
    );
    const stopNemesis = new AbortController();
    const targets = {
      relays: slots.filter((s) => s.spec.role === 'relay'),
      consumers: slots.filter((s) => s.spec.role === 'consumer'),
      proxies: { pg: proxies.pg, amqp: proxies.amqp },
      admin,
      channel,
      schema,
      exchange,
      applicationPrefix: appPrefix,
      serviceRestarts: o.serviceRestarts,
    };
    // One nemesis per concurrent fault stream; the first uses the run's random stream.
    const nemeses = Array.from({ length: o.faultConcurrency }, (_, i) => new Nemesis(targets, i === 0 ? random : createRandom(seed + (i + 1) * 7919), history, log));
    const nemesisDone = Promise.all(nemeses.map((n) => n.run(o.faults, o.faultIntervalMs, stopNemesis.signal)));
    await sleep(o.durationMs, undefined, o.signal !== undefined ? { signal: o.signal } : {}).catch(() => log('stopped early'));
    stopNemesis.abort();
    stopWorkload.abort();
    await nemesisDone;
    await workload;
    phases.workloadMs = Date.now() - t0;

    // Heal: no link faults, nothing paused, every process up and without crash points.
    history.add('invoke', 'nemesis', 'heal');
    proxies.pg.heal();
    proxies.amqp.heal();
    await Promise.all(slots.map((s) => s.ensureRunning()));
    history.add('ok', 'nemesis', 'heal');
    history.add('info', 'harness', 'phase', { phase: 'drain' });
    log('healed; draining');

    const poisonIds = history.ops.filter((op) => op.f === 'inject-poison' && op.type === 'ok').map((op) => (op.value as { id: string }).id);
    const t1 = Date.now();
    let last = '';
    for (;;) {
      const snapshot = await progress(admin, schema, poisonIds, model, [queue, ...retryQueues]).catch((e: unknown) => `error ${String(e)}`);
      if (snapshot.startsWith('done')) {
        drained = true;
        break;
      }
      if (snapshot !== last) log(`drain: ${snapshot}`);
      last = snapshot;
      if (Date.now() - t1 > o.drainTimeoutMs) break;
      await sleep(250);
    }
    phases.drainMs = Date.now() - t1;
    history.add('info', 'harness', 'phase', { phase: 'quiet', drained });
    const t2 = Date.now();
    const before = await progress(admin, schema, poisonIds, model, [queue, ...retryQueues]).catch(() => '');
    await sleep(o.quietMs);
    const after = await progress(admin, schema, poisonIds, model, [queue, ...retryQueues]).catch(() => '');
    if (drained && before !== after) log(`changed during the quiet period: ${before} -> ${after}`);
    phases.quietMs = Date.now() - t2;

    history.add('info', 'harness', 'phase', { phase: 'final-read' });
    await Promise.all(slots.map((s) => s.stop()));
    state = await readFinalState(admin, schema, consumerName, model, [queue, ...retryQueues], deadLetters);
    if (o.verify !== undefined) {
      const committed = state.domain.map((d) => ({ eventId: d.eventId, key: d.key, seq: d.seq }));
      verifyProblems = await o.verify({ query: dbQuery, schema, committed }).catch((e: unknown) => [`verify threw: ${e instanceof Error ? e.message : String(e)}`]);
    }
  } catch (error) {
    if (state === undefined && workload !== undefined) unjudgeable.push(`the run failed: ${error instanceof Error ? error.message : String(error)}`);
    else throw error;
  } finally {
    stopWorkload.abort();
    await workload?.catch(() => undefined);
    await Promise.all(slots.map((s) => s.stop().catch(() => undefined)));
    await proxies.pg?.close();
    await proxies.amqp?.close();
    if (!o.keep) {
      const ch = await channel().catch(() => undefined);
      for (const q of [queue, ...retryQueues, deadLetters]) await ch?.deleteQueue(q).catch(() => undefined);
      for (const e of [exchange, deadLetters]) await ch?.deleteExchange(e).catch(() => undefined);
      await admin.query(`DROP SCHEMA IF EXISTS ${quoteIdentifier(schema)} CASCADE`).catch(() => undefined);
    }
    await connection?.close().catch(() => undefined);
    await admin.end().catch(() => undefined);
    history.add('info', 'harness', 'phase', { phase: 'done' });
    await history.close();
  }

  const empty: FinalState = { domain: [], outbox: [], inbox: [], ledger: [], queues: [], queuedIds: [], deadLetters: [] };
  const result = check(history.ops, state ?? empty, { ordering: o.ordering });
  result.unjudgeable.push(...unjudgeable);
  if (!drained) result.unjudgeable.push('the drain timed out (see stuck)');
  result.valid = result.valid && result.unjudgeable.length === 0 && verifyProblems.length === 0;
  const finishedAt = new Date();
  const report: ChaosReport = {
    valid: result.valid,
    seed,
    startedAt: startedAt.toISOString(),
    finishedAt: finishedAt.toISOString(),
    elapsedMs: finishedAt.getTime() - startedAt.getTime(),
    config: { ...config, handlerModule: o.handlerModule ?? null },
    phases,
    drained,
    processes: slots.map((s) => ({ name: s.name, starts: s.starts, crashPointsFired: s.crashes })),
    check: result,
    verify: verifyProblems,
  };
  if (o.historyPath !== undefined) report.historyPath = o.historyPath;
  if (!result.valid) report.diagnostics = Object.fromEntries(slots.map((s) => [s.name, s.output().slice(-5000)]));
  return report;
}

async function queueCounts(model: () => Promise<amqp.ChannelModel>, queues: string[]): Promise<Array<{ queue: string; messages: number }>> {
  const conn = await model();
  const out: Array<{ queue: string; messages: number }> = [];
  for (const q of queues) {
    // A passive check of a missing queue closes its channel: one channel per queue.
    const probe = await conn.createChannel();
    probe.on('error', () => undefined);
    try {
      const ok = await probe.checkQueue(q);
      out.push({ queue: q, messages: ok.messageCount });
      await probe.close();
    } catch {
      out.push({ queue: q, messages: 0 });
    }
  }
  return out;
}

/** `done …` when every committed event took effect or is a dead letter and nothing waits anywhere. */
async function progress(admin: pg.Pool, schema: string, poison: string[], model: () => Promise<amqp.ChannelModel>, queues: string[]): Promise<string> {
  const s = quoteIdentifier(schema);
  const { rows } = await admin.query<{ outbox: number; pending: number; effects: number; poison: number }>(
    `SELECT (SELECT count(*) FROM ${s}.outbox)::int AS outbox,
            (SELECT count(*) FROM ${s}.chaos_domain d
              WHERE NOT EXISTS (SELECT 1 FROM ${s}.chaos_ledger l WHERE l.event_id = d.event_id)
                AND NOT EXISTS (SELECT 1 FROM ${s}.dead_letters x WHERE x.message_id = d.event_id))::int AS pending,
            (SELECT count(*) FROM ${s}.chaos_ledger)::int AS effects,
            (SELECT count(*) FROM unnest($1::uuid[]) AS p(id) WHERE NOT EXISTS (SELECT 1 FROM ${s}.dead_letters x WHERE x.message_id = p.id))::int AS poison`,
    [poison],
  );
  const r = rows[0] as { outbox: number; pending: number; effects: number; poison: number };
  const queued = (await queueCounts(model, queues)).reduce((a, q) => a + q.messages, 0);
  const done = r.outbox === 0 && r.pending === 0 && r.poison === 0 && queued === 0;
  return `${done ? 'done' : 'waiting'}: outbox ${r.outbox}, without effect ${r.pending}, poison not dead-lettered ${r.poison}, queued ${queued}, effects ${r.effects}`;
}

async function readFinalState(
  admin: pg.Pool,
  schema: string,
  consumer: string,
  model: () => Promise<amqp.ChannelModel>,
  queues: string[],
  deadLetterQueue: string,
): Promise<FinalState> {
  const s = quoteIdentifier(schema);
  const domain = await admin.query<{ event_id: string; key: string; seq: number; created_at: Date }>(`SELECT event_id, key, seq, created_at FROM ${s}.chaos_domain`);
  const outbox = await admin.query<{ message_id: string; attempts: number; last_error: string | null }>(`SELECT message_id, attempts, last_error FROM ${s}.outbox`);
  const inbox = await admin.query<{ message_id: string }>(`SELECT message_id FROM ${s}.inbox WHERE consumer = $1`, [consumer]);
  const ledger = await admin.query<{ id: string; event_id: string; key: string | null; applied_at: Date }>(`SELECT id, event_id, key, applied_at FROM ${s}.chaos_ledger ORDER BY id`);
  const dead = await admin.query<{ message_id: string; source: string; reason: string }>(`SELECT message_id, source, reason FROM ${s}.dead_letters`);
  // Messages still queued: fetched without an ack and given back when the channel closes.
  const queuedIds: string[] = [];
  const conn = await model();
  for (const q of queues) {
    const reader = await conn.createChannel();
    reader.on('error', () => undefined);
    try {
      for (let i = 0; i < 100_000; i += 1) {
        const m = await reader.get(q, { noAck: false });
        if (m === false) break;
        queuedIds.push(String(m.properties.messageId));
      }
      await reader.close();
    } catch {
      // the queue does not exist: nothing waits in it
    }
  }
  return {
    domain: domain.rows.map((r) => ({ eventId: r.event_id, key: r.key, seq: r.seq, createdAt: r.created_at.getTime() })),
    outbox: outbox.rows.map((r) => ({ messageId: r.message_id, attempts: r.attempts, lastError: r.last_error })),
    inbox: inbox.rows.map((r) => r.message_id),
    ledger: ledger.rows.map((r) => ({ id: Number(r.id), eventId: r.event_id, key: r.key, seq: null, appliedAt: r.applied_at.getTime() })),
    queues: await queueCounts(model, [...queues, deadLetterQueue]),
    queuedIds,
    deadLetters: dead.rows.map((r) => ({ messageId: r.message_id, source: r.source, reason: r.reason })),
  };
}
