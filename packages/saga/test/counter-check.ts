// The check of the counter saga (fixtures/saga-consumer.mjs) shared by the concurrency and crash
// tests: each instance's history holds each of its messages exactly once, and replaying the
// history serially from nothing gives every recorded step and the final state.
import { isDeepStrictEqual } from 'node:util';
import type { Env } from './support.js';

/** One published `saga.bump`. */
export interface Bump {
  id: string;
  seq: number;
  messageId: string;
}

type State = { count: number; sum: number; applied: number[] };

/** The counter saga's step, applied serially. */
const apply = (state: State | null, seq: number): State => ({
  count: (state?.count ?? 0) + 1,
  sum: (state?.sum ?? 0) + seq,
  applied: [...(state?.applied ?? []), seq],
});

/** What is wrong with the counter instances of `env` after `messages` were applied (empty when nothing). */
export async function counterProblems(env: Env, messages: readonly Bump[], perInstance: number): Promise<string[]> {
  const instances = await env.db.pool.query<{ id: string; status: string; version: string; state: State }>(
    `SELECT id, status, version::text, state FROM "${env.db.schema}".sagas WHERE saga = 'counter'`,
  );
  const history = await env.db.pool.query<{ instance_id: string; message_id: string; outcome: string; from_version: string; to_version: string; from_state: State | null; to_state: State }>(
    `SELECT instance_id, message_id::text, outcome, from_version::text, to_version::text, from_state, to_state FROM "${env.db.schema}".saga_history WHERE saga = 'counter' ORDER BY seq`,
  );
  const byInstance = new Map<string, typeof history.rows>();
  for (const row of history.rows) byInstance.set(row.instance_id, [...(byInstance.get(row.instance_id) ?? []), row]);
  const seqOf = new Map<string, number>(messages.map((m) => [m.messageId, m.seq]));
  const expectedIds = new Map<string, string[]>();
  for (const m of messages) expectedIds.set(m.id, [...(expectedIds.get(m.id) ?? []), m.messageId]);

  const problems: string[] = [];
  if (instances.rows.length !== expectedIds.size) problems.push(`${instances.rows.length} instances, not ${expectedIds.size}`);
  for (const row of instances.rows) {
    const rows = byInstance.get(row.id) ?? [];
    // Exactly once each: the history has each of the instance's message ids once, nothing else.
    const applied = rows.map((r) => r.message_id);
    if (JSON.stringify([...applied].sort()) !== JSON.stringify([...(expectedIds.get(row.id) ?? [])].sort())) {
      problems.push(`${row.id}: history holds ${applied.length} messages, not its ${perInstance}`);
      continue;
    }
    // A serial application: replaying the history in its order, one message at a time, from
    // nothing, gives every recorded step and the final state (jsonb orders keys its own way:
    // compared as values).
    let state: State | null = null;
    rows.forEach((r, k) => {
      if (r.outcome !== 'applied' || Number(r.from_version) !== k || Number(r.to_version) !== k + 1) problems.push(`${row.id}: history row ${k} is ${r.outcome} ${r.from_version}->${r.to_version}`);
      if (!isDeepStrictEqual(r.from_state, state)) problems.push(`${row.id}: history row ${k} starts from another state than row ${k - 1} left`);
      state = apply(state, seqOf.get(r.message_id) ?? -1);
      if (!isDeepStrictEqual(r.to_state, state)) problems.push(`${row.id}: history row ${k} is not its message applied to the state before it`);
    });
    if (!isDeepStrictEqual(row.state, state)) problems.push(`${row.id}: final state ${JSON.stringify(row.state)} is not the serial application ${JSON.stringify(state)}`);
    if (row.status !== 'running' || row.version !== String(perInstance)) problems.push(`${row.id}: ${row.status} at version ${row.version}`);
    if ([...row.state.applied].sort((a, b) => a - b).join() !== Array.from({ length: perInstance }, (_, k) => k + 1).join()) {
      problems.push(`${row.id}: applied ${JSON.stringify(row.state.applied)}`);
    }
  }
  return problems;
}
