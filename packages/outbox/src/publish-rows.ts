import type { ConfirmChannel } from 'amqplib';
import { describeError } from '@mailroom/core';
import { PUBLISH_LIMITS, crashPoint, publishLimitProblem, tracingIsOff } from '@mailroom/core/internal';
import { isPreconditionFailed } from './guarded-channel.js';
import type { ConfirmPublisher, PreparedRow, RowPublishOutcome } from './publisher.js';
import { PRECONDITION_FAILED_PREFIX, type OutboxRow } from './relay-sql.js';

/**
 * What happened to one claimed row: a publish outcome (`unpublishable` included), `overLimit`
 * (never sent: over `maxMessageBytes`), or `skipped` (not sent in this batch: an earlier event of
 * its key failed).
 */
export type RowOutcome = RowPublishOutcome | { kind: 'overLimit'; error: string } | { kind: 'skipped' };

/** Limits of {@link publishRows}. */
export interface PublishRowsOptions {
  /** Publish each key's rows one after the other, each after the previous one's confirm. */
  ordered: boolean;
  maxMessageBytes: number;
  /** How long the batch waits for its confirms. */
  publishTimeoutMs: number;
}

const SKIPPED: RowOutcome = { kind: 'skipped' };
const CONFIRM_TIMEOUT: RowOutcome = { kind: 'failed', error: 'no publisher confirm before the deadline' };
const NOT_SENT: RowOutcome = { kind: 'failed', error: 'not sent before the deadline (the channel stayed full or closed)' };

// A UTF-16 code unit encodes to at most 3 bytes of UTF-8: a string of at most 85 of them is
// within the AMQP short-string limit without measuring it.
const SURELY_SHORT = Math.floor(PUBLISH_LIMITS.shortStringBytes / 3);
// A header table holding only the key (name, tags, lengths: under 64 bytes) fits under 64 KiB.
const SURELY_FITTING_KEY = Math.floor((PUBLISH_LIMITS.headerTableBytes - 64) / 3);

/**
 * Why a row can never be published (the AMQP limits), or undefined. The common row (short names,
 * no stored headers) is passed by its string lengths alone; anything else is measured by core's
 * `publishLimitProblem`.
 */
export function rowLimitProblem(row: OutboxRow, headers: Record<string, unknown> | undefined): string | undefined {
  const short =
    row.exchange.length <= SURELY_SHORT && row.routing_key.length <= SURELY_SHORT && row.type.length <= SURELY_SHORT && row.message_id.length <= SURELY_SHORT;
  const plainHeaders = headers === undefined || (row.headers === '{}' && (row.key === null || row.key.length <= SURELY_FITTING_KEY));
  if (short && plainHeaders) return undefined;
  return publishLimitProblem({ exchange: row.exchange, routingKey: row.routing_key, type: row.type, messageId: row.message_id, headers: headers ?? {} });
}

/**
 * The confirms of one batch: each sent row's outcome is written once (a confirm after the
 * deadline is ignored); {@link whenSettled} resolves when every row sent so far has one.
 */
class BatchConfirms {
  readonly #outcomes: RowOutcome[];
  /** 1 for each row sent and waiting for its outcome (a flag per row: no allocation per row). */
  readonly #waiting: Uint8Array;
  #open = 0;
  readonly #waiters = new Map<number, (outcome: RowOutcome) => void>();
  #idle: (() => void) | undefined;

  constructor(outcomes: RowOutcome[]) {
    this.#outcomes = outcomes;
    this.#waiting = new Uint8Array(outcomes.length);
  }

