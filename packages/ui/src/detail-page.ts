import type { DeadLetter } from '@mailroom/dlq';
import { replayTargetText } from './dead-letters-page.js';
import { clip, html, type SafeHtml } from './html.js';
import { csrfField, href, layout, when, type PageContext } from './layout.js';

/** The most of a payload, a header table or a body the page shows (the export has all of it). */
const SHOWN_CHARS = 256 * 1024;

function pretty(value: unknown): string {
  try {
    return JSON.stringify(value, null, 2) ?? 'null';
  } catch {
    return String(value);
  }
}

/** A raw body as text when it is UTF-8 text, else as hex; cut at the shown size. */
function bodyText(body: Buffer): string {
  const slice = body.subarray(0, SHOWN_CHARS);
  const text = slice.toString('utf8');
  const printable = !text.includes('\uFFFD');
  const shown = printable ? text : slice.toString('hex').replace(/(.{64})/g, '$1\n');
  return body.length > SHOWN_CHARS ? `${shown}\n… (${(body.length - SHOWN_CHARS).toLocaleString('en')} more bytes)` : shown;
}

/** How many parked messages the detail page of a head lists (the rest are counted). */
const PARKED_SHOWN = 200;

/**
 * Sequenced dead letters: the head a parked message waits behind, or the messages parked behind
 * this one (in the order they arrived, released ones marked), with what releases them.
 */
function parkingSection(ctx: PageContext, dl: DeadLetter, parked: readonly DeadLetter[]): SafeHtml | string {
  if (parked.length === 0) return '';
  const waiting = parked.filter((p) => p.parkedBehind !== undefined).length;
  return html`<h2 id="parked-heading">Parked behind this one (${parked.length.toLocaleString('en')}, ${waiting.toLocaleString('en')} waiting)</h2>
<p class="empty">Later messages of its key, stored instead of being handled out of order. ${
    waiting > 0 ? 'Replaying this message sends them after it, in this order; discarding it sends them without it.' : 'Released: they went back in this order.'
  }</p>
<ol id="parked-list">${parked.slice(0, PARKED_SHOWN).map(
    (p) => html`<li><a href="${href(ctx, `/dead-letters/${p.id}`)}"><code>${p.messageId}</code></a> ${p.parkedBehind === undefined ? '(released)' : '(waiting)'}</li>`,
  )}</ol>
${parked.length > PARKED_SHOWN ? html`<p class="empty">… and ${(parked.length - PARKED_SHOWN).toLocaleString('en')} more (see the dead-letter list, reason parked).</p>` : ''}
${dl.replayTarget.replayable ? '' : html`<p class="problem">This head cannot be replayed (${dl.replayTarget.why}): discard it to release what waits behind it.</p>`}`;
}

/**
 * One dead letter: everything stored, where a replay goes, and the actions on it; for a head of
 * a parked key, the messages `parked` behind it.
 */
