import type { PgPoolClientLike } from '@mailroom/core';
import { crashPoint, quoteIdentifier, type CheckedOutClient } from '@mailroom/core/internal';
import { keyLockSlot } from './key-lock.js';
import { LinkFailure } from './link-health.js';
import { keyLockClass, moverLockClass } from './names.js';
import { backOffAfterFailure, untilAborted, type RelayRuntime } from './relay-runtime.js';
import { withLiterals } from './relay-sql.js';

/**
 * The statements of scheduled delivery for one schema (identifiers validated and quoted once;
 * every built-in schema-qualified, the transaction pins `search_path` as the batch's does).
 */
export interface ScheduledSql {
  /** $1 batch size: locks the due rows, earliest first, skipping rows another relay moves or a cancel holds. */
  lockDue: string;
  /** $1 lock class, $2 sorted slots: tries each key slot's lock, returns the slots another transaction holds. */
  trySlots: string;
  /** $1 comma-joined ids: moves those rows into the outbox, in due order; names the ids the outbox had already. */
  move: string;
  /** Whether a row is due now, and in how many ms the first of the others is (null when none). */
  next: string;
}

/** Builds the statements for `schema`. */
export function scheduledSql(schema: string): ScheduledSql {
  const scheduled = `${quoteIdentifier(schema)}.outbox_scheduled`;
  const outbox = `${quoteIdentifier(schema)}.outbox`;
  return {
    lockDue: `SELECT s.id, s.key FROM ${scheduled} s WHERE s.deliver_at OPERATOR(pg_catalog.<=) pg_catalog.now()
      ORDER BY s.deliver_at, s.id LIMIT $1 FOR UPDATE SKIP LOCKED`,
    trySlots: `SELECT s FROM pg_catalog.unnest($2::int[]) AS s WHERE NOT pg_catalog.pg_try_advisory_xact_lock($1::int, s)`,
    // The insert takes ids in due order (then enqueue order), so rows of one key moved together
    // are published in the order of their due times. A message id the outbox holds already (the
    // same message enqueued twice, once scheduled) is not inserted twice: it is that message.
    move: `WITH moved AS (
        DELETE FROM ${scheduled} s WHERE s.id OPERATOR(pg_catalog.=) ANY (pg_catalog.string_to_array($1::pg_catalog.text, ',')::bigint[])
        RETURNING s.id, s.message_id, s.type, s.exchange, s.routing_key, s.key, s.headers, s.payload, s.occurred_at, s.deliver_at),
      inserted AS (
        INSERT INTO ${outbox} (message_id, type, exchange, routing_key, key, headers, payload, occurred_at, deliver_at)
        SELECT m.message_id, m.type, m.exchange, m.routing_key, m.key, m.headers, m.payload, m.occurred_at, m.deliver_at
          FROM moved m ORDER BY m.deliver_at, m.id
        ON CONFLICT (message_id) DO NOTHING RETURNING message_id)
      SELECT (SELECT pg_catalog.count(*) FROM moved)::int AS moved,
        (SELECT pg_catalog.array_agg(m.message_id::pg_catalog.text) FROM moved m
          WHERE NOT EXISTS (SELECT 1 FROM inserted i WHERE i.message_id OPERATOR(pg_catalog.=) m.message_id)) AS duplicates`,
    // Both through the deliver_at index: a probe each, however many rows wait.
    next: `SELECT EXISTS (SELECT 1 FROM ${scheduled} s WHERE s.deliver_at OPERATOR(pg_catalog.<=) pg_catalog.statement_timestamp()) AS due,
      (extract(epoch FROM (SELECT pg_catalog.min(s.deliver_at) FROM ${scheduled} s WHERE s.deliver_at OPERATOR(pg_catalog.>) pg_catalog.statement_timestamp())
        OPERATOR(pg_catalog.-) pg_catalog.clock_timestamp()) OPERATOR(pg_catalog.*) 1000)::double precision AS next_ms`,
  };
}

/** What the mover knows of the rows still waiting, by the database's clock. */
interface NextDue {
  /** A row is due now (one this round could not take, or one that fell due meanwhile). */
  due: boolean;
  /** Ms until the earliest row not yet due; null when none waits. */
  nextMs: number | null;
}

/** One move round's outcome. */
interface Round {
  /** Due rows locked. */
  locked: number;
  /** Rows moved into the outbox (duplicates included: they left the schedule). */
  moved: number;
  /** Message ids the outbox held already (not inserted twice). */
  duplicates: string[];
  next: NextDue;
}

/** What the mover reports to the relay's handle (counted after the move committed). */
export interface MoverHooks {
  moved(rows: number, duplicates: readonly string[]): void;
}

