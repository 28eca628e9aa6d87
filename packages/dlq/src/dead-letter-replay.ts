import { MailroomError, type OutgoingMessage } from '@mailroom/core';
import { inTransaction, replayHeaders, versionOfHeaders, type Executor } from '@mailroom/core/internal';
import { enqueue } from '@mailroom/outbox';
import { recordAction } from './dead-letter-audit.js';
import { heldBehindHead, releaseParked } from './parked-release.js';
import type { DeadLetter } from './dead-letter.js';
import { DEAD_LETTER_COLUMNS, toDeadLetter, type DeadLetterRow } from './dead-letter-row.js';
import { selectionWhere, type DeadLetterSelection } from './dead-letter-selection.js';
import { assertWithinRetention, occurredAtOfDeadLetter } from './replay-retention-check.js';
import { hasUnstorable } from './storable-text.js';
import type { StoreContext } from './store-context.js';

/** Options of `DeadLetterStore.replay`. */
export interface ReplayOptions extends DeadLetterSelection {
  /** Say what would be replayed, change nothing. Default: false. */
  dryRun?: boolean;
  /**
   * Replay even when a message is older than the shortest inbox retention window: a consumer
   * that already handled it may have forgotten that and handle it again. Default: false.
   */
  force?: boolean;
  /** Who replays, for the audit. Default: the store's `actor`. */
  actor?: string;
  /**
   * Examine at most this many dead letters of the selection (by row id), so a large set is
   * replayed in several short transactions: pass the result's `lastId` as `afterId` to go on,
   * until `done`. Default: the whole selection in one transaction.
   */
  limit?: number;
  /** Only dead letters with a row id greater than this (the `lastId` of the previous batch). Default: from the first. */
  afterId?: string;
  /**
   * Edit-and-replay: send this JSON payload instead of the stored one. Only with exactly one
   * dead letter (one id); the audit records that the payload was edited. Default: the stored payload.
   */
  payload?: unknown;
}

/** A dead letter a replay left alone, and why. */
export interface SkippedReplay {
  /** The row id. */
  id: string;
  /** The message id. */
  messageId: string;
  /** Why it was not replayed. */
  why: string;
}

/** What `DeadLetterStore.replay` did (or would do, with `dryRun`). */
export interface ReplayResult {
  /** How many messages went back into the outbox (or would). Loop while it is not zero. */
  count: number;
  /** The message ids replayed. */
  messageIds: string[];
  /** Rows left alone. */
  skipped: SkippedReplay[];
  /** True for a dry run. */
  dryRun: boolean;
  /** How many dead letters of the selection this call examined (replayed or skipped). */
  examined: number;
  /** The greatest row id examined (pass as `afterId` to go on); null when none was. */
  lastId: string | null;
  /** True when the selection has nothing left after `lastId` (always true without `limit`). */
  done: boolean;
  /**
   * The parked messages released behind the replayed heads (sent after their head, in the order
   * they arrived; not counted in `count`). Absent when none was.
   */
  released?: string[];
}

/** The rows that can go through the outbox, one per message id; the others are added to `skipped`. */
function replayable(deadLetters: readonly DeadLetter[], skipped: SkippedReplay[]): Map<string, DeadLetter> {
  const skip = (dl: DeadLetter, why: string): void => {
    skipped.push({ id: dl.id, messageId: dl.messageId, why });
  };
  const candidates: DeadLetter[] = [];
  for (const dl of deadLetters) {
    // The one rule of what may be sent, and where (unsealed and changed letters never are).
    if (dl.replayTarget.replayable) candidates.push(dl);
    else skip(dl, dl.replayTarget.why);
  }
  // The same message id twice in one replay (it failed in two consumers) is sent once.
  const unique = new Map<string, DeadLetter>();
  for (const dl of candidates) {
    if (unique.has(dl.messageId)) skip(dl, 'the same message is replayed from another row');
    else unique.set(dl.messageId, dl);
  }
  return unique;
}

