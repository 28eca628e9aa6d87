import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { hostname, userInfo } from 'node:os';
import { describeError, isMailroomError, isUuid } from '@mailroom/core';
import { parseConfig } from '@mailroom/core/internal';
import { createDeadLetterStore, type DeadLetter, type DeadLetterFilter, type DeadLetterStore } from '@mailroom/dlq';
import { readOutboxOverview } from '@mailroom/outbox';
import { discardConfirmPage, jobPage, replaySetPage, resultPage } from './action-pages.js';
import { auditPage } from './audit-page.js';
import { deadLettersPage } from './dead-letters-page.js';
import { detailPage } from './detail-page.js';
import { filterQuery, hasCondition, parseFilter } from './filter-params.js';
import { html, type SafeHtml } from './html.js';
import { href, layout, type PageContext } from './layout.js';
import { CHART_WINDOWS, overviewPage } from './overview-page.js';
import { startReplayJob, type ReplayJob } from './replay-job.js';
import { CSRF_FIELD, CsrfTokens, SECURITY_HEADERS, TOKEN_COOKIE, presentedToken, sameOriginPost, sameSecret } from './request-guard.js';
import { workbenchOptionsSchema, type ResolvedWorkbenchOptions, type WorkbenchOptions } from './workbench-options.js';

/** The largest form a POST may send (an edited payload included): 2 MiB. */
const MAX_FORM_BYTES = 2 * 1024 * 1024;
/** Finished bulk replays kept for their progress page. */
const KEPT_JOBS = 50;

/**
 * The workbench as a Node `http` request listener: pass it to `createServer`, or call it from
 * your own server for requests below `basePath` (`handle` tells you whether it answered).
 */
export interface Workbench {
  (req: IncomingMessage, res: ServerResponse): void;
  /**
   * Answers a request below `basePath` and resolves true; resolves false, answering nothing,
   * for any other path (so your server can route it elsewhere).
   */
  handle(req: IncomingMessage, res: ServerResponse): Promise<boolean>;
  /** The bulk replays started since the workbench was made, newest first. */
  jobs(): ReplayJob['status'][];
  /** Cancels the running bulk replays and waits until they stopped (between two batches). */
  close(): Promise<void>;
}

/** A refusal with the status code and the text to show. */
class HttpProblem extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

const ASSET_TYPES: Record<string, string> = { 'workbench.js': 'text/javascript; charset=utf-8', 'workbench.css': 'text/css; charset=utf-8' };

/** The bundled script and style, read once from the package's `assets/` (next to `src/` and `dist/`). */
function loadAssets(): Map<string, Buffer> {
  const assets = new Map<string, Buffer>();
  for (const name of Object.keys(ASSET_TYPES)) assets.set(name, readFileSync(new URL(`../assets/${name}`, import.meta.url)));
  return assets;
}

function defaultActor(): string {
  let user: string;
  try {
    user = userInfo().username;
  } catch {
    user = process.env.USER ?? 'unknown';
  }
  return `ui:${user}@${hostname()}`;
}

async function readForm(req: IncomingMessage): Promise<URLSearchParams> {
  const type = req.headers['content-type'] ?? '';
  if (!type.toLowerCase().startsWith('application/x-www-form-urlencoded')) throw new HttpProblem(415, 'Actions are posted as forms (application/x-www-form-urlencoded).');
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > MAX_FORM_BYTES) throw new HttpProblem(413, `A form may hold at most ${MAX_FORM_BYTES} bytes.`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_FORM_BYTES) throw new HttpProblem(413, `A form may hold at most ${MAX_FORM_BYTES} bytes.`);
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

