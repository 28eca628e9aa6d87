import { hostname, userInfo } from 'node:os';
import { toExecutor, type Executor } from '@mailroom/core/internal';
import type { DeadLetterSelection } from './dead-letter-selection.js';
import { storableText } from './storable-text.js';
import type { StoreContext } from './store-context.js';

/** What an audited action did. */
export type DeadLetterActionKind = 'replay' | 'discard';

/** One replay or discard, as `dead_letter_actions` (migration 8) records it. */
export interface DeadLetterAction {
  /** The row id (a bigint, as text). */
  id: string;
  /** When it committed. */
  at: Date;
  /** Who, as the caller said (`cli:<os user>@<host>` for the CLI). */
  actor: string;
  /** Who, as PostgreSQL knows it: the role that ran it. */
  dbUser: string;
  action: DeadLetterActionKind;
  /**
   * What was asked for: the ids and/or group, or the filter (its times as ISO text); `force`
   * and `edited` (the payload was edited before the replay) for a replay.
   */
  selection: { ids?: string[]; group?: string; filter?: Record<string, unknown>; force?: boolean; edited?: boolean };
  /** How many dead letters it acted on. */
  count: number;
  /** Their message ids. */
  messageIds: string[];
}

/**
 * Who acts when the caller does not say: `api:<os user>@<host>`. The OS user may be unknown in a
 * container without a passwd entry; then the `USER` variable, else `unknown`.
 */
export function defaultActor(prefix = 'api'): string {
  let user: string;
  try {
    user = userInfo().username;
  } catch {
    user = process.env.USER ?? process.env.USERNAME ?? 'unknown';
  }
  return `${prefix}:${user}@${hostname()}`;
}

/** Records one action in the caller's transaction, so it commits (or not) with the action itself. */
export async function recordAction(
  tx: Executor,
  ctx: StoreContext,
  action: { actor: string; action: DeadLetterActionKind; selection: DeadLetterSelection & { force?: boolean; edited?: boolean }; messageIds: readonly string[] },
): Promise<void> {
  const selection: DeadLetterAction['selection'] = {};
  if (action.selection.ids !== undefined && action.selection.ids.length > 0) selection.ids = [...action.selection.ids];
  if (action.selection.group !== undefined && action.selection.group !== '') selection.group = action.selection.group;
  if (action.selection.filter !== undefined) {
    // Only the conditions that were set, times as ISO text (JSON.stringify of a Date).
    selection.filter = Object.fromEntries(Object.entries(action.selection.filter).filter(([, v]) => v !== undefined && v !== '' && v !== false));
  }
  if (action.selection.force === true) selection.force = true;
  if (action.selection.edited === true) selection.edited = true;
  await tx.query(
    `INSERT INTO ${ctx.quotedSchema}.dead_letter_actions (actor, action, selection, count, message_ids) VALUES ($1, $2, $3::jsonb, $4, $5::uuid[])`,
    [storableText(action.actor).slice(0, 500), action.action, JSON.stringify(selection, (_k, v: unknown) => (typeof v === 'string' ? storableText(v) : v)), action.messageIds.length, action.messageIds],
  );
}

interface ActionRow {
  id: string;
  at: Date;
  actor: string;
  db_user: string;
  action: DeadLetterActionKind;
  selection: DeadLetterAction['selection'];
  count: number;
  message_ids: string[];
}

/** The newest `limit` audited actions, newest first. */
export async function listActions(ctx: StoreContext, options: { limit?: number } = {}): Promise<DeadLetterAction[]> {
  const result = await toExecutor(ctx.db).query<ActionRow>(
    `SELECT id::text AS id, at, actor, db_user, action, selection, count, message_ids::text[] AS message_ids
     FROM ${ctx.quotedSchema}.dead_letter_actions ORDER BY ${ctx.quotedSchema}.dead_letter_actions.id DESC LIMIT $1`,
    [options.limit ?? 100],
  );
  return result.rows.map((r) => ({
    id: r.id,
    at: new Date(r.at),
    actor: r.actor,
    dbUser: r.db_user,
    action: r.action,
    selection: r.selection,
    count: Number(r.count),
    messageIds: r.message_ids,
  }));
}
