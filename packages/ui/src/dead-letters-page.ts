import { DEAD_LETTER_REASON, type DeadLetter, type DeadLetterPage } from '@mailroom/dlq';
import { filterQuery, type ParsedFilter } from './filter-params.js';
import { clip, html, type SafeHtml } from './html.js';
import { csrfField, href, layout, when, type PageContext } from './layout.js';

/** Where a replay of a dead letter goes, or why it never does, in a cell. */
export function replayTargetText(dl: DeadLetter): SafeHtml {
  return dl.replayTarget.replayable
    ? html`<span class="target">→ ${dl.replayTarget.exchange} / ${dl.replayTarget.routingKey}</span>`
    : html`<span class="not-replayable" title="${dl.replayTarget.why}">cannot be replayed: ${clip(dl.replayTarget.why, 80)}</span>`;
}

function filterForm(ctx: PageContext, parsed: ParsedFilter): SafeHtml {
  const f = parsed.form;
  const reasons = Object.values(DEAD_LETTER_REASON);
  return html`<form class="filter" method="get" action="${href(ctx, '/dead-letters')}" id="filter">
  <label>From <input name="since" value="${f.since}" placeholder="2h, 7d or ISO time"></label>
  <label>Until <input name="until" value="${f.until}" placeholder="ISO time"></label>
  <label>Source <input name="source" value="${f.source}" placeholder="queue or relay"></label>
  <label>Type <input name="type" value="${f.type}"></label>
  <label>Reason <input name="reason" value="${f.reason}" list="reasons"></label>
  <datalist id="reasons">${reasons.map((r) => html`<option value="${r}"></option>`)}</datalist>
  <label>Group <input name="group" value="${f.group}" placeholder="fingerprint"></label>
  <label class="wide">Text in error or payload <input name="text" value="${f.text}" type="search"></label>
  <label class="check"><input type="checkbox" name="pending" value="1" ${f.pending ? 'checked' : ''}> pending only</label>
  <button type="submit">Filter</button> <a href="${href(ctx, '/dead-letters')}">clear</a>
</form>`;
}

/** The dead-letter list: the filter, the page of rows, the actions on a selection or the whole filtered set. */
export function deadLettersPage(ctx: PageContext, parsed: ParsedFilter, page: DeadLetterPage, options: { after: string | undefined; hasCondition: boolean }): SafeHtml {
  const query = filterQuery(parsed.form);
  const nextQuery = new URLSearchParams(query);
  if (page.next !== null) nextQuery.set('after', page.next);
  const rows = page.deadLetters.map(
    (dl) => html`<tr data-id="${dl.id}">
      ${ctx.readOnly ? '' : html`<td><input type="checkbox" name="ids" value="${dl.id}" aria-label="select ${dl.id}"></td>`}
      <td><a href="${href(ctx, `/dead-letters/${dl.id}`)}">${dl.id}</a></td>
      <td>${when(dl.lastFailedAt)}</td>
      <td>${clip(dl.source, 60)}</td>
      <td>${clip(dl.type ?? '—', 60)}</td>
      <td>${dl.reason}</td>
      <td class="error">${clip(dl.error ?? '', 200)}</td>
      <td class="num">${dl.attempts}</td>
      <td>${replayTargetText(dl)}</td>
      <td>${dl.replayedAt === null ? 'pending' : html`replayed ${when(dl.replayedAt)}`}</td>
    </tr>`,
  );
  const setActions = options.hasCondition
    ? html`<p class="set-actions">The whole filtered set:
        ${ctx.readOnly ? '' : html`<a class="button" id="replay-set" href="${href(ctx, '/replay-set', query)}">Replay all matching…</a>
        <a class="button danger" id="discard-set" href="${href(ctx, '/discard', query)}">Discard all matching…</a>`}
        <a class="button" id="export" href="${href(ctx, '/export.jsonl', query)}">Export as JSON lines</a></p>`
    : html`<p class="set-actions">Filter first to act on a whole set (time, source, type, reason, group, text or pending). <a class="button" id="export" href="${href(ctx, '/export.jsonl')}">Export all as JSON lines</a></p>`;
  const table = html`<table class="dead-letters">
    <thead><tr>${ctx.readOnly ? '' : html`<th><input type="checkbox" id="select-all" aria-label="select all on this page"></th>`}<th>Id</th><th>Last failure</th><th>Source</th><th>Type</th><th>Reason</th><th>Error</th><th>Attempts</th><th>Replay</th><th>State</th></tr></thead>
    <tbody>${rows}</tbody>
  </table>`;
  const content = html`
${filterForm(ctx, parsed)}
${parsed.problems.map((p) => html`<p class="problem">${p}</p>`)}
${setActions}
${
  ctx.readOnly
    ? table
    : html`<form method="post" action="${href(ctx, '/replay')}" id="selection">
    ${csrfField(ctx)}
    <p class="selection-actions">Selected on this page: <button type="submit" id="replay-selected">Replay selected</button>
      <button type="submit" class="danger" id="discard-selected" formmethod="get" formaction="${href(ctx, '/discard')}">Discard selected…</button>
      <label class="check"><input type="checkbox" name="force" value="1"> force (older than the inbox retention)</label></p>
    ${table}
  </form>`
}
${page.deadLetters.length === 0 ? html`<p class="empty">No dead letter matches.</p>` : ''}
<p class="pages">${options.after === undefined ? '' : html`<a href="${href(ctx, '/dead-letters', query)}">⇤ newest</a> `}${page.next === null ? '' : html`<a id="next-page" href="${href(ctx, '/dead-letters', nextQuery)}">older →</a>`}</p>`;
  return layout(ctx, 'Dead letters', content, 'dead-letters');
}
