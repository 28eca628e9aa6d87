// Issue 13, the workbench (must show 1): headless Chromium (Debian's `chromium`, driven by
// playwright-core) against a real workbench on a fresh schema: it filters a planted set, replays a
// group in a rate-limited bulk job while watching the progress, cancels one, discards with the
// confirmation, edits and replays a payload, and the test checks the database and the queue.
// Without Chromium this file FAILS (it never skips): CI installs it (.ci/run).
import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync } from 'node:fs';
import { request } from 'node:http';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { DEAD_LETTER_REASON } from '@mailroom/core';
import { createDeadLetterStore, type DeadLetterStore, type NewDeadLetter } from '@mailroom/dlq';
import { createRelay, type Relay } from '@mailroom/outbox';
import { startWorkbench, type RunningWorkbench } from '@mailroom/ui';
import { createTestBroker, createTestDatabase, testUrls, type Collected, type TestBroker, type TestDatabase } from '../../../test/helpers.js';

const CHROMIUM = process.env.MAILROOM_CHROMIUM ?? '/usr/bin/chromium';
const SCREENSHOTS = process.env.MAILROOM_UI_SCREENSHOTS === '1';
const docs = fileURLToPath(new URL('../docs/', import.meta.url));
const WAIT = { timeout: 30_000, interval: 50 };

let db: TestDatabase;
let broker: TestBroker;
let store: DeadLetterStore;
let relay: Relay;
let workbench: RunningWorkbench;
let browser: Browser;
let page: Page;
let exchange: string;
let queue: string;
let received: Collected;
const declined: string[] = [];
const addressless: string[] = [];

async function plant(fields: Partial<NewDeadLetter>, minutesAgo: number): Promise<string> {
  const messageId = randomUUID();
  await store.record({
    messageId,
    source: 'billing',
    reason: DEAD_LETTER_REASON.nonRetryable,
    error: 'Error: card declined for order 17',
    type: 'order.placed',
    exchange,
    routingKey: 'order.placed',
    attempts: 3,
    payload: { orderId: `o-${minutesAgo}`, total: 12 },
    failedAt: new Date(Date.now() - minutesAgo * 60_000),
    ...fields,
  });
  return messageId;
}

async function rows(sql: string, values: unknown[] = []): Promise<Array<Record<string, unknown>>> {
  return (await db.pool.query(sql.replaceAll('$schema', `"${db.schema}"`), values)).rows as Array<Record<string, unknown>>;
}

beforeAll(async () => {
  // Fail, never skip: the browser test is part of `pnpm test`.
  if (!existsSync(CHROMIUM)) throw new Error(`Chromium is not installed at ${CHROMIUM}: apt-get install -y chromium (CI does this in .ci/run)`);
  db = await createTestDatabase();
  broker = await createTestBroker();
  exchange = broker.name('orders');
  queue = await broker.queueFor(exchange, '#');
  received = broker.collect(queue);
  store = createDeadLetterStore({ db: db.pool, schema: db.schema });
  for (let i = 0; i < 12; i++) declined.push(await plant({}, 5 + i * 95));
  for (let i = 0; i < 5; i++) {
    addressless.push(
      await plant({ source: 'shipping', type: 'parcel.sent', error: `Error: no address for parcel ${i} <script>window.__pwned = 1</script>`, routingKey: 'parcel.sent', payload: { parcel: i } }, 30 + i * 200),
    );
  }
  // Hostile: markup, NUL, bidi override and a large payload must render as text.
  await plant(
    {
      source: 'hostile',
      type: 'evil.<img src=x onerror=window.__pwned=2>',
      // (PostgreSQL stores no NUL: the sink stores U+FFFD for one; ESC is stored as is.)
      error: 'Error: \u001b[31m<b>bold</b>\u202Egnp.exe',
      headers: { 'x-note': '<iframe src="javascript:window.__pwned=3"></iframe>' },
      // (jsonb puts shorter keys first: the long one comes after the markup, cut in the page.)
      payload: { html: '</pre><script>window.__pwned = 4</script>', zzzzzzzzzz: 'x'.repeat(300_000) },
    },
    50,
  );
  workbench = await startWorkbench({ db: db.pool, schema: db.schema, port: 0, actor: 'ui-test' });
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
  page = await browser.newPage({ viewport: { width: 1360, height: 900 } });
  page.on('dialog', (dialog) => void dialog.dismiss());
  if (SCREENSHOTS) mkdirSync(docs, { recursive: true });
});

afterAll(async () => {
  await browser?.close();
  await workbench?.stop();
  await relay?.stop();
  await received?.stop();
  await broker?.close();
  await db?.close();
});

