import { DEFAULT_SCHEMA, MailroomError, type Queryable } from '@mailroom/core';
import { toExecutor } from '@mailroom/core/internal';
import { SAGA_STATUSES, type SagaStatus } from './saga-definition.js';
import { shortJson } from './saga-errors.js';
import { sagaTables } from './saga-sql.js';

/** An instance as `listSagas` shows it (without its state). */
export interface SagaSummary {
  /** The saga's name. */
  saga: string;
  /** The instance id. */
  id: string;
  /** Its status. */
  status: SagaStatus;
  /** Steps applied. */
  version: number;
  /** When its first step committed. */
  createdAt: Date;
  /** When its last step committed. */
  updatedAt: Date;
  /** When it ended, or null while it runs. */
  completedAt: Date | null;
}

/** One side of a history row. */
export interface SagaSnapshot {
  /** The status (null before the first step). */
  status: SagaStatus | null;
  /** The state as stored (null before the first step). */
  state: unknown;
  /** The version. */
  version: number;
}

/** One message that moved (or reached) an instance. */
export interface SagaHistoryEntry {
  /** Orders the entries of an instance. */
  seq: number;
  /** The message id. */
  messageId: string;
  /** The message type. */
  type: string;
  /** `applied` by a step, or `ignored` because the instance had ended. */
  outcome: 'applied' | 'ignored';
  /** The instance before the message. */
  from: SagaSnapshot;
  /** The instance after it. */
  to: SagaSnapshot;
  /** When the step's transaction started. */
  at: Date;
}

/** An instance with its state and history, as `readSaga` returns it. */
export interface SagaRecord extends SagaSummary {
  /** The state as stored (not parsed: a state an old schema wrote shows as it is). */
  state: unknown;
  /** Its history, oldest first (at most `historyLimit` entries, the latest ones). */
  history: SagaHistoryEntry[];
}

/** Options of {@link listSagas}. */
export interface ListSagasOptions {
  /** The schema of mailroom's tables. Default: `mailroom`. */
  schema?: string;
  /** Only this saga. Default: every saga. */
  name?: string;
  /** Only this status. Default: every status (`running` when `stuckForMs` is given). */
  status?: SagaStatus;
  /**
   * Only instances no step has moved for at least this many milliseconds (running ones, unless
   * `status` says otherwise), longest unchanged first. Default: no such filter, newest change first.
   */
  stuckForMs?: number;
  /** At most this many rows (1 to 10000). Default: 100. */
  limit?: number;
}

/** Options of {@link readSaga}. */
export interface ReadSagaOptions {
  /** The schema of mailroom's tables. Default: `mailroom`. */
  schema?: string;
  /** At most this many history entries, the latest (1 to 100000). Default: 1000. */
  historyLimit?: number;
}

const EQ = 'OPERATOR(pg_catalog.=)';

function positiveInt(value: unknown, what: string, max: number, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1 || value > max) {
    throw new MailroomError('INVALID_CONFIG', `${what} must be an integer from 1 to ${max} (got ${shortJson(value)}).`);
  }
  return value;
}

interface SummaryRow {
  saga: string;
  id: string;
  status: SagaStatus;
  version: string;
  created_at: Date;
  updated_at: Date;
  completed_at: Date | null;
}

const SUMMARY_COLUMNS = 'saga, id, status, version::pg_catalog.int8 AS version, created_at, updated_at, completed_at';

function toSummary(row: SummaryRow): SagaSummary {
  return {
    saga: row.saga,
    id: row.id,
    status: row.status,
    version: Number(row.version),
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    completedAt: row.completed_at,
  };
}

/**
 * Lists saga instances, filtered by saga, status and how long they have been unchanged, through
 * the indexes of migration 12. For `mailroom saga list` and for people looking for a stuck
 * workflow. Values are bound, built-ins schema-qualified.
 */
