import type { DeadLetterAction, DeadLetterGroup, DeadLetterTimeline, StoreOverview } from '@mailroom/dlq';
import type { OutboxOverview, RelayInstance } from '@mailroom/outbox';
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
  /** The outbox and its relays, from `@mailroom/outbox`'s `readOutboxOverview`. */
  outbox: OutboxOverview;
  timeline: DeadLetterTimeline;
  window: string;
  groups: readonly DeadLetterGroup[];
  actions: readonly DeadLetterAction[];
}

/** Partitions as short ranges: `0–15, 32, 40–41`. */
export function partitionRanges(partitions: readonly number[]): string {
  const sorted = [...new Set(partitions)].sort((a, b) => a - b);
  const parts: string[] = [];
  for (let i = 0; i < sorted.length; ) {
    let j = i;
    while (j + 1 < sorted.length && (sorted[j + 1] as number) === (sorted[j] as number) + 1) j++;
    parts.push(i === j ? String(sorted[i]) : `${sorted[i]}–${sorted[j]}`);
    i = j + 1;
  }
  return parts.join(', ');
}

function relayRow(r: RelayInstance): SafeHtml {
  return html`<tr><td>${clip(r.name, 120)}</td><td>${r.ordering ? 'ordering' : 'unordered'}</td>
    <td class="num">${r.ordering ? r.partitions.length : '—'}</td><td>${r.ordering ? partitionRanges(r.partitions) || 'none yet' : '—'}</td>
    <td>${r.idle ? 'waiting for work' : 'publishing'}</td><td>${r.pids.join(', ')}</td></tr>`;
}

function scheduledCard(outbox: OutboxOverview): SafeHtml {
  const s = outbox.scheduled;
  if (s === null) return html`<span class="value" id="scheduled">—</span><span class="sub">not migrated yet: run <code>mailroom migrate</code></span>`;
  const rows = s.rows > 10_000 ? `≈ ${s.rows.toLocaleString('en')}` : s.rows.toLocaleString('en');
  const next =
    s.nextDeliverAt === null
      ? ''
      : s.overdueSeconds >= 1
        ? html`<span class="sub" id="scheduled-next">the earliest is ${ago(s.overdueSeconds)} overdue: is a relay running?</span>`
        : html`<span class="sub" id="scheduled-next">next at ${when(s.nextDeliverAt)}</span>`;
  return html`<span class="value" id="scheduled">${rows}</span>${next}`;
}

function relaysSection(outbox: OutboxOverview): SafeHtml {
  return html`<section id="relays">
  <h2>Relays</h2>
  ${
    outbox.relays.length === 0
      ? html`<p class="empty">No relay is visible: none runs, or a relay without ordering is busy publishing (only relays in ordering mode, and others while they wait for work, show here).</p>`
      : html`<table><thead><tr><th>Relay</th><th>Mode</th><th>Partitions</th><th>Leased</th><th>State</th><th>Sessions (pid)</th></tr></thead><tbody>${outbox.relays.map(relayRow)}</tbody></table>`
  }
  ${outbox.relays.some((r) => r.ordering) ? html`<p class="sub" id="partitions-leased">${outbox.partitionsLeased} partitions leased in all.</p>` : ''}
</section>`;
}

function groupLabel(g: { source: string; reason: string; type: string | null }): string {
  return `${g.source} · ${g.reason} · ${g.type ?? 'no type'}`;
}

/** The overview: outbox backlog, relays and partitions, consumers, dead letters by group over time, recent actions. */
export function overviewPage(ctx: PageContext, data: OverviewData): SafeHtml {
  const { overview: o, outbox, timeline, groups } = data;
  const backlog = outbox.backlog;
  const labels = new Map(timeline.series.map((s) => [s.fingerprint, groupLabel(s)]));
  const colourOf = new Map(timeline.series.map((s, i) => [s.fingerprint, seriesColour(i)]));
  const listOf = (fingerprint: string): string => href(ctx, '/dead-letters', new URLSearchParams({ group: fingerprint }));
  const content = html`
<section class="cards">
  <div class="card"><span class="label">Outbox backlog</span><span class="value" id="backlog">${backlog.exact ? backlog.rows.toLocaleString('en') : `≈ ${backlog.rows.toLocaleString('en')}`}</span>${backlog.exact ? '' : html`<span class="sub">estimate (more than 10,000)</span>`}</div>
  <div class="card"><span class="label">Oldest row waiting</span><span class="value" id="oldest">${backlog.rows === 0 ? '—' : ago(backlog.oldestAgeSeconds)}</span></div>
  <div class="card"><span class="label">Scheduled</span>${scheduledCard(outbox)}</div>
  <div class="card"><span class="label">Waiting for a retry</span><span class="value" id="retrying">${outbox.retrying.exact ? outbox.retrying.rows.toLocaleString('en') : `> ${(outbox.retrying.rows - 1).toLocaleString('en')}`}</span></div>
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
${relaysSection(outbox)}
<section id="consumers">
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
