import { CSRF_FIELD } from './request-guard.js';
import { html, type HtmlValue, type SafeHtml } from './html.js';

/** What every page needs to link and post: where the workbench is mounted, the form token, the mode. */
export interface PageContext {
  /** The mount path ('' or `/ops/mailroom`). */
  base: string;
  /** The CSRF token the forms of this page carry. */
  csrf: string;
  /** Read-only: no action forms. */
  readOnly: boolean;
}

/** A path below the mount point. */
export function href(ctx: PageContext, path: string, query?: URLSearchParams): string {
  const q = query === undefined || [...query.keys()].length === 0 ? '' : `?${query.toString()}`;
  return `${ctx.base}${path}${q}`;
}

/** The hidden field with the page's CSRF token, for every POST form. */
export function csrfField(ctx: PageContext): SafeHtml {
  return html`<input type="hidden" name="${CSRF_FIELD}" value="${ctx.csrf}">`;
}

/** A time as the pages show it: ISO, in UTC, to the second. */
export function when(date: Date | string | null): string {
  if (date === null) return '—';
  const d = typeof date === 'string' ? new Date(date) : date;
  return Number.isNaN(d.getTime()) ? '—' : `${d.toISOString().slice(0, 19).replace('T', ' ')}Z`;
}

/** A duration in seconds as people read it. */
export function ago(seconds: number): string {
  if (seconds < 1) return '0 s';
  if (seconds < 120) return `${Math.round(seconds)} s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
  if (seconds < 172_800) return `${(seconds / 3600).toFixed(1)} h`;
  return `${(seconds / 86_400).toFixed(1)} days`;
}

/** The whole page: header with the navigation, the content, the bundled script and style. */
export function layout(ctx: PageContext, title: string, content: HtmlValue, active: 'overview' | 'dead-letters' | 'audit' | 'none' = 'none'): SafeHtml {
  const nav = (name: typeof active, path: string, label: string): SafeHtml =>
    html`<a href="${href(ctx, path)}" class="${name === active ? 'active' : ''}">${label}</a>`;
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${title} · mailroom workbench</title>
<link rel="stylesheet" href="${href(ctx, '/assets/workbench.css')}">
<script src="${href(ctx, '/assets/workbench.js')}" defer></script>
</head>
<body data-base="${ctx.base}">
<header>
  <strong class="brand">mailroom</strong>
  <nav>${nav('overview', '/', 'Overview')}${nav('dead-letters', '/dead-letters', 'Dead letters')}${nav('audit', '/audit', 'Audit')}</nav>
  ${ctx.readOnly ? html`<span class="badge" id="read-only">read-only</span>` : ''}
</header>
<main>
<h1>${title}</h1>
${content}
</main>
</body>
</html>`;
}
