import { toExecutor } from '@mailroom/core/internal';
import type { StoreContext } from './store-context.js';

/**
 * What the workbench's overview gets from the dead-letter store: the registered consumers and the
 * dead-letter counts. The outbox's figures (backlog, scheduled rows, relays) are the outbox's to
 * read: a caller takes them from `readOutboxOverview` of `@mailroom/outbox`, as the workbench does.
 */
export interface StoreOverview {
  /** The consumers registered in `inbox_consumers`, with their inbox retention and retry horizon (at most 500). */
  consumers: Array<{ consumer: string; queue: string; retentionMs: number; retryHorizonMs: number; updatedAt: Date }>;
  deadLetters: {
    /** Every dead letter in the store. */
    total: number;
    /** Those not replayed (or failed again since). */
    pending: number;
  };
}

/** The registered consumers (replay checks their retention) and the dead-letter counts. */
export async function storeOverview(ctx: StoreContext): Promise<StoreOverview> {
  const db = toExecutor(ctx.db);
  const [c, d] = await Promise.all([
    db.query<{ consumer: string; queue: string; retention_ms: string; retry_horizon_ms: string; updated_at: Date }>(
      `SELECT consumer, queue, retention_ms::text AS retention_ms, retry_horizon_ms::text AS retry_horizon_ms, updated_at
       FROM ${ctx.quotedSchema}.inbox_consumers ORDER BY consumer LIMIT 500`,
    ),
    db.query<{ total: string; pending: string }>(
      `SELECT count(*)::text AS total, count(*) FILTER (WHERE replayed_at IS NULL)::text AS pending FROM ${ctx.table}`,
    ),
  ]);
  return {
    consumers: c.rows.map((r) => ({
      consumer: r.consumer,
      queue: r.queue,
      retentionMs: Number(r.retention_ms),
      retryHorizonMs: Number(r.retry_horizon_ms),
      updatedAt: new Date(r.updated_at),
    })),
    deadLetters: { total: Number(d.rows[0]?.total ?? 0), pending: Number(d.rows[0]?.pending ?? 0) },
  };
}

/** Options of `DeadLetterStore.timeline`. */
export interface TimelineOptions {
  /** The start of the window. Default: 24 hours ago. */
  since?: Date;
  /** How many buckets between `since` and now. Default: 24 (1 to 500). */
  buckets?: number;
  /** How many groups get a series of their own, the largest; the rest are summed in `other`. Default: 6. */
  groups?: number;
}

/** Dead letters by failure group over time: counts of last failures per bucket. */
export interface DeadLetterTimeline {
  /** The start of the first bucket. */
  since: Date;
  /** The width of a bucket in ms. */
  bucketMs: number;
  /** One series per large group, counts per bucket (oldest first). */
  series: Array<{ fingerprint: string; source: string; reason: string; type: string | null; counts: number[] }>;
  /** The other groups' counts per bucket. */
  other: number[];
}

/** Counts of dead letters per failure group and time bucket (by last failure), in one grouped query. */
export async function deadLetterTimeline(ctx: StoreContext, options: TimelineOptions = {}): Promise<DeadLetterTimeline> {
  const now = Date.now();
  const since = options.since ?? new Date(now - 86_400_000);
  const buckets = Math.min(500, Math.max(1, Math.trunc(options.buckets ?? 24)));
  const keep = Math.min(50, Math.max(1, Math.trunc(options.groups ?? 6)));
  const bucketMs = Math.max(1, Math.ceil((now - since.getTime()) / buckets));
  const result = await toExecutor(ctx.db).query<{ fingerprint: string; source: string; reason: string; type: string | null; bucket: number; n: string }>(
    `SELECT fingerprint, min(source) AS source, min(reason) AS reason, min(type) AS type,
       least($3::int - 1, floor(extract(epoch FROM last_failed_at - $1::timestamptz) * 1000 / $2::float8))::int AS bucket,
       count(*)::text AS n
     FROM ${ctx.table} WHERE last_failed_at >= $1::timestamptz GROUP BY fingerprint, bucket`,
    [since, bucketMs, buckets],
  );
  const byGroup = new Map<string, { fingerprint: string; source: string; reason: string; type: string | null; counts: number[]; total: number }>();
  for (const r of result.rows) {
    let g = byGroup.get(r.fingerprint);
    if (g === undefined) {
      g = { fingerprint: r.fingerprint, source: r.source, reason: r.reason, type: r.type, counts: new Array<number>(buckets).fill(0), total: 0 };
      byGroup.set(r.fingerprint, g);
    }
    const n = Number(r.n);
    const b = Math.min(buckets - 1, Math.max(0, r.bucket));
    g.counts[b] = (g.counts[b] ?? 0) + n;
    g.total += n;
  }
  const sorted = [...byGroup.values()].sort((a, b) => b.total - a.total);
  const other = new Array<number>(buckets).fill(0);
  for (const g of sorted.slice(keep)) g.counts.forEach((n, i) => (other[i] = (other[i] ?? 0) + n));
  return {
    since,
    bucketMs,
    series: sorted.slice(0, keep).map(({ total: _total, ...g }) => g),
    other,
  };
}
