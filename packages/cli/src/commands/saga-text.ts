import type { SagaHistoryEntry, SagaRecord, SagaSummary } from '@mailroom/saga';
import { UsageError } from '../command.js';
import { escapeControls as esc, safeJson } from './dlq-escape.js';

// How `mailroom saga` reads its arguments and shows instances: tables for people, JSON for tools.
// Instance ids, states and message types came from messages: every field is escaped before it
// reaches a terminal (see dlq-escape.ts).

const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/;
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** A duration such as 90s, 10m, 2h, 7d, in milliseconds. */
export function parseDuration(option: string, value: string): number {
  const match = DURATION.exec(value);
  if (match === null) throw new UsageError(`${option} ${JSON.stringify(value)} is not a duration (e.g. 90s, 10m, 2h, 7d)`);
  const ms = Number(match[1]) * (UNIT_MS[match[2] as string] ?? 0);
  if (!Number.isFinite(ms)) throw new UsageError(`${option} ${JSON.stringify(value)} is too long`);
  return ms;
}

/** How long ago `at` was, in the largest whole unit (45s, 12m, 3h, 2d). */
export function age(at: Date, now = Date.now()): string {
  const s = Math.max(0, Math.floor((now - at.getTime()) / 1000));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.floor(s / 60)}m`;
  if (s < 172_800) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86_400)}d`;
}

function table(rows: string[][]): string {
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length))) ?? [];
  return rows.map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i] ?? 0))).join('  ')).join('\n');
}

/** One line of at most `max` characters, escaped. */
function short(text: string, max: number): string {
  const line = esc(text);
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
}

/** `saga list` as a table. */
export function listText(rows: SagaSummary[], now = Date.now()): string {
  if (rows.length === 0) return 'no saga instances match';
  return table([
    ['SAGA', 'ID', 'STATUS', 'VERSION', 'UNCHANGED FOR', 'CREATED'],
    ...rows.map((r) => [short(r.saga, 40), short(r.id, 60), r.status, String(r.version), age(r.updatedAt, now), r.createdAt.toISOString()]),
  ]);
}

function side(snapshot: SagaHistoryEntry['from']): string {
  return snapshot.status === null ? '(new)' : `${snapshot.status} v${snapshot.version}`;
}

/** `saga show` for people: the instance, its state, then its history, oldest first. */
export function showText(record: SagaRecord, now = Date.now()): string {
  const lines = [
    `saga      ${esc(record.saga)}`,
    `id        ${esc(record.id)}`,
    `status    ${record.status} (version ${record.version})`,
    `created   ${record.createdAt.toISOString()}`,
    `updated   ${record.updatedAt.toISOString()} (${age(record.updatedAt, now)} ago)`,
    `ended     ${record.completedAt === null ? '-' : record.completedAt.toISOString()}`,
    'state',
    ...safeJson(record.state, 2).split('\n').map((l) => `  ${l}`),
    '',
    `history (${record.history.length} ${record.history.length === 1 ? 'entry' : 'entries'}, oldest first)`,
  ];
  for (const h of record.history) {
    lines.push(`  #${h.seq}  ${h.at.toISOString()}  ${short(h.type, 60)}  ${h.messageId}  ${h.outcome}  ${side(h.from)} -> ${side(h.to)}`);
    if (h.outcome === 'applied') lines.push(`      state ${short(safeJson(h.to.state), 200)}`);
  }
  return lines.join('\n');
}

/** An instance (or a list of them) as JSON. */
export function jsonText(value: unknown): string {
  return safeJson(value, 2);
}
