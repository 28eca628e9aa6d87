import type { Writable } from 'node:stream';
import type { DeadLetter, DeadLetterGroup } from '@mailroom/dlq';
import { UsageError } from '../command.js';

// How `mailroom dlq` reads its arguments and shows dead letters: tables for people, JSON for tools.

const DURATION = /^(\d+(?:\.\d+)?)(s|m|h|d)$/;
const UNIT_MS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** `--since`: an age (30m, 2h, 7d) back from now, or a date. */
export function parseSince(value: string): Date {
  const age = DURATION.exec(value);
  if (age) return new Date(Date.now() - Number(age[1]) * (UNIT_MS[age[2] as string] ?? 0));
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) throw new UsageError(`--since ${JSON.stringify(value)} is neither an age (30m, 2h, 7d) nor a date`);
  return date;
}

/** A dead letter as JSON: the raw body in base64. */
export function toJson(dl: DeadLetter): Record<string, unknown> {
  return { ...dl, body: dl.body === null ? null : dl.body.toString('base64') };
}

/** Writes `text` as one or more whole lines. */
export function write(out: Writable, text: string): void {
  out.write(text.endsWith('\n') ? text : `${text}\n`);
}

function table(rows: string[][]): string {
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length))) ?? [];
  return rows.map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i] ?? 0))).join('  ')).join('\n');
}

function short(text: string | null, max = 60): string {
  if (text === null) return '';
  const line = text.replace(/\s+/g, ' ');
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
}

/** `dlq list` as a table. */
export function listText(rows: DeadLetter[]): string {
  if (rows.length === 0) return 'no dead letters';
  return table([
    ['ID', 'MESSAGE ID', 'SOURCE', 'TYPE', 'REASON', 'ATTEMPTS', 'LAST FAILED', 'REPLAYED', 'GROUP', 'ERROR'],
    ...rows.map((d) => [
      d.id,
      d.messageId,
      d.source,
      d.type ?? '-',
      d.reason,
      String(d.attempts),
      d.lastFailedAt.toISOString(),
      d.replayedAt ? 'yes' : 'no',
      d.fingerprint,
      short(d.error),
    ]),
  ]);
}

/** `dlq groups` as a table. */
export function groupsText(groups: DeadLetterGroup[]): string {
  if (groups.length === 0) return 'no dead letters';
  return table([
    ['GROUP', 'COUNT', 'PENDING', 'SOURCE', 'TYPE', 'REASON', 'LAST FAILED', 'SAMPLE ERROR'],
    ...groups.map((g) => [g.fingerprint, String(g.count), String(g.pending), g.source, g.type ?? '-', g.reason, g.lastFailedAt.toISOString(), short(g.sampleError)]),
  ]);
}

/** `dlq show`: every field, then the payload. */
export function showText(d: DeadLetter): string {
  const body = d.payload !== null ? JSON.stringify(d.payload, null, 2) : d.body !== null ? `(not JSON, ${d.body.length} bytes) ${short(d.body.toString('utf8'), 500)}` : '(none)';
  return [
    `id            ${d.id}`,
    `message id    ${d.messageId}`,
    `source        ${d.source}`,
    `type          ${d.type ?? '-'}`,
    `reason        ${d.reason}`,
    `error         ${d.error ?? '-'}`,
    `attempts      ${d.attempts}`,
    `first failed  ${d.firstFailedAt.toISOString()}`,
    `last failed   ${d.lastFailedAt.toISOString()}`,
    `replayed      ${d.replayedAt ? d.replayedAt.toISOString() : 'no'}`,
    `exchange      ${d.exchange ?? '-'}`,
    `routing key   ${d.routingKey ?? '-'}`,
    `key           ${d.key ?? '-'}`,
    `group         ${d.fingerprint}`,
    `headers       ${JSON.stringify(d.headers)}`,
    'payload',
    body,
  ].join('\n');
}
