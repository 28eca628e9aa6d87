import { MailroomError } from '@mailroom/core';
import { DEFAULT_INBOX_RETENTION_MS, occurredAtOf, type Executor } from '@mailroom/core/internal';
import type { DeadLetter } from './dead-letter.js';

/**
 * When the producer created a dead letter's event: the occurred-at the envelope carried, else
 * the first failure (rows written by other tools may have neither header).
 */
export function occurredAtOfDeadLetter(deadLetter: DeadLetter): Date {
  return occurredAtOf(deadLetter.headers) ?? deadLetter.firstFailedAt;
}

/** The consumer with the shortest retention (ordered by the number, not by its text: 7 days is not shorter than 1). */
async function shortestRetention(tx: Executor, quotedSchema: string): Promise<{ consumer: string; retentionMs: number } | undefined> {
  const result = await tx.query<{ consumer: string; retention_ms: string }>(
    `SELECT c.consumer, c.retention_ms::text AS retention_ms FROM ${quotedSchema}.inbox_consumers AS c ORDER BY c.retention_ms ASC LIMIT 1`,
  );
  const row = result.rows[0];
  return row === undefined ? undefined : { consumer: row.consumer, retentionMs: Number(row.retention_ms) };
}

function formatDuration(ms: number): string {
  if (ms >= 86_400_000) return `${(ms / 86_400_000).toFixed(1)} days`;
  if (ms >= 3_600_000) return `${(ms / 3_600_000).toFixed(1)} hours`;
  if (ms >= 60_000) return `${(ms / 60_000).toFixed(1)} minutes`;
  return `${(ms / 1000).toFixed(1)} s`;
}

/**
 * Refuses (`REPLAY_REFUSED`) a replay of messages older than the shortest inbox retention window
 * of any registered consumer: a consumer that handled such a message may have forgotten it, and
 * would handle it again. When no consumer is registered (consumers in other databases, or not
 * started yet), the default inbox retention (7 days) is the limit, and the refusal says so:
 * "no consumer registered" does not mean nobody handled the message.
 */
export async function assertWithinRetention(tx: Executor, quotedSchema: string, deadLetters: readonly DeadLetter[]): Promise<void> {
  if (deadLetters.length === 0) return;
  const registered = await shortestRetention(tx, quotedSchema);
  const retentionMs = registered?.retentionMs ?? DEFAULT_INBOX_RETENTION_MS;
  const now = Date.now();
  const ageOf = (dl: DeadLetter): number => now - occurredAtOfDeadLetter(dl).getTime();
  const tooOld = deadLetters.filter((dl) => ageOf(dl) > retentionMs);
  if (tooOld.length === 0) return;
  const oldest = Math.max(...tooOld.map(ageOf));
  const ids = `${tooOld.slice(0, 5).map((dl) => dl.id).join(', ')}${tooOld.length > 5 ? ', …' : ''}`;
  const window =
    registered === undefined
      ? `the inbox retention window: no consumer is registered in inbox_consumers: the default inbox retention (${formatDuration(retentionMs)}) applies; the oldest is ${formatDuration(oldest)} old`
      : `the inbox retention window of consumer "${registered.consumer}" (${formatDuration(retentionMs)}; the oldest is ${formatDuration(oldest)} old)`;
  throw new MailroomError(
    'REPLAY_REFUSED',
    `${tooOld.length} dead letter(s) (${ids}) are older than ${window}. A consumer that already handled such a message may have forgotten it and would handle it again. Replay with --force (force: true) if the handlers are idempotent or the message never reached them.`,
    { details: { ids: tooOld.map((dl) => dl.id), retentionMs, consumer: registered?.consumer ?? null } },
  );
}
