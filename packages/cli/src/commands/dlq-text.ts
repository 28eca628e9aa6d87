import type { Writable } from 'node:stream';
import type { DeadLetter, DeadLetterAction, DeadLetterGroup, ReplayResult, ReplayTarget } from '@mailroom/dlq';
import { UsageError } from '../command.js';
import { escapeControls as esc, safeJson } from './dlq-escape.js';

// How `mailroom dlq` reads its arguments and shows dead letters: tables for people, JSON for
// tools. Every field that came from a message is escaped (see dlq-escape.ts) before it is shown.

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

/** Any value as one JSON document, safe on a terminal (see `safeJson`). */
export function jsonText(value: unknown): string {
  return safeJson(value);
}

/** Writes `text` as one or more whole lines. */
export function write(out: Writable, text: string): void {
  out.write(text.endsWith('\n') ? text : `${text}\n`);
}

function table(rows: string[][]): string {
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length))) ?? [];
  return rows.map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i] ?? 0))).join('  ')).join('\n');
}

/** One line of at most `max` characters, escaped. */
function short(text: string | null, max = 60): string {
  if (text === null) return '';
  const line = esc(text.replace(/[ \t\n\r]+/g, ' '));
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
}

/** Where a replay goes, in a table cell. */
function replayCell(target: ReplayTarget): string {
  return target.replayable ? `${esc(target.exchange)} / ${esc(target.routingKey)}` : short(`cannot: ${target.why}`, 40);
}

/** Where a replay goes, in full. */
export function replayLine(target: ReplayTarget): string {
  return target.replayable
    ? `exchange ${esc(JSON.stringify(target.exchange))}, routing key ${esc(JSON.stringify(target.routingKey))}`
    : `cannot be replayed: ${esc(target.why)}`;
}

/** `dlq list` as a table. */
export function listText(rows: DeadLetter[]): string {
  if (rows.length === 0) return 'no dead letters';
  return table([
    ['ID', 'MESSAGE ID', 'SOURCE', 'TYPE', 'REASON', 'ATTEMPTS', 'LAST FAILED', 'REPLAYED', 'GROUP', 'REPLAY TO', 'ERROR'],
    ...rows.map((d) => [
      d.id,
      d.messageId,
      esc(d.source),
      esc(d.type ?? '-'),
      esc(d.reason),
      String(d.attempts),
      d.lastFailedAt.toISOString(),
      d.replayedAt ? 'yes' : 'no',
      d.fingerprint,
      d.parkedBehind === undefined ? replayCell(d.replayTarget) : `parked behind ${d.parkedBehind}`,
      short(d.error),
    ]),
  ]);
}

/** `dlq groups` as a table. */
export function groupsText(groups: DeadLetterGroup[]): string {
  if (groups.length === 0) return 'no dead letters';
  return table([
    ['GROUP', 'COUNT', 'PENDING', 'SOURCE', 'TYPE', 'REASON', 'LAST FAILED', 'SAMPLE ERROR'],
    ...groups.map((g) => [g.fingerprint, String(g.count), String(g.pending), esc(g.source), esc(g.type ?? '-'), esc(g.reason), g.lastFailedAt.toISOString(), short(g.sampleError)]),
  ]);
}

/** `dlq show`: every field, where a replay goes, then the payload. */
export function showText(d: DeadLetter): string {
  const body =
    d.payload !== null ? safeJson(d.payload, 2) : d.body !== null ? `(not JSON, ${d.body.length} bytes) ${short(d.body.toString('utf8'), 500)}` : '(none)';
  return [
    `id            ${d.id}`,
    `message id    ${d.messageId}`,
    `source        ${esc(d.source)}`,
    `type          ${esc(d.type ?? '-')}`,
    `reason        ${esc(d.reason)}`,
    `error         ${esc(d.error ?? '-')}`,
    `attempts      ${d.attempts}`,
    `first failed  ${d.firstFailedAt.toISOString()}`,
    `last failed   ${d.lastFailedAt.toISOString()}`,
    `replayed      ${d.replayedAt ? d.replayedAt.toISOString() : 'no'}`,
    `exchange      ${esc(d.exchange ?? '-')}`,
    `routing key   ${esc(d.routingKey ?? '-')}`,
    `key           ${esc(d.key ?? '-')}`,
    `group         ${d.fingerprint}`,
    ...(d.parkedBehind === undefined ? [] : [`parked behind ${d.parkedBehind} (replay or discard that head to release this one, in order)`]),
    `replays to    ${replayLine(d.replayTarget)}`,
    `changes       ${d.changes.length === 0 ? 'none (stored as received)' : esc(d.changes.join('; '))}`,
    `headers       ${safeJson(d.headers)}`,
    'payload',
    body,
  ].join('\n');
}

/** What `dlq replay` did (or would do), one line per skipped dead letter. */
export function replayText(result: ReplayResult): string {
  const lines = [`${result.dryRun ? 'would replay' : 'replayed'} ${result.count} message(s)${result.messageIds.length > 0 ? `: ${result.messageIds.join(' ')}` : ''}`];
  if (result.released !== undefined) lines.push(`released ${result.released.length} parked message(s) behind their head, in order: ${result.released.join(' ')}`);
  for (const s of result.skipped) lines.push(`skipped ${esc(s.id)}${s.messageId === '' ? '' : ` (${s.messageId})`}: ${esc(s.why)}`);
  return lines.join('\n');
}

/** `dlq audit` as a table. */
export function actionsText(actions: DeadLetterAction[]): string {
  if (actions.length === 0) return 'no replays or discards recorded';
  return table([
    ['ID', 'AT', 'ACTION', 'COUNT', 'ACTOR', 'DB USER', 'SELECTION'],
    ...actions.map((a) => [a.id, a.at.toISOString(), a.action, String(a.count), esc(a.actor), esc(a.dbUser), safeJson(a.selection)]),
  ]);
}
