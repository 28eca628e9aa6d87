import { describeError } from '@mailroom/core';
import { writeDeadLetters, type DeadLetterRecord, type Executor } from '@mailroom/core/internal';

/** What {@link writeDeadLettersIsolated} managed to write, and what it could not. */
export interface IsolatedWrite {
  written: DeadLetterRecord[];
  failed: Array<{ record: DeadLetterRecord; error: string }>;
}

const SAVEPOINT = 'mailroom_dead_letters';

async function underSavepoint(db: Executor, records: readonly DeadLetterRecord[], schema: string): Promise<string | undefined> {
  await db.query(`SAVEPOINT ${SAVEPOINT}`);
  try {
    await writeDeadLetters(db, schema, records);
  } catch (error) {
    // Back to before this write only: the batch's other work stands. If even this fails, the
    // session is gone and the caller's batch fails as a whole (it was never committed).
    await db.query(`ROLLBACK TO SAVEPOINT ${SAVEPOINT}`);
    await db.query(`RELEASE SAVEPOINT ${SAVEPOINT}`);
    return describeError(error);
  }
  await db.query(`RELEASE SAVEPOINT ${SAVEPOINT}`);
  return undefined;
}

/**
 * Writes a batch's dead letters inside the batch transaction under a savepoint, so a write that
 * fails (a relay role without INSERT on `dead_letters`, a trigger that raises, a row the table
 * refuses) undoes only itself, never the deletes of the rows the broker already confirmed. All
 * at once first; when that fails and there are several, one at a time, so one record that cannot
 * be written does not keep the others out. The caller leaves each failed one in the outbox for a
 * later attempt, with the error in `last_error`.
 */
export async function writeDeadLettersIsolated(db: Executor, schema: string, records: readonly DeadLetterRecord[]): Promise<IsolatedWrite> {
  if (records.length === 0) return { written: [], failed: [] };
  const all = await underSavepoint(db, records, schema);
  if (all === undefined) return { written: [...records], failed: [] };
  if (records.length === 1) return { written: [], failed: [{ record: records[0] as DeadLetterRecord, error: all }] };
  const result: IsolatedWrite = { written: [], failed: [] };
  for (const record of records) {
    const error = await underSavepoint(db, [record], schema);
    if (error === undefined) result.written.push(record);
    else result.failed.push({ record, error });
  }
  return result;
}
