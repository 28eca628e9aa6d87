import type { z } from 'zod/v4';
import { DEFAULT_SCHEMA, MailroomError, describeError, type MetricsRegistry, type OutgoingMessage, type Queryable } from '@mailroom/core';
import { crashPoint, validateIdentifier } from '@mailroom/core/internal';
import type { HandlerBinding, HandlerContext } from '@mailroom/inbox';
import { cancelScheduled, enqueue } from '@mailroom/outbox';
import { instanceIdProblem } from './correlation-id.js';
import type { Saga, SagaStatus, SagaStep, SendOptions, StepContext } from './saga-definition.js';
import { SagaNotStartedError, describeIssues, shortJson, stepRefused } from './saga-errors.js';
import { sagaStepCounter, type SagaStepOutcome } from './saga-metrics.js';
import { stepSql, type StepSql } from './saga-sql.js';

/** Options of {@link sagaHandlers}. */
export interface SagaHandlersOptions {
  /** The schema of mailroom's tables (the instances, the history, the outbox). Default: `mailroom`. */
  schema?: string;
  /**
   * The largest state, in bytes of its JSON, a step may store; a larger one sends the message to
   * the dead letters (the instance unchanged). Default: 1048576 (1 MiB).
   */
  maxStateBytes?: number;
  /** Where `mailroom_saga_steps_total{saga,type,outcome}` is counted. Default: not counted. */
  metrics?: MetricsRegistry;
}

/** The default of {@link SagaHandlersOptions.maxStateBytes}. */
export const DEFAULT_MAX_STATE_BYTES = 1_048_576;

interface LockedRow {
  status: SagaStatus;
  state: unknown;
  version: string | number;
  snapshot_version: string | number | null;
  seen: boolean;
}

interface StepRun<TTx> {
  saga: Saga<z.ZodType, TTx>;
  step: SagaStep<unknown, unknown, TTx>;
  schema: string;
  sql: StepSql;
  maxStateBytes: number;
  count: (outcome: SagaStepOutcome) => void;
}

/**
 * The saga's steps as inbox handlers, one per message type, for `createConsumer({ handlers })`.
 * Each step runs in the consumer's inbox transaction: it locks the instance row (or creates it,
 * for a `starts` step), parses the state, runs the handler, stores the new state with the version
 * bumped and writes a history row, all committed with the inbox row or not at all. So two
 * consumer processes never lose an update, and a message is applied to an instance at most once
 * (the inbox, and the history's key for a message that reaches the saga through two consumers).
 *
 * What happens to the awkward messages:
 * - no instance and a step that does not start one: `SagaNotStartedError`, retried by the
 *   consumer's retry policy, then dead-lettered (`max-attempts`);
 * - an ended instance: recorded in the history as `ignored`, the handler not called (unless the
 *   step says `afterEnd: 'handle'`);
 * - a handler that throws: the transaction rolls back (instance unchanged), retried, then dead-lettered;
 * - a stored state the schema refuses, a returned state it refuses or that is too large, a
 *   correlation that throws or is not a usable id: dead-lettered at once (`NonRetryableError`),
 *   the error naming the saga, the instance and the problems.
 */
export function sagaHandlers<TSchema extends z.ZodType, TTx = Queryable>(saga: Saga<TSchema, TTx>, options: SagaHandlersOptions = {}): Array<HandlerBinding<TTx>> {
  const schema = validateIdentifier(options.schema ?? DEFAULT_SCHEMA);
  const maxStateBytes = options.maxStateBytes ?? DEFAULT_MAX_STATE_BYTES;
  if (!Number.isSafeInteger(maxStateBytes) || maxStateBytes < 2) {
    throw new MailroomError('INVALID_CONFIG', `Invalid saga handler options: maxStateBytes must be an integer of at least 2 (got ${shortJson(maxStateBytes)}).`);
  }
  const unknown = Object.keys(options).filter((k) => !['schema', 'maxStateBytes', 'metrics'].includes(k));
  if (unknown.length > 0) throw new MailroomError('INVALID_CONFIG', `Invalid saga handler options: unknown key ${unknown.map((k) => JSON.stringify(k)).join(', ')}.`);
  const sql = stepSql(schema);
  const counter = options.metrics === undefined ? undefined : sagaStepCounter(options.metrics);
  return [...saga.steps.values()].map((s) => {
    const type = s.contract.type;
    const run: StepRun<TTx> = {
      saga,
      step: s as unknown as SagaStep<unknown, unknown, TTx>,
      schema,
      sql,
      maxStateBytes,
      count: (outcome) => counter?.inc({ saga: saga.name, type, outcome }),
    };
    return { contract: s.contract, handle: (context: HandlerContext<unknown, TTx>) => applyStep(run, context) };
  });
}