/** Row ids from a form or query: digits only (anything else is refused by name). */
function idsOf(params: URLSearchParams): string[] {
  const ids = params.getAll('ids').flatMap((v) => v.split(/[\s,]+/)).filter((v) => v !== '');
  for (const id of ids) if (!/^\d{1,18}$/.test(id) && !isUuid(id)) throw new HttpProblem(400, `${JSON.stringify(String(id).slice(0, 60))} is not a dead-letter id.`);
  if (ids.length > 10_000) throw new HttpProblem(400, 'Select at most 10,000 dead letters by id (filter to act on more).');
  return ids;
}

function describeQuery(query: URLSearchParams): string {
  return [...query.entries()].map(([k, v]) => `${k}=${v}`).join(' ') || '(no condition)';
}

/** A dead letter as one line of the JSON-lines export: bodies in base64, times in ISO. */
function exportLine(dl: DeadLetter): string {
  const { body, replayTarget, ...rest } = dl;
  return `${JSON.stringify({ ...rest, body: body === null ? null : body.toString('base64'), replayTarget })}\n`;
}

/**
 * Makes the dead-letter workbench: an HTTP handler serving the overview, the dead-letter list
 * with filters and keyset pages, each dead letter's detail, replay (one, a selection, a whole
 * filtered set with a count preview, progress, a rate limit and cancel), edit-and-replay,
 * discard with a confirmation, export as JSON lines, and the audit. It reads and writes dead
 * letters only through `@mailroom/dlq`'s store, and reads the outbox and its relays only through
 * `@mailroom/outbox`'s `readOutboxOverview`. Every POST needs the page's CSRF token and the same origin;
 * `readOnly` refuses them all; `token` guards every request. Nothing is queried until a request.
 */