/** A scheduled mover: the relay's loop that moves due scheduled rows into the outbox. */
export interface ScheduledMover {
  /** Runs until the relay stops; never rejects. */
  run(): Promise<void>;
  /** A new earliest row was scheduled (or a NOTIFY may have been missed): look again now. */
  poke(): void;
}

/**
 * Creates the relay's scheduled mover. One relay of a schema moves at a time: it holds the mover
 * lock (a session advisory lock, class `moverLockClass(schema)`) on a connection of its own; every
 * other relay waits for that lock on a connection of its own, a hot standby that takes over within
 * milliseconds when the mover's session ends (process killed, connection lost, relay stopped, or a
 * frozen process cut off by `idle_session_timeout`). Several relays racing for every due row
 * would each pay a round for every due time and all but one find nothing.
 *
 * The mover sleeps until the earliest due time it knows of (a timer, by the database's clock,
 * capped at the poll interval: the safety net), is poked by migration 11's NOTIFY when a row is
 * scheduled before every other one, and at each due time moves the due rows into the outbox in
 * one transaction:
 *
 * 1. lock the due rows, earliest first (`FOR UPDATE SKIP LOCKED`: a row a `cancelScheduled` holds
 *    is skipped, and a cancel that comes second waits for the move and finds nothing);
 * 2. try the key-slot locks (key-lock.ts) of their keys: enqueue holds a key's slot from its
 *    insert to its commit, so a moved row gets an id after every row of its key that is visible
 *    or still to commit, and ordering mode keeps publishing each key in id order. A slot another
 *    transaction holds is not waited for: its rows wait for the next round (a few ms later) and
 *    the others go now;
 * 3. delete them from `outbox_scheduled` and insert them into the outbox in one statement, commit.
 *
 * The outbox insert fires migration 9's trigger, which wakes a sleeping relay as for any insert;
 * a busy one finds the rows at its next poll. A failed round is retried with the relay's backoff.
 */