/** Applies one message to its instance, in the consumer's transaction. */
async function applyStep<TTx>(run: StepRun<TTx>, context: HandlerContext<unknown, TTx>): Promise<void> {
  const { saga, step, sql } = run;
  const { db, message, payload } = context;
  const type = step.contract.type;
  let correlated: unknown;
  try {
    correlated = step.correlate(payload, message);
  } catch (error) {
    throw stepRefused(saga.name, type, `correlate threw: ${describeError(error)}`, error);
  }
  const problem = instanceIdProblem(correlated);
  if (problem !== undefined) throw stepRefused(saga.name, type, `correlate returned ${shortJson(correlated)}, which cannot be an instance id: ${problem}.`);
  const id = correlated as string;
  const lock = async (): Promise<LockedRow | undefined> => {
    const locked = (await db.query<LockedRow>(sql.lock, [saga.name, id, message.messageId])).rows[0];
    // The lock waited for a transaction that changed the instance (the same message through
    // another consumer, perhaps): its history row is only visible to a new statement.
    if (locked !== undefined && String(locked.snapshot_version) !== String(locked.version)) {
      locked.seen = (await db.query<{ seen: boolean }>(sql.seen, [saga.name, id, message.messageId])).rows[0]?.seen === true;
    }
    return locked;
  };

  let row = await lock();
  let isNew = false;
  if (row === undefined) {
    if (!step.starts) throw new SagaNotStartedError(saga.name, id, type);
    // A row this insert creates is locked by this transaction; when another transaction creates
    // it at the same time, the insert waits for that one to end and then the lock finds its row.
    isNew = (await db.query(sql.create, [saga.name, id])).rowCount > 0;
    if (!isNew) {
      row = await lock();
      if (row === undefined) throw new Error(`Saga "${saga.name}" instance ${JSON.stringify(id)} was removed while a "${type}" message was creating it; retried.`);
    }
  }
  if (row?.seen === true) {
    run.count('duplicate');
    return;
  }
  const status: SagaStatus = row?.status ?? 'running';
  const version = row === undefined ? 0 : Number(row.version);
  if (status !== 'running' && step.afterEnd === 'ignore') {
    await db.query(sql.ignore, [saga.name, id, message.messageId, type]);
    run.count('ignored');
    return;
  }
  let state: unknown;
  if (row !== undefined) {
    const parsed = saga.state.safeParse(row.state);
    if (!parsed.success) {
      throw stepRefused(
        saga.name,
        type,
        `instance ${JSON.stringify(id)} (version ${version}) has a stored state the saga's schema refuses (did the schema change?): ${describeIssues(parsed.error.issues)}`,
      );
    }
    state = parsed.data;
  }

  let ending: SagaStatus | undefined;
  const stepContext: StepContext<unknown, unknown, boolean, TTx> = {
    state,
    payload,
    message,
    tx: context.tx,
    db,
    instance: { saga: saga.name, id, status, version, isNew },
    signal: context.signal,
    send: (messages, options) => send(run, context.tx, messages, options),
    schedule: (outgoing, options) => schedule(run, context, id, outgoing, options),
    cancel: (messageId) => cancelScheduled(context.tx as Queryable, messageId, { schema: run.schema }),
    complete: () => {
      ending = 'completed';
    },
    fail: () => {
      ending = 'failed';
    },
  };
  const returned = await step.handle(stepContext);
  const json = stateJson(run, id, type, returned);
  const next: SagaStatus = status === 'running' ? (ending ?? 'running') : status;
  // For crash tests and the chaos harness: the handler ran (its sends are in the transaction), nothing stored yet.
  crashPoint('saga.before-save');
  const saved = await db.query(sql.save, [saga.name, id, json, next, message.messageId, type]);
  if (saved.rowCount !== 1) throw new Error(`Saga "${saga.name}" instance ${JSON.stringify(id)}: storing the new state wrote ${saved.rowCount} history rows, not 1; retried.`);
  run.count(isNew ? 'started' : next !== status ? (next === 'completed' ? 'completed' : 'failed') : 'applied');
}