export async function listSagas(db: Queryable, options: ListSagasOptions = {}): Promise<SagaSummary[]> {
  const { sagas } = sagaTables(options.schema ?? DEFAULT_SCHEMA);
  const limit = positiveInt(options.limit, 'limit', 10_000, 100);
  if (options.status !== undefined && !SAGA_STATUSES.includes(options.status)) {
    throw new MailroomError('INVALID_CONFIG', `status must be one of ${SAGA_STATUSES.join(', ')} (got ${shortJson(options.status)}).`);
  }
  const stuck = options.stuckForMs;
  if (stuck !== undefined && (typeof stuck !== 'number' || !Number.isFinite(stuck) || stuck < 0)) {
    throw new MailroomError('INVALID_CONFIG', `stuckForMs must be a number of milliseconds, at least 0 (got ${shortJson(stuck)}).`);
  }
  const where: string[] = [];
  const params: unknown[] = [];
  if (options.name !== undefined) {
    params.push(options.name);
    where.push(`saga ${EQ} $${params.length}::pg_catalog.text`);
  }
  const status = options.status ?? (stuck === undefined ? undefined : 'running');
  if (status !== undefined) {
    params.push(status);
    where.push(`status ${EQ} $${params.length}::pg_catalog.text`);
  }
  if (stuck !== undefined) {
    params.push(stuck);
    where.push(
      `updated_at OPERATOR(pg_catalog.<=) (pg_catalog.now() OPERATOR(pg_catalog.-) ($${params.length}::pg_catalog.float8 OPERATOR(pg_catalog.*) '1 millisecond'::pg_catalog.interval))`,
    );
  }
  params.push(limit);
  const order = stuck === undefined ? 'updated_at DESC, saga, id' : 'updated_at ASC, saga, id';
  const result = await toExecutor(db).query<SummaryRow>(
    `SELECT ${SUMMARY_COLUMNS} FROM ${sagas} ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY ${order} LIMIT $${params.length}::pg_catalog.int8`,
    params,
  );
  return result.rows.map(toSummary);
}

interface HistoryRow {
  seq: string;
  message_id: string;
  message_type: string;
  outcome: 'applied' | 'ignored';
  from_status: SagaStatus | null;
  from_state: unknown;
  from_version: string;
  to_status: SagaStatus;
  to_state: unknown;
  to_version: string;
  at: Date;
}

/**
 * One instance with its state and history (oldest first), or undefined when there is none (an id
 * with NUL finds none). For `mailroom saga show`.
 */
export async function readSaga(db: Queryable, name: string, id: string, options: ReadSagaOptions = {}): Promise<SagaRecord | undefined> {
  const { sagas, history } = sagaTables(options.schema ?? DEFAULT_SCHEMA);
  const historyLimit = positiveInt(options.historyLimit, 'historyLimit', 100_000, 1000);
  // PostgreSQL text cannot hold NUL: no instance has such a name or id.
  if (typeof name !== 'string' || typeof id !== 'string' || name.includes('\u0000') || id.includes('\u0000')) return undefined;
  const executor = toExecutor(db);
  // Both reads always run (in one snapshot when `db` is a transaction), so a role without SELECT
  // on the history is told so even for an instance that is not there.
  const found = await executor.query<SummaryRow & { state: unknown }>(
    `SELECT ${SUMMARY_COLUMNS}, state FROM ${sagas} WHERE saga ${EQ} $1::pg_catalog.text AND id ${EQ} $2::pg_catalog.text`,
    [name, id],
  );
  const entries = await executor.query<HistoryRow>(
    `SELECT * FROM (
       SELECT seq::pg_catalog.int8 AS seq, message_id::pg_catalog.text AS message_id, message_type, outcome, from_status, from_state,
              from_version::pg_catalog.int8 AS from_version, to_status, to_state, to_version::pg_catalog.int8 AS to_version, at
         FROM ${history} WHERE saga ${EQ} $1::pg_catalog.text AND instance_id ${EQ} $2::pg_catalog.text
        ORDER BY seq DESC LIMIT $3::pg_catalog.int8) latest
      ORDER BY seq`,
    [name, id, historyLimit],
  );
  const row = found.rows[0];
  if (row === undefined) return undefined;
  return {
    ...toSummary(row),
    state: row.state,
    history: entries.rows.map((h) => ({
      seq: Number(h.seq),
      messageId: h.message_id,
      type: h.message_type,
      outcome: h.outcome,
      from: { status: h.from_status, state: h.from_state, version: Number(h.from_version) },
      to: { status: h.to_status, state: h.to_state, version: Number(h.to_version) },
      at: h.at,
    })),
  };
}
