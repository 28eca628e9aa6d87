import type { SelectionPreview } from '@mailroom/dlq';
import { replayTargetText } from './dead-letters-page.js';
import { clip, html, type SafeHtml } from './html.js';
import { csrfField, href, layout, when, type PageContext } from './layout.js';
import type { ReplayJobStatus } from './replay-job.js';

/** Hidden fields that carry a selection (ids, or the filter's query) from a preview to its POST. */
export function selectionFields(selection: { ids: readonly string[] } | { query: URLSearchParams }): SafeHtml {
  if ('ids' in selection) return html`${selection.ids.map((id) => html`<input type="hidden" name="ids" value="${id}">`)}`;
  return html`${[...selection.query.entries()].map(([k, v]) => html`<input type="hidden" name="${k}" value="${v}">`)}`;
}

function previewTable(ctx: PageContext, preview: SelectionPreview): SafeHtml {
  return html`<table class="preview"><thead><tr><th>Id</th><th>Last failure</th><th>Source</th><th>Type</th><th>Error</th><th>Replay</th></tr></thead><tbody>${preview.deadLetters.map(
    (dl) => html`<tr><td><a href="${href(ctx, `/dead-letters/${dl.id}`)}">${dl.id}</a></td><td>${when(dl.lastFailedAt)}</td><td>${clip(dl.source, 60)}</td><td>${clip(dl.type ?? '—', 60)}</td><td class="error">${clip(dl.error ?? '', 120)}</td><td>${replayTargetText(dl)}</td></tr>`,
  )}</tbody></table>${preview.count > preview.deadLetters.length ? html`<p>… and ${(preview.count - preview.deadLetters.length).toLocaleString('en')} more.</p>` : ''}`;
}

/** The preview of a bulk replay of a filtered set: the count, the first rows, the rate limit, the button. */
export function replaySetPage(ctx: PageContext, description: string, query: URLSearchParams, preview: SelectionPreview, defaultRate: number): SafeHtml {
  const content = html`
<p>Filter: <code>${description}</code></p>
<p class="count" id="preview-count">${preview.count.toLocaleString('en')} dead letter(s) match.</p>
${
  preview.count === 0
    ? html`<p><a href="${href(ctx, '/dead-letters', query)}">Back to the list</a></p>`
    : html`<form method="post" action="${href(ctx, '/jobs')}" id="replay-set-form">
  ${csrfField(ctx)}${selectionFields({ query })}
  <input type="hidden" name="expected" value="${preview.count}">
  <label>Rate limit <input type="number" name="rate" min="1" max="100000" value="${defaultRate}" id="rate"> messages per second</label>
  <label class="check"><input type="checkbox" name="force" value="1"> force (replay messages older than the inbox retention)</label>
  <button type="submit" id="start-replay">Replay ${preview.count.toLocaleString('en')} dead letter(s)</button>
  <a href="${href(ctx, '/dead-letters', query)}">cancel</a>
</form>
<p>They go back into the outbox in batches (one transaction and one audit record each), keeping their message ids; those that cannot be replayed are skipped with the reason. You can cancel between batches.</p>`
}
${previewTable(ctx, preview)}`;
  return layout(ctx, 'Replay a filtered set', content, 'dead-letters');
}

/** The confirmation of a discard: what would be deleted, and a button that needs a tick. */
export function discardConfirmPage(ctx: PageContext, description: string, selection: { ids: readonly string[] } | { query: URLSearchParams }, preview: SelectionPreview): SafeHtml {
  const content = html`
<p>Selection: <code>${description}</code></p>
<p class="count" id="preview-count">${preview.count.toLocaleString('en')} dead letter(s) would be deleted. This cannot be undone.</p>
${
  preview.count === 0
    ? ''
    : html`<form method="post" action="${href(ctx, '/discard')}" id="discard-form">
  ${csrfField(ctx)}${selectionFields(selection)}
  <input type="hidden" name="expected" value="${preview.count}">
  <label class="check"><input type="checkbox" name="confirm" value="yes" required id="confirm"> I want to delete these ${preview.count.toLocaleString('en')} dead letter(s)</label>
  <button type="submit" class="danger" id="confirm-discard">Discard ${preview.count.toLocaleString('en')}</button>
</form>`
}
${previewTable(ctx, preview)}`;
  return layout(ctx, 'Discard dead letters', content, 'dead-letters');
}

/** What an action did, and where to go on. */
export function resultPage(ctx: PageContext, title: string, message: SafeHtml, back: string): SafeHtml {
  return layout(ctx, title, html`<div class="result" id="result">${message}</div><p><a href="${back}">Back</a></p>`, 'dead-letters');
}

/** The progress of a bulk replay; the bundled script polls its JSON and updates the numbers. */
export function jobPage(ctx: PageContext, job: ReplayJobStatus): SafeHtml {
  const content = html`
<div class="job" id="job" data-status-url="${href(ctx, `/jobs/${job.id}.json`)}" data-state="${job.state}">
  <p>Filter: <code>${job.description}</code> · started ${when(job.startedAt)} by ${job.actor} · at most ${job.ratePerSecond} messages per second</p>
  <progress id="job-progress" max="${Math.max(1, job.total)}" value="${Math.min(job.examined, Math.max(1, job.total))}"></progress>
  <p><span id="job-state" class="state-${job.state}">${job.state}</span>:
    <span id="job-examined">${job.examined}</span> of <span id="job-total">${job.total}</span> examined,
    <span id="job-replayed">${job.replayed}</span> replayed, <span id="job-skipped">${job.skipped}</span> skipped.</p>
  <p id="job-error" class="problem">${job.error ?? ''}</p>
  <ul id="job-skipped-reasons">${job.skippedReasons.map((r) => html`<li>${r}</li>`)}</ul>
  ${
    ctx.readOnly || job.state !== 'running'
      ? ''
      : html`<form method="post" action="${href(ctx, `/jobs/${job.id}/cancel`)}" id="cancel-form">${csrfField(ctx)}<button type="submit" class="danger" id="cancel-job">Cancel</button></form>`
  }
</div>
<p><a href="${href(ctx, '/dead-letters')}">Dead letters</a> · <a href="${href(ctx, '/audit')}">Audit</a></p>`;
  return layout(ctx, 'Bulk replay', content, 'dead-letters');
}