/** The handler's result, validated, as JSON text that parses again to the same state. */
function stateJson<TTx>(run: StepRun<TTx>, id: string, type: string, returned: unknown): string {
  const { saga } = run;
  const refuse = (why: string, cause?: unknown): never => {
    throw stepRefused(saga.name, type, `instance ${JSON.stringify(id)}: ${why}`, cause);
  };
  const parsed = saga.state.safeParse(returned);
  if (!parsed.success) refuse(`the handler returned a state the saga's schema refuses: ${describeIssues(parsed.error.issues)}`);
  let json: string | undefined;
  try {
    json = JSON.stringify(parsed.data);
  } catch (error) {
    refuse(`the new state is not JSON: ${describeError(error)}`, error);
  }
  if (json === undefined) return refuse('the new state is not JSON (undefined or a function).');
  const bytes = Buffer.byteLength(json);
  if (bytes > run.maxStateBytes) refuse(`the new state is ${bytes} bytes of JSON, more than maxStateBytes (${run.maxStateBytes}).`);
  // A state that does not survive JSON (a Date, a one-way transform) would be refused by the next
  // step's load: refuse it now, where the handler that made it is named.
  const again = saga.state.safeParse(JSON.parse(json));
  if (!again.success) {
    refuse(`the new state does not parse again once stored as JSON (a Date? a one-way transform?): ${describeIssues(again.error.issues)}`);
  }
  return json;
}

async function send<TTx>(run: StepRun<TTx>, tx: TTx, messages: OutgoingMessage | readonly OutgoingMessage[], options: SendOptions = {}): Promise<void> {
  await enqueue(tx as Queryable, messages, { ...options, schema: run.schema });
}

async function schedule<TTx>(run: StepRun<TTx>, context: HandlerContext<unknown, TTx>, id: string, message: OutgoingMessage, options: SendOptions): Promise<string> {
  const { saga } = run;
  if (typeof options !== 'object' || options === null || (options.delay === undefined && options.deliverAt === undefined)) {
    throw new MailroomError('INVALID_CONFIG', `Saga "${saga.name}": schedule() needs { delay } or { deliverAt }; use send() to send at once.`);
  }
  const target = saga.steps.get(message?.type);
  if (target === undefined) {
    throw new MailroomError(
      'INVALID_MESSAGE',
      `Saga "${saga.name}": schedule() sends a message to this saga, and it has no step for "${String(message?.type)}" (steps: ${[...saga.steps.keys()].join(', ')}); use send() for other services.`,
    );
  }
  // The timeout must come back to this instance: a correlation that points elsewhere is a bug
  // found now rather than when the timeout fires.
  let back: unknown;
  try {
    back = target.correlate(message.payload, context.message);
  } catch (error) {
    throw new MailroomError('INVALID_MESSAGE', `Saga "${saga.name}": the scheduled "${message.type}" message cannot be correlated: ${describeError(error)}`, { cause: error });
  }
  if (back !== id) {
    throw new MailroomError(
      'INVALID_MESSAGE',
      `Saga "${saga.name}": the scheduled "${message.type}" message correlates to ${shortJson(back)}, not to this instance ${JSON.stringify(id)}.`,
    );
  }
  await enqueue(context.tx as Queryable, message, { ...options, schema: run.schema });
  return message.messageId;
}