export function detailPage(ctx: PageContext, dl: DeadLetter, notice?: SafeHtml, parked: readonly DeadLetter[] = []): SafeHtml {
  const payloadText = dl.payload === null ? '' : pretty(dl.payload);
  const actions = ctx.readOnly
    ? ''
    : html`<section class="actions">
  <h2>Actions</h2>
  <form method="post" action="${href(ctx, '/replay')}" class="inline">
    ${csrfField(ctx)}<input type="hidden" name="ids" value="${dl.id}"><input type="hidden" name="back" value="detail">
    <button type="submit" id="replay-one" ${dl.replayTarget.replayable ? '' : 'disabled'}>Replay</button>
    <label class="check"><input type="checkbox" name="force" value="1"> force</label>
  </form>
  <form method="get" action="${href(ctx, '/discard')}" class="inline">
    <input type="hidden" name="ids" value="${dl.id}"><button type="submit" class="danger" id="discard-one">Discard…</button>
  </form>
  ${
    dl.replayTarget.replayable && payloadText.length > SHOWN_CHARS
      ? html`<p class="empty">The payload is too large to edit in the page (${payloadText.length.toLocaleString('en')} characters): export it, and replay it as is or through your own tooling.</p>`
      : ''
  }
  ${
    dl.replayTarget.replayable && payloadText.length <= SHOWN_CHARS
      ? html`<form method="post" action="${href(ctx, '/edit-replay')}" class="edit" id="edit-replay">
    ${csrfField(ctx)}<input type="hidden" name="id" value="${dl.id}">
    <label for="payload">Edit the payload, then replay it (checked as JSON here and on the server; the stored dead letter keeps the original):</label>
    <textarea name="payload" id="payload" rows="12" spellcheck="false" data-json>${payloadText}</textarea>
    <p class="json-state" id="json-state" aria-live="polite"></p>
    <button type="submit" id="edit-replay-submit">Replay with this payload</button>
    <label class="check"><input type="checkbox" name="force" value="1"> force</label>
  </form>`
      : ''
  }
</section>`;
  const content = html`
${notice ?? ''}
<dl class="fields">
  <dt>Row id</dt><dd>${dl.id}</dd>
  <dt>Message id</dt><dd><code>${dl.messageId}</code></dd>
  <dt>Source</dt><dd>${dl.source}</dd>
  <dt>Reason</dt><dd>${dl.reason}</dd>
  <dt>Type</dt><dd>${dl.type ?? '—'}</dd>
  <dt>Attempts</dt><dd>${dl.attempts}</dd>
  <dt>First failure</dt><dd>${when(dl.firstFailedAt)}</dd>
  <dt>Last failure</dt><dd>${when(dl.lastFailedAt)}</dd>
  <dt>Exchange / routing key</dt><dd>${dl.exchange ?? '—'} / ${dl.routingKey ?? '—'}</dd>
  <dt>Ordering key</dt><dd>${dl.key ?? '—'}</dd>
  <dt>Failure group</dt><dd><a href="${href(ctx, '/dead-letters', new URLSearchParams({ group: dl.fingerprint }))}"><code>${dl.fingerprint}</code></a></dd>
  ${
    dl.parkedBehind === undefined
      ? ''
      : html`<dt>Parked behind</dt><dd id="parked-behind"><a href="${href(ctx, `/dead-letters/${dl.parkedBehind}`)}"><code>${dl.parkedBehind}</code></a>, an earlier dead letter of its key: replaying or discarding that head releases this one, in order</dd>`
  }
  <dt>A replay goes</dt><dd id="replay-target">${dl.parkedBehind === undefined ? replayTargetText(dl) : 'with its head only (a replay of it alone would overtake the head)'}</dd>
  <dt>State</dt><dd>${dl.replayedAt === null ? 'pending' : `replayed ${when(dl.replayedAt)}`}</dd>
  ${dl.changes.length > 0 ? html`<dt>Changed to be stored</dt><dd><ul>${dl.changes.map((c) => html`<li>${c}</li>`)}</ul></dd>` : ''}
</dl>
${parkingSection(ctx, dl, parked)}
<h2>Error</h2>
<pre class="error" id="error">${clip(dl.error ?? '—', SHOWN_CHARS)}</pre>
<h2>Payload</h2>
${dl.payload === null ? html`<p class="empty">No JSON payload${dl.body === null ? '' : ' (the raw body is below)'}.</p>` : html`<pre id="payload-view">${clip(payloadText, SHOWN_CHARS)}</pre>`}
${dl.body === null ? '' : html`<h2>Raw body (${dl.body.length.toLocaleString('en')} bytes)</h2><pre id="body-view">${bodyText(dl.body)}</pre>`}
<h2>Headers</h2>
<pre id="headers-view">${clip(pretty(dl.headers), SHOWN_CHARS)}</pre>
${actions}`;
  return layout(ctx, `Dead letter ${dl.id}`, content, 'dead-letters');
}
