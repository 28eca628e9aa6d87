import type { DeadLetterTimeline } from '@mailroom/dlq';
import { html, type SafeHtml } from './html.js';

/** One colour per series, then grey for the other groups (readable on light and dark). */
const COLOURS = ['#d9480f', '#1971c2', '#2f9e44', '#ae3ec9', '#f08c00', '#0c8599', '#c2255c', '#5c940d'];
const OTHER = '#868e96';

/** The colour of the `i`th series. */
export function seriesColour(i: number): string {
  return COLOURS[i % COLOURS.length] as string;
}

/**
 * Dead letters by failure group over time as an inline SVG: one stacked bar per bucket, one
 * colour per group (the legend is the page's group table). No script, no external file.
 */
export function timelineChart(timeline: DeadLetterTimeline, label: (fingerprint: string) => string): SafeHtml {
  const width = 760;
  const height = 180;
  const pad = { left: 40, right: 8, top: 10, bottom: 22 };
  const buckets = timeline.other.length;
  const stacks = Array.from({ length: buckets }, (_, b) => [...timeline.series.map((s) => s.counts[b] ?? 0), timeline.other[b] ?? 0]);
  const max = Math.max(1, ...stacks.map((s) => s.reduce((a, n) => a + n, 0)));
  const plotW = width - pad.left - pad.right;
  const plotH = height - pad.top - pad.bottom;
  const barW = plotW / buckets;
  const bars: SafeHtml[] = [];
  stacks.forEach((stack, b) => {
    let y = pad.top + plotH;
    stack.forEach((n, i) => {
      if (n === 0) return;
      const h = (n / max) * plotH;
      y -= h;
      const series = timeline.series[i];
      const colour = series === undefined ? OTHER : seriesColour(i);
      const start = new Date(timeline.since.getTime() + b * timeline.bucketMs);
      const name = series === undefined ? 'other groups' : label(series.fingerprint);
      bars.push(
        html`<rect x="${(pad.left + b * barW + 1).toFixed(1)}" y="${y.toFixed(1)}" width="${Math.max(1, barW - 2).toFixed(1)}" height="${h.toFixed(1)}" fill="${colour}"><title>${name}: ${n} from ${start.toISOString()}</title></rect>`,
      );
    });
  });
  const first = timeline.since.toISOString().slice(0, 16).replace('T', ' ');
  const last = new Date(timeline.since.getTime() + buckets * timeline.bucketMs).toISOString().slice(0, 16).replace('T', ' ');
  return html`<svg class="chart" viewBox="0 0 ${width} ${height}" role="img" aria-label="dead letters by failure group over time">
    <line x1="${pad.left}" y1="${pad.top + plotH}" x2="${width - pad.right}" y2="${pad.top + plotH}" class="axis"></line>
    <text x="${pad.left - 4}" y="${pad.top + 8}" text-anchor="end" class="tick">${max}</text>
    <text x="${pad.left - 4}" y="${pad.top + plotH}" text-anchor="end" class="tick">0</text>
    <text x="${pad.left}" y="${height - 4}" class="tick">${first} UTC</text>
    <text x="${width - pad.right}" y="${height - 4}" text-anchor="end" class="tick">${last} UTC</text>
    ${bars}
  </svg>`;
}
