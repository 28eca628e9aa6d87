import type { DeadLetterAction, DeadLetterGroup, DeadLetterTimeline, StoreOverview } from '@mailroom/dlq';
import { actionsTable } from './audit-page.js';
import { clip, html, type SafeHtml } from './html.js';
import { ago, href, layout, when, type PageContext } from './layout.js';
import { seriesColour, timelineChart } from './timeline-chart.js';

/** The windows the chart offers, and their bucket counts. */
export const CHART_WINDOWS: Record<string, { ms: number; buckets: number }> = {
  '1h': { ms: 3_600_000, buckets: 30 },
  '24h': { ms: 86_400_000, buckets: 24 },
  '7d': { ms: 7 * 86_400_000, buckets: 28 },
  '30d': { ms: 30 * 86_400_000, buckets: 30 },
};

/** Everything the overview shows, read before rendering. */
export interface OverviewData {
  overview: StoreOverview;
  timeline: DeadLetterTimeline;
  window: string;
  groups: readonly DeadLetterGroup[];
  actions: readonly DeadLetterAction[];
}

function groupLabel(g: { source: string; reason: string; type: string | null }): string {
  return `${g.source} · ${g.reason} · ${g.type ?? 'no type'}`;
}

/** The overview: outbox backlog, consumers, dead letters by group over time, recent actions. */
export function overviewPage(ctx: PageContext, data: OverviewData): SafeHtml {
  const { overview: o, timeline, groups } = data;
  const labels = new Map(timeline.series.map((s) => [s.fingerprint, groupLabel(s)]));
  const colourOf = new Map(timeline.series.map((s, i) => [s.fingerprint, seriesColour(i)]));
  const listOf = (fingerprint: string): string => href(ctx, '/dead-letters', new URLSearchParams({ group: fingerprint }));
  const content = html`
<section class="cards">
  <div class="card"><span class="label">Outbox backlog</span><span class="value" id="backlog">${o.outbox.backlogCapped ? `> ${(o.outbox.backlog - 1).toLocaleString('en')}` : o.outbox.backlog.toLocaleString('en')}</span></div>
  <div class="card"><span class="label">Oldest row waiting</span><span class="value" id="oldest">${o.outbox.backlog === 0 ? '—' : ago(o.outbox.oldestAgeSeconds)}</span></div>
  <div class="card"><span class="label">Scheduled</span><span class="value">${o.outbox.scheduled.toLocaleString('en')}</span></div>
  <div class="card"><span class="label">Dead letters pending</span><span class="value" id="pending">${o.deadLetters.pending.toLocaleString('en')}</span><span class="sub">of ${o.deadLetters.total.toLocaleString('en')} stored</span></div>
</section>
<section>
  <h2>Dead letters by failure group</h2>
  <p class="windows">${Object.keys(CHART_WINDOWS).map((w) => html`<a href="${href(ctx, '/', new URLSearchParams({ window: w }))}" class="${w === data.window ? 'active' : ''}">${w}</a> `)}</p>
  ${timelineChart(timeline, (f) => labels.get(f) ?? f)}
  <table class="groups">
    <thead><tr><th></th><th>Group</th><th>Source · reason · type</th><th>Pending</th><th>Stored</th><th>Last failure</th><th>Sample error</th></tr></thead>
    <tbody>${groups.slice(0, 20).map(
      (g) => html`<tr>
        <td>${colourOf.has(g.fingerprint) ? html`<svg class="swatch" width="12" height="12" aria-hidden="true"><rect width="12" height="12" fill="${colourOf.get(g.fingerprint) ?? ''}"></rect></svg>` : ''}</td>
        <td><a href="${listOf(g.fingerprint)}"><code>${clip(g.fingerprint, 16)}</code></a></td>
        <td>${groupLabel(g)}</td><td class="num">${g.pending}</td><td class="num">${g.count}</td><td>${when(g.lastFailedAt)}</td>
        <td class="error">${clip(g.sampleError ?? '', 160)}</td>
      </tr>`,
    )}</tbody>
  </table>
  ${groups.length === 0 ? html`<p class="empty">No dead letters.</p>` : ''}
</section>
<section>
  <h2>Consumers</h2>
  ${
    o.consumers.length === 0
      ? html`<p class="empty">No consumer has registered in <code>inbox_consumers</code> yet (a replay is checked against the default inbox retention of 7 days).</p>`
      : html`<table><thead><tr><th>Consumer</th><th>Queue</th><th>Inbox retention</th><th>Retry horizon</th><th>Registered</th></tr></thead><tbody>${o.consumers.map(
          (c) => html`<tr><td>${c.consumer}</td><td>${c.queue}</td><td>${ago(c.retentionMs / 1000)}</td><td>${ago(c.retryHorizonMs / 1000)}</td><td>${when(c.updatedAt)}</td></tr>`,
        )}</tbody></table>`
  }
</section>
<section>
  <h2>Recent actions</h2>
  ${actionsTable(ctx, data.actions)}
  <p><a href="${href(ctx, '/audit')}">The whole audit</a></p>
</section>`;
  return layout(ctx, 'Overview', content, 'overview');
}
