import { describeError } from '@mailroom/core';

/** The two links a relay depends on. */
export type RelayLink = 'postgres' | 'rabbitmq';

/** What a failed batch is blamed on: a link, or `other` (a bug, say). */
export type FailureCause = RelayLink | 'other';

/** The state of one link, as `/readyz` shows it. */
export interface LinkStatus {
  /** True while the link works (the last batch reached PostgreSQL; RabbitMQ is connected). */
  up: boolean;
  /** Why it is down, when it is (secret-free). */
  error: string | undefined;
  /** When it last changed state (the relay's start at first). */
  since: Date;
}

/** The state of both links of a relay. */
export interface RelayLinks {
  postgres: LinkStatus;
  rabbitmq: LinkStatus;
}

/**
 * An error raised inside a batch, tagged with the link it came from, so the loop can count the
 * failure by link. Internal: the loops catch it and report `cause`.
 */
export class LinkFailure extends Error {
  constructor(
    readonly link: RelayLink,
    override readonly cause: unknown,
  ) {
    super(describeError(cause));
    this.name = 'LinkFailure';
  }
}

/** The link a failure is blamed on. */
export function causeOf(error: unknown): FailureCause {
  return error instanceof LinkFailure ? error.link : 'other';
}

/** The error a failure stands for (a `LinkFailure`'s cause). */
export function unwrapFailure(error: unknown): unknown {
  return error instanceof LinkFailure ? error.cause : error;
}

/**
 * Tracks whether each link is up and counts outages: a link that goes down (from up, or before
 * it was ever up) is one outage, however many batches fail until it is back.
 */
export class LinkHealth {
  readonly #state: Record<RelayLink, LinkStatus & { known: boolean }>;

  constructor(private readonly onOutage: (link: RelayLink, error: string) => void) {
    const now = new Date();
    this.#state = {
      postgres: { up: false, error: 'not checked yet', since: now, known: false },
      rabbitmq: { up: false, error: 'not connected yet', since: now, known: false },
    };
  }

  /** The link works. */
  up(link: RelayLink): void {
    const s = this.#state[link];
    if (s.up) return;
    this.#state[link] = { up: true, error: undefined, since: new Date(), known: true };
  }

  /** The link failed: the first failure of an outage counts it. */
  down(link: RelayLink, error: string): void {
    const s = this.#state[link];
    if (!s.up && s.known) {
      s.error = error;
      return;
    }
    this.#state[link] = { up: false, error, since: new Date(), known: true };
    this.onOutage(link, error);
  }

  /** Whether a link is up now. */
  isUp(link: RelayLink): boolean {
    return this.#state[link].up;
  }

  /** A copy of both links' states. */
  snapshot(): RelayLinks {
    const copy = (s: LinkStatus): LinkStatus => ({ up: s.up, error: s.error, since: s.since });
    return { postgres: copy(this.#state.postgres), rabbitmq: copy(this.#state.rabbitmq) };
  }
}