/** Leaves out messages still waiting in the outbox from an earlier replay (a second send adds nothing). */
async function dropStillQueued(tx: Executor, ctx: StoreContext, unique: Map<string, DeadLetter>, skipped: SkippedReplay[]): Promise<void> {
  const queued = await tx.query<{ message_id: string }>(
    `SELECT message_id::text AS message_id FROM ${ctx.quotedSchema}.outbox WHERE message_id = ANY($1::uuid[])`,
    [[...unique.keys()]],
  );
  for (const row of queued.rows) {
    const dl = unique.get(row.message_id);
    if (dl === undefined) continue;
    unique.delete(row.message_id);
    skipped.push({ id: dl.id, messageId: dl.messageId, why: 'it is still waiting in the outbox from an earlier replay' });
  }
}

/** The outbox message that replays `dl` (with `payload`), keeping its message id. */
export function outgoing(dl: DeadLetter, payload: unknown): OutgoingMessage {
  if (!dl.replayTarget.replayable) throw new Error(`dead letter ${dl.id} is not replayable: ${dl.replayTarget.why}`);
  return {
    messageId: dl.messageId,
    type: dl.type as string,
    key: dl.key,
    // Only what the producer sent goes out again: mailroom's and the broker's headers are dropped.
    headers: replayHeaders(dl.headers),
    // The contract version goes again as it came (the relay writes its header), so a consumer
    // upgraded since reads the payload at the version it was written in.
    version: versionOfHeaders(dl.headers),
    payload,
    occurredAt: occurredAtOfDeadLetter(dl),
    exchange: dl.replayTarget.exchange,
    routingKey: dl.replayTarget.routingKey,
  };
}

const ROW_ID = /^\d{1,18}$/;

/** True when a string or key anywhere in a JSON value holds what jsonb refuses. */
function holdsUnstorable(value: unknown, depth = 0): boolean {
  if (typeof value === 'string') return hasUnstorable(value);
  if (typeof value !== 'object' || value === null || depth > 200) return false;
  if (Array.isArray(value)) return value.some((v) => holdsUnstorable(v, depth + 1));
  return Object.entries(value).some(([k, v]) => hasUnstorable(k) || holdsUnstorable(v, depth + 1));
}

/**
 * An edited payload goes with exactly one dead letter, and must be JSON the outbox can store:
 * plain data (no undefined, function, bigint or cycle) that survives a JSON round trip.
 */
function checkEditedPayload(options: ReplayOptions): void {
  if ((options.ids?.length ?? 0) !== 1 || options.group !== undefined || options.filter !== undefined) {
    throw new MailroomError('INVALID_CONFIG', 'An edited payload replays exactly one dead letter: give one id and no group or filter.');
  }
  let text: string | undefined;
  try {
    text = JSON.stringify(options.payload);
  } catch (error) {
    throw new MailroomError('INVALID_CONFIG', `The edited payload is not JSON: ${(error as Error).message}.`);
  }
  if (text === undefined) throw new MailroomError('INVALID_CONFIG', 'The edited payload is not JSON (undefined, a function or a symbol).');
  if (holdsUnstorable(options.payload)) throw new MailroomError('INVALID_CONFIG', 'The edited payload holds a NUL or an unpaired surrogate, which the outbox (jsonb) cannot store.');
}

/**
 * Puts the selected dead letters back into the outbox in one transaction, keeping their message
 * ids, marks them replayed and records the replay in the audit. See `DeadLetterStore.replay`.
 */
