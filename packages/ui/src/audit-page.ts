import type { DeadLetterAction } from '@mailroom/dlq';
import { clip, html, type SafeHtml } from './html.js';
import { href, layout, when, type PageContext } from './layout.js';

/** What an action was asked to act on, in a line. */
function selectionText(action: DeadLetterAction): string {
  const s = action.selection;
  const parts: string[] = [];
  if (s.ids !== undefined) parts.push(`ids ${clip(s.ids.join(', '), 120)}`);
  if (s.group !== undefined) parts.push(`group ${s.group}`);
  if (s.filter !== undefined) parts.push(`filter ${clip(JSON.stringify(s.filter), 200)}`);
  if (s.force === true) parts.push('forced');
  if (s.edited === true) parts.push('payload edited');
  return parts.join('; ');
}

/** The audit table: who, when, what, how many (newest first). */
export function actionsTable(ctx: PageContext, actions: readonly DeadLetterAction[]): SafeHtml {
  if (actions.length === 0) return html`<p class="empty">No replay or discard recorded yet.</p>`;
  return html`<table class="audit">
  <thead><tr><th>When</th><th>Who</th><th>Database role</th><th>Action</th><th>How many</th><th>What</th></tr></thead>
  <tbody>${actions.map(
    (a) => html`<tr>
      <td>${when(a.at)}</td><td>${a.actor}</td><td>${a.dbUser}</td><td class="action-${a.action}">${a.action}</td><td class="num">${a.count}</td>
      <td>${selectionText(a)}${a.messageIds.length === 1 ? html` (<a href="${href(ctx, `/dead-letters/${a.messageIds[0] ?? ''}`)}">message</a>)` : ''}</td>
    </tr>`,
  )}</tbody>
</table>`;
}

/** The audit page: the last 200 actions. */
export function auditPage(ctx: PageContext, actions: readonly DeadLetterAction[]): SafeHtml {
  return layout(ctx, 'Audit', html`<p>Every replay and discard, recorded in the same transaction as the action (table <code>dead_letter_actions</code>).</p>${actionsTable(ctx, actions)}`, 'audit');
}
