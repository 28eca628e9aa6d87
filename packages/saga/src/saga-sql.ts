import { quoteIdentifier } from '@mailroom/core/internal';

// Every statement of a step, built once per schema. Values are always bound; functions,
// operators and types are schema-qualified so a hostile search_path changes nothing.

/** The statements a step runs, for one schema. */
export interface StepSql {
  /**
   * Locks an instance ($1 saga, $2 id) and says whether message $3 was applied to it before
   * (through any consumer: the history's key is the saga-level dedupe). `seen` is read in the
   * statement's snapshot: when the lock waited for another transaction that changed the row
   * (`snapshot_version` differs from `version`, which is the row as locked), ask `seen` again.
   */
  lock: string;
  /** Whether message $3 was applied to instance ($1 saga, $2 id), in a fresh snapshot. */
  seen: string;
  /** Creates an instance ($1 saga, $2 id) unless it exists; returns a row only when it created one (the row is then locked by this transaction). */
  create: string;
  /**
   * Stores the new state of a locked instance and its history row in one statement:
   * $1 saga, $2 id, $3 state (JSON text), $4 status, $5 message id, $6 message type.
   */
  save: string;
  /**
   * Records a message ignored by an ended instance: $1 saga, $2 id, $3 message id, $4 message type.
   * Nothing else was done for it, so a row that another consumer recorded meanwhile is enough.
   */
  ignore: string;
}

const EQ = 'OPERATOR(pg_catalog.=)';

/** The quoted tables of a schema. */
export function sagaTables(schema: string): { sagas: string; history: string } {
  const q = quoteIdentifier(schema);
  return { sagas: `${q}.sagas`, history: `${q}.saga_history` };
}

/** The step statements for `schema` (validated and quoted here). */
export function stepSql(schema: string): StepSql {
  const { sagas, history } = sagaTables(schema);
  const same = `saga ${EQ} $1::pg_catalog.text AND id ${EQ} $2::pg_catalog.text`;
  const seen = `EXISTS (SELECT FROM ${history} h
                 WHERE h.saga ${EQ} $1::pg_catalog.text AND h.instance_id ${EQ} $2::pg_catalog.text
                   AND h.message_id ${EQ} $3::pg_catalog.uuid)`;
  return {
    // In READ COMMITTED a FOR UPDATE that waited returns the row as the other transaction left it,
    // but subqueries still read the statement's snapshot: `snapshot_version` tells the two apart.
    lock: `SELECT s.status, s.state, s.version::pg_catalog.int8 AS version,
              (SELECT v.version FROM ${sagas} v WHERE v.saga ${EQ} s.saga AND v.id ${EQ} s.id)::pg_catalog.int8 AS snapshot_version,
              ${seen} AS seen
         FROM ${sagas} s WHERE s.saga ${EQ} $1::pg_catalog.text AND s.id ${EQ} $2::pg_catalog.text
          FOR UPDATE OF s`,
    seen: `SELECT ${seen} AS seen`,
    create: `INSERT INTO ${sagas} (saga, id, state) VALUES ($1::pg_catalog.text, $2::pg_catalog.text, 'null'::pg_catalog.jsonb)
             ON CONFLICT DO NOTHING RETURNING version`,
    // The sub-select reads the row as it was before this statement (every part of one statement
    // sees the same snapshot), so the history row gets both sides without sending the old state back.
    save: `WITH old AS (SELECT status, state, version FROM ${sagas} WHERE ${same}),
                saved AS (
                  UPDATE ${sagas} SET state = $3::pg_catalog.jsonb, status = $4::pg_catalog.text,
                         version = version OPERATOR(pg_catalog.+) 1, updated_at = pg_catalog.now(),
                         completed_at = CASE WHEN $4::pg_catalog.text ${EQ} 'running' THEN NULL ELSE COALESCE(completed_at, pg_catalog.now()) END
                   WHERE ${same}
               RETURNING status, state, version)
           INSERT INTO ${history} (saga, instance_id, message_id, message_type, outcome, from_status, from_state, from_version, to_status, to_state, to_version)
           SELECT $1::pg_catalog.text, $2::pg_catalog.text, $5::pg_catalog.uuid, $6::pg_catalog.text, 'applied',
                  CASE WHEN old.version ${EQ} 0 THEN NULL ELSE old.status END,
                  CASE WHEN old.version ${EQ} 0 THEN NULL ELSE old.state END,
                  old.version, saved.status, saved.state, saved.version
             FROM old, saved`,
    ignore: `INSERT INTO ${history} (saga, instance_id, message_id, message_type, outcome, from_status, from_state, from_version, to_status, to_state, to_version)
             SELECT saga, id, $3::pg_catalog.uuid, $4::pg_catalog.text, 'ignored', status, state, version, status, state, version
               FROM ${sagas} WHERE ${same}
             ON CONFLICT DO NOTHING`,
  };
}
