import type { ArchivedEvent } from '@mailroom/outbox';
import { escapeControls as esc, safeJson } from './dlq-escape.js';

// How `mailroom history` shows archived events: a table for people, JSON for tools. Every field
// that came from a message is escaped before it reaches the terminal (see dlq-escape.ts).

/** Archived events as a table, newest first. */
export function historyListText(events: readonly ArchivedEvent[]): string {
  if (events.length === 0) return 'no archived events match';
  const lines = ['PUBLISHED                 OUTBOX ID  MESSAGE ID                            TYPE / KEY'];
  for (const e of events) {
    lines.push(`${e.publishedAt.toISOString()}  ${e.outboxId.padStart(9)}  ${e.messageId}  ${esc(e.type)}${e.key === null ? '' : ` / ${esc(e.key)}`}`);
  }
  return lines.join('\n');
}

/** One archived event with its headers and payload. */
export function historyShowText(e: ArchivedEvent): string {
  return [
    `message id:   ${e.messageId}`,
    `type:         ${esc(e.type)}`,
    `key:          ${e.key === null ? '(none)' : esc(e.key)}`,
    `exchange:     ${esc(e.exchange)}`,
    `routing key:  ${esc(e.routingKey)}`,
    `outbox id:    ${e.outboxId}`,
    `occurred at:  ${e.occurredAt.toISOString()}`,
    `published at: ${e.publishedAt.toISOString()}`,
    `headers:      ${safeJson(e.headers)}`,
    'payload:',
    safeJson(e.payload, 2),
  ].join('\n');
}

/** Any value as one JSON document, safe on a terminal. */
export function historyJson(value: unknown): string {
  return safeJson(value);
}