export function createWorkbench(options: WorkbenchOptions): Workbench {
  const o: ResolvedWorkbenchOptions = parseConfig(workbenchOptionsSchema, options, 'workbench options');
  const store: DeadLetterStore = createDeadLetterStore({ db: o.db, schema: o.schema });
  const csrf = new CsrfTokens();
  const assets = loadAssets();
  const jobs = new Map<string, ReplayJob>();
  const baseActor = o.actor ?? defaultActor();

  const actorOf = (req: IncomingMessage): string => {
    if (o.actorHeader !== undefined) {
      const named = req.headers[o.actorHeader.toLowerCase()];
      if (typeof named === 'string' && named.trim() !== '') return `ui:${named.trim().slice(0, 200)}`;
    }
    return baseActor;
  };

  const send = (res: ServerResponse, status: number, body: string | Buffer, type = 'text/html; charset=utf-8', extra: Record<string, string> = {}): void => {
    res.writeHead(status, { ...SECURITY_HEADERS, 'content-type': type, ...extra });
    res.end(body);
  };
  const page = (res: ServerResponse, status: number, markup: SafeHtml): void => send(res, status, markup.text);
  const redirect = (res: ServerResponse, location: string, extra: Record<string, string> = {}): void => {
    res.writeHead(303, { ...SECURITY_HEADERS, location, ...extra });
    res.end();
  };

  const keepJob = (job: ReplayJob): void => {
    jobs.set(job.status.id, job);
    const finished = [...jobs.values()].filter((j) => j.status.state !== 'running');
    for (const old of finished.slice(0, Math.max(0, finished.length - KEPT_JOBS))) jobs.delete(old.status.id);
  };

  /** Reads a filter and refuses a bulk action without a condition (it would act on the whole store). */
  const bulkFilter = (params: URLSearchParams): { filter: DeadLetterFilter; query: URLSearchParams } => {
    const parsed = parseFilter(params);
    if (parsed.problems.length > 0) throw new HttpProblem(400, parsed.problems.join('; '));
    if (!hasCondition(parsed.filter)) throw new HttpProblem(400, 'Filter first: a bulk action needs at least one condition (time, source, type, reason, group, text or pending).');
    return { filter: parsed.filter, query: filterQuery(parsed.form) };
  };

  async function route(req: IncomingMessage, res: ServerResponse, path: string, url: URL, ctx: PageContext): Promise<void> {
    const method = req.method ?? 'GET';
    if (method === 'GET' || method === 'HEAD') {
      if (path === '/' || path === '') {
        const window = CHART_WINDOWS[url.searchParams.get('window') ?? ''] !== undefined ? (url.searchParams.get('window') as string) : '24h';
        const w = CHART_WINDOWS[window] as { ms: number; buckets: number };
        const [overview, timeline, groups, actions, outbox] = await Promise.all([
          store.overview(),
          store.timeline({ since: new Date(Date.now() - w.ms), buckets: w.buckets }),
          store.groups(),
          store.actions({ limit: 10 }),
          readOutboxOverview(o.db, { schema: o.schema }),
        ]);
        return page(res, 200, overviewPage(ctx, { overview, outbox, timeline, window, groups, actions }));
      }
      if (path === '/dead-letters') {
        const parsed = parseFilter(url.searchParams);
        const after = url.searchParams.get('after') ?? undefined;
        const result = await store.page({ ...parsed.filter, limit: o.pageSize, ...(after === undefined || after === '' ? {} : { after }) });
        return page(res, 200, deadLettersPage(ctx, parsed, result, { after: after === '' ? undefined : after, hasCondition: hasCondition(parsed.filter) }));
      }
      const detail = /^\/dead-letters\/([^/]+)$/.exec(path);
      if (detail !== null) {
        const id = decodeURIComponent(detail[1] as string);
        if (!/^\d{1,18}$/.test(id) && !isUuid(id)) throw new HttpProblem(404, 'No such dead letter.');
        const dl = await store.show(id);
        if (dl === undefined) throw new HttpProblem(404, `No dead letter ${id} (discarded, or never stored).`);
        return page(res, 200, detailPage(ctx, dl, undefined, await store.parked(dl.id)));
      }
      if (path === '/audit') return page(res, 200, auditPage(ctx, await store.actions({ limit: 200 })));
      if (path === '/replay-set') {
        if (ctx.readOnly) throw new HttpProblem(403, 'The workbench is read-only.');
        const { filter, query } = bulkFilter(url.searchParams);
        const preview = await store.preview({ filter }, { limit: 20 });
        return page(res, 200, replaySetPage(ctx, describeQuery(query), query, preview, o.replayRatePerSecond));
      }
      if (path === '/discard') {
        if (ctx.readOnly) throw new HttpProblem(403, 'The workbench is read-only.');
        const ids = idsOf(url.searchParams);
        if (ids.length > 0) {
          const preview = await store.preview({ ids }, { limit: 20 });
          return page(res, 200, discardConfirmPage(ctx, `ids ${ids.join(', ')}`, { ids }, preview));
        }
        const { filter, query } = bulkFilter(url.searchParams);
        const preview = await store.preview({ filter }, { limit: 20 });
        return page(res, 200, discardConfirmPage(ctx, describeQuery(query), { query }, preview));
      }
      if (path === '/export.jsonl') {
        const parsed = parseFilter(url.searchParams);
        if (parsed.problems.length > 0) throw new HttpProblem(400, parsed.problems.join('; '));
        res.writeHead(200, {
          ...SECURITY_HEADERS,
          'content-type': 'application/x-ndjson; charset=utf-8',
          'content-disposition': `attachment; filename="dead-letters-${new Date().toISOString().replace(/[:.]/g, '-')}.jsonl"`,
        });
        for await (const dl of store.iterate(parsed.filter)) {
          if (res.destroyed) return;
          // A client that goes away never drains: wait for either, then stop at the check above.
          if (!res.write(exportLine(dl))) await Promise.race([once(res, 'drain'), once(res, 'close')]);
        }
        res.end();
        return;
      }
      const job = /^\/jobs\/([0-9a-f]{16})(\.json)?$/.exec(path);
      if (job !== null) {
        const found = jobs.get(job[1] as string);
        if (found === undefined) throw new HttpProblem(404, 'No such bulk replay (the workbench may have restarted).');
        if (job[2] !== undefined) return send(res, 200, JSON.stringify(found.status), 'application/json; charset=utf-8');
        return page(res, 200, jobPage(ctx, found.status));
      }
      throw new HttpProblem(404, 'Not found.');
    }
    if (method !== 'POST') throw new HttpProblem(405, 'Only GET and POST.');
    if (ctx.readOnly) throw new HttpProblem(403, 'The workbench is read-only: nothing can be replayed or discarded here.');
    if (!sameOriginPost(req)) throw new HttpProblem(403, 'Refused: the form was not posted from the workbench itself.');
    const form = await readForm(req);
    if (!csrf.verify(presentedToken(req) ?? '', form.get(CSRF_FIELD) ?? undefined)) {
      throw new HttpProblem(403, 'Refused: the form token is missing or stale (reload the page and try again).');
    }
    const actor = actorOf(req);
    const force = form.get('force') === '1';
    if (path === '/replay') {
      const ids = idsOf(form);
      if (ids.length === 0) throw new HttpProblem(400, 'Select at least one dead letter to replay.');
      const result = await store.replay({ ids, force, actor });
      const back = form.get('back') === 'detail' && ids.length === 1 ? href(ctx, `/dead-letters/${ids[0] ?? ''}`) : href(ctx, '/dead-letters');
      return page(
        res,
        200,
        resultPage(
          ctx,
          'Replayed',
          html`<p id="replayed-count">${result.count} message(s) went back into the outbox${result.count > 0 ? ' (the relay publishes them with their original message ids)' : ''}.</p>
          ${result.skipped.length > 0 ? html`<p>${result.skipped.length} left alone:</p><ul>${result.skipped.map((s) => html`<li>${s.id}: ${s.why}</li>`)}</ul>` : ''}`,
          back,
        ),
      );
    }
    if (path === '/edit-replay') {
      const id = form.get('id') ?? '';
      if (!/^\d{1,18}$/.test(id)) throw new HttpProblem(400, 'Which dead letter? (a row id)');
      const dl = await store.show(id);
      if (dl === undefined) throw new HttpProblem(404, `No dead letter ${id}.`);
      let payload: unknown;
      try {
        payload = JSON.parse(form.get('payload') ?? '');
      } catch (error) {
        return page(res, 400, detailPage(ctx, dl, html`<p class="problem" id="edit-problem">The edited payload is not JSON: ${(error as Error).message}. Nothing was replayed.</p>`));
      }
      const result = await store.replay({ ids: [id], payload, force, actor });
      const message =
        result.count === 1
          ? html`<p id="replayed-count">1 message went back into the outbox with the edited payload, under its original message id.</p>`
          : html`<p id="replayed-count">Nothing was replayed: ${result.skipped.map((s) => s.why).join('; ')}</p>`;
      return page(res, 200, resultPage(ctx, 'Replayed with an edited payload', message, href(ctx, `/dead-letters/${id}`)));
    }
    if (path === '/discard') {
      if (form.get('confirm') !== 'yes') throw new HttpProblem(400, 'Tick the confirmation to discard: nothing was deleted.');
      const ids = idsOf(form);
      const count = ids.length > 0 ? await store.discard({ ids, actor }) : await store.discard({ filter: bulkFilter(form).filter, actor });
      return page(res, 200, resultPage(ctx, 'Discarded', html`<p id="discarded-count">${count} dead letter(s) deleted (recorded in the audit).</p>`, href(ctx, '/dead-letters')));
    }
    if (path === '/jobs') {
      const { filter, query } = bulkFilter(form);
      const rate = Number(form.get('rate') ?? o.replayRatePerSecond);
      if (!Number.isFinite(rate) || rate < 1 || rate > 100_000) throw new HttpProblem(400, 'The rate limit is 1 to 100,000 messages per second.');
      const total = await store.count(filter);
      const job = startReplayJob(store, { filter, description: describeQuery(query), actor, force, ratePerSecond: rate, total });
      keepJob(job);
      return redirect(res, href(ctx, `/jobs/${job.status.id}`));
    }
    const cancel = /^\/jobs\/([0-9a-f]{16})\/cancel$/.exec(path);
    if (cancel !== null) {
      const job = jobs.get(cancel[1] as string);
      if (job === undefined) throw new HttpProblem(404, 'No such bulk replay.');
      job.cancel();
      await job.finished;
      return redirect(res, href(ctx, `/jobs/${job.status.id}`));
    }
    throw new HttpProblem(404, 'Not found.');
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<boolean> {
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://workbench.invalid');
    } catch {
      return false;
    }
    if (o.basePath !== '' && url.pathname !== o.basePath && !url.pathname.startsWith(`${o.basePath}/`)) return false;
    const path = url.pathname.slice(o.basePath.length) || '/';
    const ctx: PageContext = { base: o.basePath, csrf: '', readOnly: o.readOnly };
    try {
      if (o.allowedHosts !== undefined && !o.allowedHosts.includes((req.headers.host ?? '').toLowerCase())) {
        throw new HttpProblem(421, 'This host name is not one the workbench answers to.');
      }
      const asset = /^\/assets\/([a-z.]+)$/.exec(path);
      if (asset !== null && assets.has(asset[1] as string)) {
        send(res, 200, assets.get(asset[1] as string) as Buffer, ASSET_TYPES[asset[1] as string], { 'cache-control': 'no-cache' });
        return true;
      }
      let session = '';
      if (o.token !== undefined) {
        const offered = url.searchParams.get('token');
        if (offered !== null && (req.method ?? 'GET') === 'GET' && sameSecret(offered, o.token)) {
          // Once: the cookie carries it from now on, and the address no longer shows it.
          url.searchParams.delete('token');
          const secure = (req.socket as { encrypted?: boolean }).encrypted === true ? '; Secure' : '';
          redirect(res, `${o.basePath}${path === '/' && o.basePath !== '' ? '' : path}${url.search}`, {
            'set-cookie': `${TOKEN_COOKIE}=${encodeURIComponent(o.token)}; HttpOnly; SameSite=Strict; Path=${o.basePath || '/'}${secure}`,
          });
          return true;
        }
        const presented = presentedToken(req);
        if (presented === undefined || !sameSecret(presented, o.token)) throw new HttpProblem(401, 'This workbench needs its token: open it once with ?token=<token>, or send Authorization: Bearer <token>.');
        session = presented;
      }
      ctx.csrf = csrf.issue(session);
      await route(req, res, path, url, ctx);
    } catch (error) {
      if (res.headersSent) {
        res.destroy();
        return true;
      }
      const status = error instanceof HttpProblem ? error.status : isMailroomError(error) ? 400 : 500;
      const message = error instanceof HttpProblem || isMailroomError(error) ? (error as Error).message : `The workbench failed: ${describeError(error)}`;
      page(res, status, layout(ctx, status === 404 ? 'Not found' : status >= 500 ? 'Error' : 'Refused', html`<p class="problem" id="problem">${message}</p><p><a href="${href(ctx, '/')}">Overview</a></p>`));
    }
    return true;
  }

  const workbench = ((req: IncomingMessage, res: ServerResponse): void => {
    void handle(req, res).then((answered) => {
      if (!answered) send(res, 404, 'not found\n', 'text/plain; charset=utf-8');
    });
  }) as Workbench;
  workbench.handle = handle;
  workbench.jobs = () => [...jobs.values()].map((j) => j.status).reverse();
  workbench.close = async () => {
    for (const job of jobs.values()) job.cancel();
    await Promise.all([...jobs.values()].map((j) => j.finished));
  };
  return workbench;
}
