import { setTimeout as sleep } from 'node:timers/promises';
import { quoteIdentifier } from '@mailroom/core/internal';
import type { AdminLinks } from './admin-links.js';
import type { FaultProxy } from './fault-proxy.js';
import { injectedHostile } from './check-hostile.js';
import type { History } from './history.js';
import { queueCounts } from './queue-probe.js';
import { letterEventIdSql } from './read-final-state.js';
import type { RunResources } from './run-resources.js';
import type { WorkerFleet } from './worker-fleet.js';

/** How the settling after the faults went. */
export interface SettleResult {
  /** Whether the drain finished before its timeout. */
  drained: boolean;
  drainMs: number;
  quietMs: number;
}

/**
 * Heals everything the nemesis may have left: no link faults, nothing paused, every process up
 * and without crash points. `onHeal` runs first (the wire tap starts counting what comes after).
 */
export async function heal(proxies: readonly FaultProxy[], fleet: WorkerFleet, history: History, onHeal: () => void = () => undefined): Promise<void> {
  onHeal();
  history.add('invoke', 'nemesis', 'heal');
  for (const proxy of proxies) proxy.heal();
  await fleet.ensureRunning();
  history.add('ok', 'nemesis', 'heal');
}

/** What the drain waits for besides the committed events: injected messages that must end as dead letters. */
interface Awaited {
  poison: string[];
  /** Hostile messages that must end as dead letters: their id and message id as sent. */
  hostileIds: string[];
  hostileMessageIds: string[];
}

/**
 * One line of drain progress: `done …` when every committed event took effect or is a dead
 * letter, every injected poison or hostile message is a dead letter, and nothing waits in the
 * outbox or a work or delay queue.
 */
async function progress(links: AdminLinks, r: RunResources, awaited: Awaited): Promise<string> {
  const s = quoteIdentifier(r.schema);
  const { rows } = await links.pool.query<{ outbox: number; pending: number; effects: number; poison: number; hostile: number }>(
    `WITH letters AS (SELECT d.message_id::text AS m, lower(${letterEventIdSql('d')}) AS e FROM ${s}.dead_letters d)
     SELECT (SELECT count(*) FROM ${s}.outbox)::int AS outbox,
            (SELECT count(*) FROM ${s}.chaos_domain d
              WHERE NOT EXISTS (SELECT 1 FROM ${s}.chaos_ledger l WHERE l.event_id = d.event_id)
                AND NOT EXISTS (SELECT 1 FROM ${s}.dead_letters x WHERE x.message_id = d.event_id))::int AS pending,
            (SELECT count(*) FROM ${s}.chaos_ledger)::int AS effects,
            (SELECT count(*) FROM unnest($1::uuid[]) AS p(id) WHERE NOT EXISTS (SELECT 1 FROM ${s}.dead_letters x WHERE x.message_id = p.id))::int AS poison,
            (SELECT count(*) FROM unnest($2::text[], $3::text[]) AS h(id, sent)
              WHERE NOT EXISTS (SELECT 1 FROM letters l WHERE l.m = h.id OR l.e = h.id OR l.m = h.sent))::int AS hostile`,
    [awaited.poison, awaited.hostileIds, awaited.hostileMessageIds],
  );
  const p = rows[0] as { outbox: number; pending: number; effects: number; poison: number; hostile: number };
  const queued = (await queueCounts(await links.connection(), [r.queue, ...r.delayQueues, ...r.partitionQueues])).reduce((a, q) => a + q.messages, 0);
  const done = p.outbox === 0 && p.pending === 0 && p.poison === 0 && p.hostile === 0 && queued === 0;
  return `${done ? 'done' : 'waiting'}: outbox ${p.outbox}, without effect ${p.pending}, poison not dead-lettered ${p.poison}, hostile not dead-lettered ${p.hostile}, queued ${queued}, effects ${p.effects}`;
}

/**
 * Waits until everything drained (or `drainTimeoutMs` passed), then for a quiet period in which
 * nothing may change, so that the final reads see a state at rest. A workload with tables of its
 * own (the saga workload) gives its own `probe`: one progress line, `done …` when at rest.
 */
export async function drainAndQuiet(
  links: AdminLinks,
  r: RunResources,
  history: History,
  o: { drainTimeoutMs: number; quietMs: number; log: (line: string) => void },
  probe?: () => Promise<string>,
): Promise<SettleResult> {
  history.add('info', 'harness', 'phase', { phase: 'drain' });
  const hostile = injectedHostile(history.ops).filter((h) => h.expect.deadLetter);
  const awaited: Awaited = {
    poison: history.ops.filter((op) => op.f === 'inject-poison' && op.type === 'ok').map((op) => (op.value as { id: string }).id),
    hostileIds: hostile.map((h) => h.id),
    hostileMessageIds: hostile.map((h) => h.messageId),
  };
  const read = probe ?? ((): Promise<string> => progress(links, r, awaited));
  const t1 = Date.now();
  let drained = false;
  let last = '';
  for (;;) {
    const snapshot = await read().catch((e: unknown) => `error ${String(e)}`);
    if (snapshot.startsWith('done')) {
      drained = true;
      break;
    }
    if (snapshot !== last) o.log(`drain: ${snapshot}`);
    last = snapshot;
    if (Date.now() - t1 > o.drainTimeoutMs) break;
    await sleep(250);
  }
  const drainMs = Date.now() - t1;
  history.add('info', 'harness', 'phase', { phase: 'quiet', drained });
  const t2 = Date.now();
  const before = await read().catch(() => '');
  await sleep(o.quietMs);
  const after = await read().catch(() => '');
  if (drained && before !== after) o.log(`changed during the quiet period: ${before} -> ${after}`);
  return { drained, drainMs, quietMs: Date.now() - t2 };
}
