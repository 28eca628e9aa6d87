// One registry, the sidecar's dead-letter gauges and the store's `registerMetrics` together (a
// service that serves dlq metrics in the same exposition as a relay): the exposition must parse
// and name each family once, whichever registered first. Both come from @mailroom/dlq's one
// definition (`registerDeadLetterMetrics`), against dead letters in the real PostgreSQL.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { MetricsRegistry } from '@mailroom/core';
import { DEAD_LETTER_SERIES, createDeadLetterStore, type DeadLetterStore } from '@mailroom/dlq';
import { registerBuildInfo, registerDeadLetterGauges } from '../src/sidecar-metrics.js';
import { createTestDatabase, type TestDatabase } from '../../../test/helpers.js';

let db: TestDatabase;
let store: DeadLetterStore;

interface Family {
  help: string[];
  type: string[];
  samples: Array<{ name: string; labels: string; value: number }>;
}

/**
 * Parses the Prometheus text format strictly enough to catch a duplicate family: every line is a
 * HELP, a TYPE or a sample; a family's HELP and TYPE come once, before its samples, and its samples
 * are contiguous; no series (name and labels) appears twice.
 */
function parseExposition(text: string): Map<string, Family> {
  const families = new Map<string, Family>();
  const seenSeries = new Set<string>();
  const closed = new Set<string>();
  let current: string | undefined;
  const family = (name: string): Family => {
    if (current !== name) {
      if (current !== undefined) closed.add(current);
      if (closed.has(name)) throw new Error(`family ${name} appears twice (not contiguous)`);
      current = name;
    }
    let f = families.get(name);
    if (f === undefined) families.set(name, (f = { help: [], type: [], samples: [] }));
    return f;
  };
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const meta = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$/.exec(line);
    if (meta !== null) {
      const f = family(meta[2] as string);
      if (meta[1] === 'HELP') f.help.push(meta[3] as string);
      else {
        if (f.samples.length > 0) throw new Error(`TYPE of ${meta[2]} after its samples`);
        f.type.push(meta[3] as string);
      }
      continue;
    }
    const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*",?)*\})? (\S+)( \d+)?$/.exec(line);
    if (sample === null) throw new Error(`not a sample: ${JSON.stringify(line)}`);
    const name = sample[1] as string;
    // Histogram and summary samples belong to their base family.
    const base = [...families.keys()].find((k) => name === k || (name.startsWith(`${k}_`) && /^(bucket|sum|count|total|created)$/.test(name.slice(k.length + 1)))) ?? name;
    const key = `${name}${sample[2] ?? ''}`;
    if (seenSeries.has(key)) throw new Error(`series ${key} appears twice`);
    seenSeries.add(key);
    family(base).samples.push({ name, labels: sample[2] ?? '', value: Number(sample[3]) });
  }
  for (const [name, f] of families) {
    if (f.help.length !== 1 || f.type.length !== 1) throw new Error(`family ${name}: ${f.help.length} HELP and ${f.type.length} TYPE lines`);
  }
  return families;
}

beforeAll(async () => {
  db = await createTestDatabase();
  store = createDeadLetterStore({ db: db.pool, schema: db.schema });
  // Two groups, one of them with a replayed dead letter; then more groups than get a series.
  for (let i = 0; i < 3; i++) await store.record({ messageId: randomUUID(), source: 'orders', reason: 'invalid-payload', error: 'bad', type: 'order.placed', payload: {} });
  await store.record({ messageId: randomUUID(), source: 'billing', reason: 'max-attempts', error: 'ledger locked', type: 'invoice.due', payload: {} });
  for (let i = 0; i < DEAD_LETTER_SERIES + 2; i++) {
    await store.record({ messageId: randomUUID(), source: `s${i}`, reason: 'non-retryable', error: `e${i}`, type: 'x', payload: {} });
  }
});

afterAll(async () => {
  await db?.close();
});

for (const order of ['sidecar first', 'store first'] as const) {
  it(`the sidecar's gauges and store.registerMetrics in one registry (${order}): each family once, valid exposition`, async () => {
    const registry = new MetricsRegistry();
    registerBuildInfo(registry, { version: '0.0.0-test', instance: 'r1' });
    if (order === 'sidecar first') {
      registerDeadLetterGauges(registry, () => store.groups());
      store.registerMetrics(registry);
    } else {
      store.registerMetrics(registry);
      registerDeadLetterGauges(registry, () => store.groups());
    }
    const text = await registry.render();
    const families = parseExposition(text);
    const dead = families.get('mailroom_dead_letters');
    expect(dead?.type).toEqual(['gauge']);
    expect(dead?.help).toEqual(['Dead letters not replayed, by failure group (the largest groups; the rest summed as group="other").']);
    // The largest groups by name, the rest summed in "other": bounded series whoever registered first.
    expect(dead?.samples).toHaveLength(DEAD_LETTER_SERIES + 1);
    expect(dead?.samples.find((s) => s.labels.includes('source="orders"'))?.value).toBe(3);
    const other = dead?.samples.find((s) => s.labels.includes('group="other"'));
    // 53 groups of one pending each besides "orders": 49 of them keep a series, 4 are summed.
    expect(other?.value).toBe(4);
    expect(families.get('mailroom_dead_letters_stored')?.samples).toEqual([{ name: 'mailroom_dead_letters_stored', labels: '', value: 4 + DEAD_LETTER_SERIES + 2 }]);
    expect(families.get('mailroom_build_info')?.samples).toHaveLength(1);
  });
}

it('the parser refuses what Prometheus would: a family twice, a series twice', () => {
  const family = '# HELP a_total x\n# TYPE a_total counter\na_total 1\n';
  expect(() => parseExposition(`${family}${family}`)).toThrow('a_total');
  expect(() => parseExposition('# HELP g x\n# TYPE g gauge\ng{l="1"} 1\ng{l="1"} 2\n')).toThrow('series g{l="1"} appears twice');
  expect(parseExposition(family).get('a_total')?.samples).toEqual([{ name: 'a_total', labels: '', value: 1 }]);
});
