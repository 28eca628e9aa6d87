/** Options of `check`. */
export interface CheckOptions {
  /** Whether events of one key must take effect in commit order. Default: false. */
  ordering?: boolean;
  /** Ids listed per anomaly in the report, at most. Default: 50. */
  maxIds?: number;
  /**
   * The consumers' attempts per message (their retry policy's `maxAttempts`): after the heal no
   * message may be delivered, handled or requeued more often than this allows. Default: the
   * harness's own policy (`CHAOS_RETRY`).
   */
  maxAttempts?: number;
  /** Deliveries (or handler runs) of one message within one second that make a hot loop. Default: 20. */
  hotLoopPerSecond?: number;
}

/** The safety anomalies, each a list of event ids (or, for exits, processes). Any non-empty list makes the run invalid. */
export interface Anomalies {
  /** Committed, acknowledged to the producer, and never applied (nor stuck, nor dead-lettered). */
  lostAcknowledged: string[];
  /** Committed with an unknown outcome for the producer (the COMMIT reply was lost), and never applied. */
  lostUnknown: string[];
  /** Applied more than once (more than one ledger row). */
  duplicatedEffect: string[];
  /** Applied or marked handled although its transaction never committed. */
  phantom: string[];
  /** Applied before an event of the same key that committed earlier (ordering on). */
  reordered: string[];
  /** Committed and not applied after the drain, but still in the outbox or a queue. */
  stuck: string[];
  /** A committed (non-poison) event in the dead-letter store, or a dead letter of nothing the harness sent. */
  unexpectedDeadLetter: string[];
  /** An injected poison message that took effect or did not end in the dead-letter store. */
  escapedPoison: string[];
  /**
   * An injected hostile message (oversized headers, NUL bytes, forged mailroom headers, deep
   * JSON, an unpublishable outbox row, a conflicting duplicate) that took effect, was lost
   * without a dead letter, is stuck, was stored with what its sender forged, or was accepted
   * silently: `findings` says which.
   */
  escapedHostile: string[];
  /**
   * A message delivered, handled or requeued more often than its attempts allow: many times
   * within one second (a hot loop), or, after the heal, more often than a fresh message could
   * need. `findings` gives the counts.
   */
  poisonLoop: string[];
  /** A relay or consumer process that exited although the harness did not kill, crash or stop it (`process (pid)`). */
  unexpectedExit: string[];
  /**
   * Saga workload: an order both charged and cancelled, confirmed without its charge or its
   * stock, cancelled with its stock kept, a SKU whose stock is not conserved, or a saga that
   * ended later than its bound. `findings` says which.
   */
  sagaViolation: string[];
}

/** The anomaly names, in report order. */
export const ANOMALY_KINDS: ReadonlyArray<keyof Anomalies> = [
  'lostAcknowledged',
  'lostUnknown',
  'duplicatedEffect',
  'phantom',
  'reordered',
  'stuck',
  'unexpectedDeadLetter',
  'escapedPoison',
  'escapedHostile',
  'poisonLoop',
  'unexpectedExit',
  'sagaViolation',
];

/** Why one id is in an anomaly list: the counts or facts behind it. */
export interface Finding {
  anomaly: keyof Anomalies;
  id: string;
  detail: string;
}

/** An empty anomaly record. */
export function noAnomalies(): Anomalies {
  return Object.fromEntries(ANOMALY_KINDS.map((k) => [k, []])) as unknown as Anomalies;
}

/** Latency quantiles in ms, from the domain commit to the first effect. */
export interface LatencyQuantiles {
  count: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

/** What the checker concludes. */
export interface CheckResult {
  /** True when every anomaly list is empty and the run could be judged. */
  valid: boolean;
  /** Why the run could not be judged (empty when it could). */
  unjudgeable: string[];
  counts: {
    transactions: number;
    committedTransactions: number;
    rolledBackTransactions: number;
    unknownOutcomeTransactions: number;
    committedEvents: number;
    effects: number;
    /** Deliveries the inbox found duplicates (allowed: they commit nothing). */
    duplicateDeliveries: number;
    injectedDuplicates: number;
    injectedPoison: number;
    /** Hostile messages and unpublishable outbox rows the nemesis injected. */
    injectedHostile: number;
    deadLetters: number;
    faults: number;
  } & { [K in keyof Anomalies]: number };
  /** Injected faults by kind (`ok` or `info` nemesis operations). */
  faults: Record<string, number>;
  anomalies: Anomalies;
  /** The facts behind the anomalies that need more than an id (hostile messages, loops, exits). */
  findings: Finding[];
  latencyMs: LatencyQuantiles;
  /** The saga workload's outcomes (only in a saga run; `latencyMs` is then commit-to-terminal). */
  saga?: SagaOutcomes;
}

/** How the sagas of a saga run ended. */
export interface SagaOutcomes {
  /** Committed orders (each one saga). */
  orders: number;
  confirmed: number;
  /** Cancelled orders by reason (out-of-stock, payment-declined, reserve-timeout, charge-timeout). */
  cancelled: Record<string, number>;
  /** Payments charged late and refunded by the void (a timeout that raced the charge). */
  refunded: number;
  /**
   * Replies or timeouts that found their saga past the step: applied as no-ops by a running
   * instance, or recorded as ignored by an ended one.
   */
  late: number;
  /** Sagas cancelled by a timeout while a fault was on (or within a second after it). */
  timeoutsDuringFaults: number;
  /** The bound every saga had to end within, in ms of its order's commit (`saga.boundMs` plus the drain's time). */
  boundMs: number;
}