  /** Marks row `i` as sent; its outcome comes through {@link settle}. */
  opened(i: number): void {
    if (this.#waiting[i] === 1) return;
    this.#waiting[i] = 1;
    this.#open++;
  }

  /** Row `i`'s outcome; ignored unless the row is still waiting for one. */
  settle(i: number, outcome: RowOutcome): void {
    if (this.#waiting[i] !== 1) return;
    this.#waiting[i] = 0;
    this.#open--;
    this.#outcomes[i] = outcome;
    const waiter = this.#waiters.get(i);
    if (waiter !== undefined) {
      this.#waiters.delete(i);
      waiter(outcome);
    }
    if (this.#open === 0 && this.#idle !== undefined) {
      const idle = this.#idle;
      this.#idle = undefined;
      idle();
    }
  }

  /** Resolves with row `i`'s outcome once it has one. */
  outcomeOf(i: number): Promise<RowOutcome> {
    if (this.#waiting[i] !== 1) return Promise.resolve(this.#outcomes[i] as RowOutcome);
    return new Promise((resolve) => this.#waiters.set(i, resolve));
  }

  /** Resolves when every row sent so far has its outcome. */
  whenSettled(): Promise<void> {
    if (this.#open === 0) return Promise.resolve();
    return new Promise((resolve) => (this.#idle = resolve));
  }

  /** The deadline passed: every row still waiting fails (and later confirms are ignored). */
  expire(): void {
    for (let i = 0; i < this.#waiting.length; i++) if (this.#waiting[i] === 1) this.settle(i, CONFIRM_TIMEOUT);
  }
}

type WellFormed = string & { isWellFormed(): boolean };

/**
 * Drops the payload text of a row whose body went out as a ready-made frame: the batch keeps its
 * rows until COMMIT, and 1 KiB of text per row kept that long is most of what the garbage
 * collector copies and promotes while a backlog drains. The bytes stay in the frame's slab, and
 * {@link restorePayloads} decodes them back for a row that was not confirmed (its dead letter
 * stores the payload). A string that is not well-formed UTF-16 (a lone surrogate, which no text
 * read from PostgreSQL holds) would not come back the same: it is kept.
 */
function releasePayload(p: PreparedRow): void {
  if (p.bodyBytes > 0 && (p.row.payload as WellFormed).isWellFormed()) p.row.payload = '';
  else p.slab = undefined;
}

/** Gives every row whose payload was released and that was not confirmed its payload back. */
function restorePayloads(prepared: ReadonlyArray<PreparedRow | undefined>, outcomes: readonly RowOutcome[]): void {
  for (let i = 0; i < prepared.length; i++) {
    const p = prepared[i];
    if (p?.slab === undefined || (outcomes[i] as RowOutcome).kind === 'confirmed') continue;
    p.row.payload = p.slab.toString('utf8', p.bodyAt, p.bodyAt + p.bodyBytes);
    p.slab = undefined;
  }
}

/**
 * Publishes a claimed batch and returns one outcome per row, in row order; never rejects for a
 * row's failure. Without ordering every publish is written at once (waiting only when the
 * channel's write buffer is full: amqplib's `publish` returned false) and the confirms are
 * awaited together, each delivered by callback.
 *
 * What can never be published is found without a retry loop: a row over `maxMessageBytes` or the
 * AMQP limits is not sent (`overLimit`, `unpublishable`); a publish amqplib cannot encode is
 * `unpublishable`. A broker that closes the channel with 406 PRECONDITION_FAILED (a body over its
 * `max_message_size`) fails every publish still unconfirmed on it, so no single row can be blamed:
 * those rows are retried as suspects (their `last_error` starts with
 * {@link PRECONDITION_FAILED_PREFIX}), and a suspect is published alone, after the others, so a
 * 406 on its own channel is its own and it becomes `unpublishable`.
 */
export async function publishRows(publisher: ConfirmPublisher, rows: readonly OutboxRow[], options: PublishRowsOptions): Promise<RowOutcome[]> {
  const outcomes: RowOutcome[] = new Array<RowOutcome>(rows.length).fill(SKIPPED);
  const prepared: Array<PreparedRow | undefined> = new Array<PreparedRow | undefined>(rows.length);
  const pending: number[] = [];
  const exchanges: string[] = [];
  for (let i = 0; i < rows.length; i++) {
    const row = rows[i] as OutboxRow;
    const bodyBytes = Buffer.byteLength(row.payload, 'utf8');
    if (bodyBytes > options.maxMessageBytes) {
      outcomes[i] = { kind: 'overLimit', error: `payload of ${bodyBytes} bytes exceeds maxMessageBytes ${options.maxMessageBytes}` };
      continue;
    }
    const headers = publisher.headersOf(row);
    const problem = rowLimitProblem(row, headers);
    if (problem !== undefined) {
      outcomes[i] = { kind: 'unpublishable', error: problem };
      continue;
    }
    prepared[i] = { row, bodyBytes, headers, slab: undefined, bodyAt: 0 };
    pending.push(i);
    if (exchanges[exchanges.length - 1] !== row.exchange) exchanges.push(row.exchange);
  }
  if (pending.length === 0) return outcomes;
  const missing = await publisher.ensureExchanges(exchanges);
  const confirms = new BatchConfirms(outcomes);
  const traced = !tracingIsOff();
  let timedOut = false;
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<void>(
    (resolve) =>
      (timer = setTimeout(() => {
        timedOut = true;
        confirms.expire();
        resolve();
      }, options.publishTimeoutMs)),
  );
  /** Writes row `i`; returns false when the channel's buffer is full. */
  const send = (i: number, channel: ConfirmChannel): boolean => {
    const p = prepared[i] as PreparedRow;
    const absent = missing.get(p.row.exchange);
    if (absent !== undefined) {
      outcomes[i] = { kind: 'returned', error: absent };
      return true;
    }
    if (timedOut) {
      outcomes[i] = NOT_SENT;
      return true;
    }
    confirms.opened(i);
    const written = publisher.publish(channel, p, (outcome) => confirms.settle(i, outcome), traced);
    if (p.slab !== undefined) releasePayload(p);
    return written;
  };
  const publishOne = async (i: number, channel: ConfirmChannel): Promise<RowOutcome> => {
    if (!send(i, channel)) await publisher.drained(channel, deadline);
    return confirms.outcomeOf(i);
  };
  // One chain per key (ordering) or per row: a chain's rows go one after the other, each after
  // the previous one's confirm, so a nack or a return never lets a later event of a key overtake.
  const chains = new Map<string, number[]>();
  const regular: number[][] = [];
  const suspects: number[][] = [];
  // Without ordering, every row but the suspects in one list (the rows are sent one after the other).
  const loose: number[] = [];
  for (const i of pending) {
    const row = rows[i] as OutboxRow;
    if (!options.ordered && !row.suspect) {
      loose.push(i);
      continue;
    }
    if (!options.ordered || row.key === null) {
      (row.suspect ? suspects : regular).push([i]);
      continue;
    }
    const chain = chains.get(row.key);
    if (chain) chain.push(i);
    else chains.set(row.key, [i]);
  }
  for (const chain of chains.values()) (chain.some((i) => (rows[i] as OutboxRow).suspect) ? suspects : regular).push(chain);
  if (loose.length > 0) regular.push(loose);
  try {
    if (regular.length > 0) {
      const channel = await publisher.channel();
      if (!options.ordered) {
        for (const i of loose) {
          // Back-pressure: a full write buffer is waited out, never grown without bound.
          if (!send(i, channel)) await publisher.drained(channel, deadline);
        }
        crashPoint('relay.after-publish-before-confirm');
        await confirms.whenSettled();
      } else {
        await Promise.all(
          regular.map(async (chain) => {
            for (const i of chain) if ((await publishOne(i, channel)).kind !== 'confirmed') break;
          }),
        );
      }
      const closed = publisher.closeErrorOf(channel);
      if (isPreconditionFailed(closed)) {
        for (const chain of regular) {
          for (const i of chain) {
            const o = outcomes[i] as RowOutcome;
            if (o.kind === 'failed') outcomes[i] = { kind: 'failed', error: `${PRECONDITION_FAILED_PREFIX} ${describeError(closed)} (retried alone)` };
          }
        }
      }
    }
    // Suspects alone, one publish in flight at a time, each on a channel of its own if need be.
    for (const chain of suspects) {
      for (const i of chain) {
        const channel = await Promise.race([publisher.channel(), deadline.then(() => undefined)]);
        if (channel === undefined) {
          outcomes[i] = { kind: 'failed', error: 'no channel before the deadline' };
          break;
        }
        const outcome = await publishOne(i, channel);
        const closed = publisher.closeErrorOf(channel);
        if (outcome.kind === 'failed' && isPreconditionFailed(closed)) {
          outcomes[i] = { kind: 'unpublishable', error: `the broker refused it: ${describeError(closed)}` };
        }
        if (outcome.kind !== 'confirmed') break;
      }
    }
  } finally {
    clearTimeout(timer);
    restorePayloads(prepared, outcomes);
  }
  // A confirm may still arrive after the deadline: a fresh channel keeps it from being taken
  // for the confirm of a later publish.
  if (timedOut && outcomes.some((o) => o.kind === 'failed')) await publisher.reset();
  return outcomes;
}