export function createScheduledMover(runtime: RelayRuntime, hooks: MoverHooks): ScheduledMover {
  const { options, wake } = runtime;
  const sql = scheduledSql(options.schema);
  const lockClass = keyLockClass(options.schema);
  const moverClass = moverLockClass(options.schema);
  const signal = wake.signal;
  let pending = false;
  let waiter: (() => void) | undefined;

  /** Waits `ms`, or until poked or stopped: 'poke' when poked. */
  const wait = (ms: number): Promise<'timer' | 'poke'> => {
    if (pending) {
      pending = false;
      return Promise.resolve('poke');
    }
    if (signal.aborted) return Promise.resolve('timer');
    return new Promise((resolve) => {
      const done = (why: 'timer' | 'poke'): void => {
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        waiter = undefined;
        resolve(why);
      };
      const onAbort = (): void => done('timer');
      const timer = setTimeout(() => done('timer'), ms);
      signal.addEventListener('abort', onAbort, { once: true });
      waiter = () => done('poke');
    });
  };

  async function readNext(client: PgPoolClientLike): Promise<NextDue> {
    return nextOf(await client.query(sql.next));
  }

  async function moveRound(client: PgPoolClientLike): Promise<Round> {
    let committed = false;
    try {
      const begun: unknown = await client.query(
        `BEGIN; SET LOCAL search_path = pg_catalog, pg_temp; SET LOCAL synchronous_commit = off; SET LOCAL idle_in_transaction_session_timeout = '30s'; ${withLiterals(sql.lockDue, [options.batchSize])}`,
      );
      const rows = lastRows(begun) as Array<{ id: string; key: string | null }>;
      if (rows.length > 0) crashPoint('relay.scheduled-after-lock');
      let movable = rows;
      const keyed = rows.filter((r) => r.key !== null);
      if (keyed.length > 0) {
        const slots = [...new Set(keyed.map((r) => keyLockSlot(r.key as string)))].sort((a, b) => a - b);
        const busy = new Set(((await client.query(withLiterals(sql.trySlots, [lockClass, slots]))).rows as Array<{ s: number }>).map((r) => r.s));
        if (busy.size > 0) movable = rows.filter((r) => r.key === null || !busy.has(keyLockSlot(r.key)));
      }
      if (movable.length === 0) {
        const result: unknown = await client.query(`COMMIT; ${sql.next}`);
        committed = true;
        return { locked: rows.length, moved: 0, duplicates: [], next: nextOf(result) };
      }
      const result: unknown = await client.query(`${withLiterals(sql.move, [movable.map((r) => r.id).join(',')])}; COMMIT; ${sql.next}`);
      committed = true;
      const first = (Array.isArray(result) ? result[0] : result) as { rows: Array<{ moved: number; duplicates: string[] | null }> };
      const moved = first.rows[0]?.moved ?? 0;
      const duplicates = first.rows[0]?.duplicates ?? [];
      return { locked: rows.length, moved, duplicates, next: nextOf(result) };
    } finally {
      if (!committed) await client.query('ROLLBACK').catch(() => undefined);
    }
  }

  /**
   * Takes the mover lock on a connection of its own, waiting while another relay holds it (a hot
   * standby: when that relay dies its session ends, and this one takes over within milliseconds).
   * Undefined at stop. The session is the mover's: destroyed, never handed back to the pool.
   */
  async function becomeMover(): Promise<CheckedOutClient | undefined> {
    let lease: CheckedOutClient;
    try {
      lease = await runtime.checkOut();
    } catch (error) {
      throw new LinkFailure('postgres', error);
    }
    try {
      // A frozen mover (SIGSTOP) is cut off by PostgreSQL after this long idle: its lock goes
      // with its session. It is never idle longer than a poll interval (its safety look).
      await lease.client.query(
        `SELECT pg_catalog.set_config('idle_session_timeout', $1, false), pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', false)`,
        [`${Math.max(10_000, options.pollIntervalMs * 10)}ms`],
      );
      const locked = lease.client.query('SELECT pg_catalog.pg_advisory_lock($1::pg_catalog.int4, 0)', [moverClass]).then(() => true);
      locked.catch(() => undefined);
      // Ends at stop without leaving a reaction on the relay's `stopped` promise per takeover.
      const outcome = (await untilAborted(locked, signal)) ?? false;
      if (!outcome) {
        lease.release(true);
        return undefined;
      }
      runtime.log.debug('relay: moving scheduled messages (this relay holds the mover lock)');
      return lease;
    } catch (error) {
      lease.release(true);
      throw new LinkFailure('postgres', error);
    }
  }

  async function run(): Promise<void> {
    // At start, a round at once: rows fell due while no relay ran.
    let plan: 'move' | 'look' = 'move';
    let stuck = 0;
    let failures = 0;
    let held: CheckedOutClient | undefined;
    while (!signal.aborted) {
      try {
        if (held === undefined || held.broken) {
          held?.release(true);
          held = await becomeMover();
          if (held === undefined) break;
          plan = 'move';
        }
        let round: Round | undefined;
        let next: NextDue;
        try {
          if (plan === 'move') {
            round = await moveRound(held.client);
            next = round.next;
          } else {
            next = await readNext(held.client);
          }
        } catch (error) {
          throw new LinkFailure('postgres', error);
        }
        failures = 0;
        if (round !== undefined && round.moved > 0) hooks.moved(round.moved, round.duplicates);
        if (next.due) {
          // More fell due, or the batch was full: go on at once. Due rows this round could not
          // take (a cancel holds them, their key's slot is busy): look again after a short
          // backoff, sooner if another row falls due first.
          if (plan === 'look' || (round !== undefined && round.moved > 0)) {
            stuck = 0;
            plan = 'move';
            continue;
          }
          stuck++;
          const backoff = Math.min(2 ** Math.min(stuck, 20), options.pollIntervalMs);
          await wait(next.nextMs === null ? backoff : Math.min(backoff, Math.ceil(next.nextMs) + 1));
          plan = 'move';
          continue;
        }
        stuck = 0;
        // Sleep until the earliest row is due (+1 ms: a timer may fire up to a millisecond
        // before the database's clock reaches the due time), at most a poll interval.
        const untilDue = next.nextMs === null ? Number.POSITIVE_INFINITY : Math.max(1, Math.ceil(next.nextMs) + 1);
        const why = await wait(Math.min(untilDue, options.pollIntervalMs));
        plan = why === 'timer' && untilDue <= options.pollIntervalMs ? 'move' : 'look';
      } catch (error) {
        // The session may be in any state, and its lock with it: start over on a new one.
        held?.release(true);
        held = undefined;
        failures++;
        runtime.batchFailed('scheduled move', error);
        await backOffAfterFailure(runtime, failures);
      }
    }
    held?.release(true);
  }

  return {
    run,
    poke() {
      if (waiter !== undefined) waiter();
      else pending = true;
    },
  };
}

/** The due state from the last statement of a (multi-statement) result. */
function nextOf(result: unknown): NextDue {
  const row = lastRows(result)[0] as { due?: boolean; next_ms?: number | null } | undefined;
  return { due: row?.due === true, nextMs: row?.next_ms ?? null };
}

/** The rows of the last statement of a multi-statement simple query (pg returns one result per statement). */
function lastRows(result: unknown): unknown[] {
  const last = (Array.isArray(result) ? result.at(-1) : result) as { rows?: unknown[] } | undefined;
  return last?.rows ?? [];
}