export async function replayDeadLetters(ctx: StoreContext, options: ReplayOptions): Promise<ReplayResult> {
  const params: unknown[] = [];
  let where = selectionWhere(options, params);
  const dryRun = options.dryRun === true;
  const edited = options.payload !== undefined;
  if (edited) checkEditedPayload(options);
  if (options.afterId !== undefined) {
    if (!ROW_ID.test(options.afterId)) throw new MailroomError('INVALID_CONFIG', `afterId must be a dead-letter row id (digits), got ${JSON.stringify(options.afterId.slice(0, 100))}.`);
    params.push(options.afterId);
    where = `${where} AND id > $${params.length}::bigint`;
  }
  const limit = options.limit;
  if (limit !== undefined && (!Number.isInteger(limit) || limit < 1)) throw new MailroomError('INVALID_CONFIG', `limit must be a positive integer (got ${limit}).`);
  if (limit !== undefined) params.push(limit + 1);
  return inTransaction(ctx.db, async (tx) => {
    // FOR UPDATE: two operators replaying the same rows at once take turns; the second then
    // finds the message waiting in the outbox and skips it.
    const rows = await tx.query<DeadLetterRow>(
      `SELECT ${DEAD_LETTER_COLUMNS} FROM ${ctx.table} WHERE ${where} ORDER BY ${ctx.table}.id ${limit === undefined ? '' : `LIMIT $${params.length}`} ${dryRun ? '' : 'FOR UPDATE'}`,
      params,
    );
    // One more row than the batch was read: whether anything is left after it.
    const done = limit === undefined || rows.rows.length <= limit;
    const deadLetters = (limit === undefined ? rows.rows : rows.rows.slice(0, limit)).map(toDeadLetter);
    const lastId = deadLetters[deadLetters.length - 1]?.id ?? null;
    const skipped: SkippedReplay[] = [];
    for (const id of options.limit === undefined && options.afterId === undefined ? (options.ids ?? []) : []) {
      if (!deadLetters.some((dl) => dl.id === id || dl.messageId === id.toLowerCase())) skipped.push({ id, messageId: '', why: 'no such dead letter' });
    }
    const unique = replayable(deadLetters, skipped);
    await dropStillQueued(tx, ctx, unique, skipped);
    // A parked message goes back only with its head (a replay of it alone would overtake the head).
    const held = await heldBehindHead(tx, ctx, [...unique.values()]);
    for (const [messageId, head] of held) {
      const dl = unique.get(messageId);
      if (dl === undefined) continue;
      unique.delete(messageId);
      skipped.push({ id: dl.id, messageId, why: `it is parked behind ${head}: replay or discard that head to release it in order` });
    }
    const toReplay = [...unique.values()];
    if (options.force !== true) await assertWithinRetention(tx, ctx.quotedSchema, toReplay);
    // Each head's parked messages follow it, in the order they arrived, in the one enqueue below:
    // the outbox keeps that order per key.
    const releases = dryRun ? [] : await releaseParked(tx, ctx, toReplay, 'replay');
    const released = releases.flatMap((r) => r.released);
    if (released.length > 0 && options.force !== true) await assertWithinRetention(tx, ctx.quotedSchema, released);
    const sent: Array<{ dl: DeadLetter; payload: unknown }> = [];
    for (const dl of toReplay) {
      sent.push({ dl, payload: edited ? options.payload : dl.payload });
      for (const r of releases) if (r.head.source === dl.source && r.head.messageId === dl.messageId) for (const p of r.released) sent.push({ dl: p, payload: p.payload });
    }
    if (!dryRun && toReplay.length > 0) {
      await enqueue(tx, sent.map((s) => outgoing(s.dl, s.payload)), { schema: ctx.schema });
      await tx.query(`UPDATE ${ctx.table} SET replayed_at = now() WHERE id = ANY($1::bigint[])`, [toReplay.map((dl) => dl.id)]);
      await recordAction(tx, ctx, {
        actor: options.actor ?? ctx.actor,
        action: 'replay',
        selection: { ...options, edited },
        messageIds: sent.map((s) => s.dl.messageId),
      });
    }
    const result: ReplayResult = { count: toReplay.length, messageIds: toReplay.map((dl) => dl.messageId), skipped, dryRun, examined: deadLetters.length, lastId, done };
    if (released.length > 0) result.released = released.map((dl) => dl.messageId);
    return result;
  });
}