const url = (path: string): string => `${workbench.url.replace(/\/$/, '')}${path}`;
const shot = async (name: string): Promise<void> => {
  if (SCREENSHOTS) await page.screenshot({ path: `${docs}${name}.png`, fullPage: true });
};

describe('the workbench in a real browser', () => {
  it('shows the overview: backlog, the chart of failure groups, no markup from messages', async () => {
    await page.goto(url('/'));
    await expect.poll(() => page.locator('h1').textContent()).toBe('Overview');
    expect(await page.locator('svg.chart rect').count()).toBeGreaterThan(0);
    expect(await page.locator('#pending').textContent()).toBe('18');
    expect(await page.locator('#backlog').textContent()).toBe('0');
    expect(await page.locator('#oldest').textContent()).toBe('—');
    expect(await page.locator('#retrying').textContent()).toBe('0');
    expect(await page.locator('#relays h2').textContent()).toBe('Relays');
    expect(await page.locator('#consumers h2').textContent()).toBe('Consumers');
    expect(await page.evaluate('window.__pwned')).toBeUndefined();
    await shot('overview');
  });

  it('filters a planted set by source and text, and pages by keyset', async () => {
    await page.goto(url('/dead-letters'));
    await page.fill('input[name=source]', 'billing');
    await page.fill('input[name=text]', 'DECLINED');
    await page.click('#filter button[type=submit]');
    await page.waitForURL(/source=billing/);
    const sources = await page.locator('table.dead-letters tbody tr td:nth-child(4)').allTextContents();
    expect(sources).toHaveLength(12);
    expect(new Set(sources)).toEqual(new Set(['billing']));
    await shot('dead-letters');
    // Odd filter text is a value, never SQL: it matches nothing and breaks nothing.
    await page.goto(url(`/dead-letters?text=${encodeURIComponent(`%_\\'"; DROP TABLE x; --\u0000`)}&source=${encodeURIComponent("' OR 1=1 --")}`));
    expect(await page.locator('.empty').first().textContent()).toContain('No dead letter matches');
    // Keyset pages: 18 rows at 5 a page (a second workbench with a small page) walk through all of them once.
    const small = await startWorkbench({ db: db.pool, schema: db.schema, port: 0, pageSize: 5 });
    try {
      const seen: string[] = [];
      await page.goto(`${small.url}dead-letters`);
      for (;;) {
        for (const tr of await page.locator('table.dead-letters tbody tr').all()) seen.push((await tr.getAttribute('data-id')) ?? '');
        const next = page.locator('#next-page');
        if ((await next.count()) === 0) break;
        await next.click();
      }
      expect(seen).toHaveLength(18);
      expect(new Set(seen).size).toBe(18);
    } finally {
      await small.stop();
    }
  });

  it('renders hostile payloads, headers and errors as text', async () => {
    const [hostile] = await rows(`SELECT id::text AS id FROM $schema.dead_letters WHERE source = 'hostile'`);
    await page.goto(url(`/dead-letters/${String(hostile?.id)}`));
    expect(await page.locator('#error').textContent()).toBe('Error: \\u001B[31m<b>bold</b>\\u202Egnp.exe');
    expect(await page.locator('#headers-view').textContent()).toContain('<iframe src=\\"javascript:window.__pwned=3\\"></iframe>');
    expect(await page.locator('#payload-view').textContent()).toContain('</pre><script>window.__pwned = 4</script>');
    expect(await page.locator('#payload-view').textContent()).toContain('more characters');
    // Too large to edit in the page: no half payload in a textarea.
    expect(await page.locator('#payload').count()).toBe(0);
    expect(await page.locator('iframe, img, b').count()).toBe(0);
    expect(await page.evaluate('window.__pwned')).toBeUndefined();
  });

  it('replays a whole group through a rate-limited bulk job, shows its progress, and the queue gets each message once', async () => {
    relay = createRelay({ database: db.pool, amqp: testUrls().amqpUrl, schema: db.schema, pollIntervalMs: 100 });
    await relay.start();
    const [group] = await rows(`SELECT DISTINCT fingerprint FROM $schema.dead_letters WHERE source = 'billing'`);
    await page.goto(url(`/dead-letters?group=${String(group?.fingerprint)}`));
    await page.click('#replay-set');
    expect(await page.locator('#preview-count').textContent()).toBe('12 dead letter(s) match.');
    await shot('replay-preview');
    await page.fill('#rate', '5');
    await page.click('#start-replay');
    await page.waitForURL(/\/jobs\/[0-9a-f]{16}$/);
    // Watch the progress the page shows: it moves through batches of 5 (one a second at 5/s) to 12.
    const seen = new Set<string>();
    await vi.waitFor(async () => {
      seen.add((await page.locator('#job-examined').textContent()) ?? '');
      if (seen.has('5') && !(await page.locator('#job-state').textContent())?.includes('done')) await shot('replay-progress');
      expect(await page.locator('#job-state').textContent()).toBe('done');
    }, WAIT);
    expect(seen.has('5') || seen.has('10'), `progress seen: ${[...seen].join(', ')}`).toBe(true);
    expect(await page.locator('#job-replayed').textContent()).toBe('12');
    expect(await page.locator('#job-progress').getAttribute('value')).toBe('12');
    await received.waitForCount(12);
    expect(new Set(received.ids())).toEqual(new Set(declined));
    const replayed = await rows(`SELECT count(*)::int AS n FROM $schema.dead_letters WHERE source = 'billing' AND replayed_at IS NOT NULL`);
    expect(replayed[0]?.n).toBe(12);
    const audit = await rows(`SELECT actor, action, sum(count)::int AS n FROM $schema.dead_letter_actions GROUP BY actor, action`);
    expect(audit).toEqual([{ actor: 'ui-test', action: 'replay', n: 12 }]);
    await page.goto(url('/audit'));
    expect(await page.locator('table.audit tbody tr').count()).toBe(3);
    await shot('audit');
  });

  it('cancels a bulk replay between batches', async () => {
    await page.goto(url('/replay-set?source=shipping'));
    await page.fill('#rate', '1');
    await page.click('#start-replay');
    await page.waitForURL(/\/jobs\//);
    await vi.waitFor(async () => expect(Number(await page.locator('#job-examined').textContent())).toBeGreaterThan(0), WAIT);
    await page.click('#cancel-job');
    await vi.waitFor(async () => expect(await page.locator('#job-state').textContent()).toBe('cancelled'), WAIT);
    const replayed = Number(await page.locator('#job-replayed').textContent());
    expect(replayed).toBeGreaterThan(0);
    expect(replayed).toBeLessThan(5);
    const [pending] = await rows(`SELECT count(*)::int AS n FROM $schema.dead_letters WHERE source = 'shipping' AND replayed_at IS NULL`);
    expect(pending?.n).toBe(5 - replayed);
  });

  it('discards a filtered set only after the confirmation, and records it', async () => {
    await page.goto(url('/dead-letters?source=shipping'));
    await page.click('#discard-set');
    expect(await page.locator('#preview-count').textContent()).toContain('5 dead letter(s) would be deleted');
    await shot('discard-confirm');
    // Without the tick the browser does not send the form: nothing is deleted.
    await page.click('#confirm-discard');
    expect(page.url()).toContain('/discard?');
    const [still] = await rows(`SELECT count(*)::int AS n FROM $schema.dead_letters WHERE source = 'shipping'`);
    expect(still?.n).toBe(5);
    await page.check('#confirm');
    await page.click('#confirm-discard');
    expect(await page.locator('#discarded-count').textContent()).toContain('5 dead letter(s) deleted');
    const [gone] = await rows(`SELECT count(*)::int AS n FROM $schema.dead_letters WHERE source = 'shipping'`);
    expect(gone?.n).toBe(0);
    const [audit] = await rows(`SELECT actor, count, selection FROM $schema.dead_letter_actions WHERE action = 'discard'`);
    expect(audit).toMatchObject({ actor: 'ui-test', count: 5, selection: { filter: { source: 'shipping' } } });
  });

  it('edits a payload, refuses what is not JSON, and replays the edit under the same message id', async () => {
    const messageId = await plant({ error: 'Error: total must be positive', payload: { orderId: 'o-edit', total: -1 } }, 1);
    await page.goto(url(`/dead-letters/${messageId}`));
    await page.fill('#payload', '{"orderId": "o-edit", "total": ');
    expect(await page.locator('#json-state').textContent()).toContain('not JSON');
    expect(await page.locator('#edit-replay-submit').isDisabled()).toBe(true);
    await page.fill('#payload', '{"orderId": "o-edit", "total": 5}');
    expect(await page.locator('#json-state').textContent()).toBe('valid JSON');
    await shot('detail-edit');
    // The server checks again: a form that posts text that is not JSON replays nothing.
    const csrf = await page.locator('#edit-replay input[name=_csrf]').getAttribute('value');
    const refused = await page.request.post(url('/edit-replay'), { form: { _csrf: csrf ?? '', id: String(await rowIdOf(messageId)), payload: '{"total": ' } });
    expect(refused.status()).toBe(400);
    expect(await refused.text()).toContain('The edited payload is not JSON');
    const [notYet] = await rows(`SELECT count(*)::int AS n FROM $schema.outbox WHERE message_id = $1`, [messageId]);
    expect(notYet?.n).toBe(0);
    await page.click('#edit-replay-submit');
    expect(await page.locator('#replayed-count').textContent()).toContain('edited payload');
    await received.waitForCount(12 + Number(await countReplayedShipping()) + 1);
    const edited = received.messages.find((m) => m.properties.messageId === messageId);
    expect(JSON.parse(edited?.content.toString() ?? 'null')).toEqual({ orderId: 'o-edit', total: 5 });
    const [audit] = await rows(`SELECT selection FROM $schema.dead_letter_actions WHERE $1::uuid = ANY(message_ids)`, [messageId]);
    expect(audit?.selection).toMatchObject({ edited: true });
  });

  it('exports a filtered set as JSON lines', async () => {
    const response = await page.request.get(url('/export.jsonl?source=billing'));
    expect(response.headers()['content-type']).toContain('application/x-ndjson');
    const lines = (await response.text()).trim().split('\n').map((l) => JSON.parse(l) as { messageId: string; source: string });
    expect(lines.map((l) => l.messageId).sort()).toEqual([...declined, ...(await billingEdited())].sort());
  });
});

/** The status of a GET with another Host header (fetch does not let a caller set Host). */
async function statusWithHost(address: string, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(address, { headers: { host } }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.end();
  });
}

async function rowIdOf(messageId: string): Promise<string> {
  const [r] = await rows(`SELECT id::text AS id FROM $schema.dead_letters WHERE message_id = $1`, [messageId]);
  return String(r?.id);
}

async function countReplayedShipping(): Promise<number> {
  // The cancelled job's replays reach the queue too (their rows were discarded afterwards, the messages not).
  const [r] = await rows(`SELECT coalesce(sum(count), 0)::int AS n FROM $schema.dead_letter_actions WHERE action = 'replay' AND selection->'filter'->>'source' = 'shipping'`);
  return Number(r?.n ?? 0);
}

async function billingEdited(): Promise<string[]> {
  const r = await rows(`SELECT message_id::text AS id FROM $schema.dead_letters WHERE source = 'billing' AND payload->>'orderId' = 'o-edit'`);
  return r.map((x) => String(x.id));
}

describe('the workbench refuses what it must', () => {
  it('refuses a POST without the form token or from another origin, and everything without the access token', async () => {
    const form = (extra: Record<string, string>): RequestInit => ({
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', ...extra },
      body: `ids=${declined[0] ?? ''}&confirm=yes`,
    });
    expect((await fetch(url('/discard'), form({}))).status).toBe(403);
    expect((await fetch(url('/discard'), form({ origin: 'http://evil.example' }))).status).toBe(403);
    const guarded = await startWorkbench({ db: db.pool, schema: db.schema, port: 0, host: '0.0.0.0', token: 'a-long-enough-secret-token' });
    try {
      const base = `http://127.0.0.1:${guarded.port}`;
      expect((await fetch(`${base}/`)).status).toBe(401);
      expect((await fetch(`${base}/`, { headers: { authorization: 'Bearer a-long-enough-secret-token' } })).status).toBe(200);
      const entry = await fetch(`${base}/dead-letters?token=a-long-enough-secret-token`, { redirect: 'manual' });
      expect(entry.status).toBe(303);
      expect(entry.headers.get('location')).toBe('/dead-letters');
      expect(entry.headers.get('set-cookie')).toContain('HttpOnly');
    } finally {
      await guarded.stop();
    }
    await expect(startWorkbench({ db: db.pool, schema: db.schema, port: 0, host: '0.0.0.0' })).rejects.toThrow(/give it a token/);
    // DNS rebinding: a loopback workbench answers only its own host names.
    expect(await statusWithHost(url('/'), 'evil.example:80')).toBe(421);
    expect(await statusWithHost(url('/'), `localhost:${workbench.port}`)).toBe(200);
    const [count] = await rows(`SELECT count(*)::int AS n FROM $schema.dead_letters WHERE message_id = $1`, [declined[0]]);
    expect(count?.n).toBe(1);
  });

  it('read-only: no action forms, and every POST is refused', async () => {
    const readOnly = await startWorkbench({ db: db.pool, schema: db.schema, port: 0, readOnly: true });
    try {
      await page.goto(`${readOnly.url}dead-letters`);
      expect(await page.locator('#read-only').count()).toBe(1);
      expect(await page.locator('form[method=post]').count()).toBe(0);
      const response = await fetch(`${readOnly.url}replay`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: `ids=${declined[0] ?? ''}` });
      expect(response.status).toBe(403);
      // Refused as read-only (before any other check), not merely for a missing form token.
      expect(await response.text()).toContain('The workbench is read-only');
    } finally {
      await readOnly.stop();
    }
  });
});
