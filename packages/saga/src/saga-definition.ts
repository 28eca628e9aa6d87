import type { z } from 'zod/v4';
import { MailroomError, type MessageContract, type OutgoingMessage, type PayloadOf, type Queryable } from '@mailroom/core';
import type { Executor } from '@mailroom/core/internal';
import type { MessageMetadata } from '@mailroom/inbox';

/** Where an instance is: `running` until a step calls `complete()` or `fail()`; both end it. */
export type SagaStatus = 'running' | 'completed' | 'failed';

/** Every status, in the order the CLI and the gauge list them. */
export const SAGA_STATUSES: readonly SagaStatus[] = ['running', 'completed', 'failed'];

/** When a message sent by a step is published: at once (neither given), after `delay` ms, or at `deliverAt`. */
export interface SendOptions {
  /** Publish no earlier than this many milliseconds after the commit. */
  delay?: number;
  /** Publish no earlier than this time. Give `delay` or `deliverAt`, not both. */
  deliverAt?: Date;
}

/** The instance a step runs for, as it was when the step locked it. */
export interface SagaInstanceInfo {
  /** The saga's name. */
  saga: string;
  /** The instance id: what the step's `correlate` returned. */
  id: string;
  /** The status before this step (`running` for a new instance). */
  status: SagaStatus;
  /** Steps applied before this one (0 for a new instance). */
  version: number;
  /** True when this step creates the instance (a `starts` step that found none). */
  isNew: boolean;
}

/** What a step's handler receives. */
export interface StepContext<TState, TPayload, TStarts extends boolean = false, TTx = Queryable> {
  /**
   * The instance's state, parsed by the saga's schema. `undefined` only in a `starts` step that
   * creates the instance.
   */
  state: TStarts extends true ? TState | undefined : TState;
  /** The message's payload, validated by its contract. */
  payload: TPayload;
  /** About the delivery (its `messageId` identifies a timeout the saga scheduled). */
  message: MessageMetadata;
  /** The consumer's inbox transaction: your own writes commit with the step. Never COMMIT it. */
  tx: TTx;
  /** The same transaction behind mailroom's `query(text, params)` seam. */
  db: Executor;
  /** The instance. */
  instance: SagaInstanceInfo;
  /** Aborted when the consumer stops and its shutdown timeout runs out. */
  signal: AbortSignal;
  /**
   * Stores commands or events in the outbox, in this transaction: they leave if and only if the
   * step commits. With `delay` or `deliverAt` they are published no earlier than that.
   */
  send: (messages: OutgoingMessage | readonly OutgoingMessage[], options?: SendOptions) => Promise<void>;
  /**
   * Schedules a message to this saga (a timeout): its type must be one of the saga's steps.
   * Returns its message id; keep it in the state to cancel it, or to tell the current timeout
   * from one that fires after the saga moved on.
   */
  schedule: (message: OutgoingMessage, options: SendOptions) => Promise<string>;
  /**
   * Removes a scheduled message that has not been published yet, in this transaction; false when
   * it was already published (or never scheduled): its step will still see it and must ignore it.
   */
  cancel: (messageId: string) => Promise<boolean>;
  /** Ends the instance as `completed` once this step commits. */
  complete: () => void;
  /** Ends the instance as `failed` once this step commits (after its compensations were sent). */
  fail: () => void;
}

/** How a step treats a message for an instance that has ended (completed or failed). */
export type AfterEnd = 'ignore' | 'handle';

/** The definition of one step, given to {@link step}. */
export interface StepDefinition<TContract extends MessageContract, TState, TInput, TStarts extends boolean = false, TTx = Queryable> {
  /**
   * May this message type create an instance? Default: false. A message of a type that may not
   * find no instance: it fails and is retried through the consumer's retry policy (its start may
   * still be on its way), then dead-lettered.
   */
  starts?: TStarts;
  /**
   * The instance id this message belongs to (an order id, say): 1 to 200 characters, no control
   * characters. A function that throws, or returns anything else, sends the message to the dead
   * letters at once.
   */
  correlate: (payload: PayloadOf<TContract>, message: MessageMetadata) => string;
  /**
   * A message for an instance that has ended: `ignore` records it in the history and does not
   * call the handler; `handle` calls it (the status stays ended; a late payment can be refunded
   * there). Default: `ignore`.
   */
  afterEnd?: AfterEnd;
  /** Applies the message: returns the new state (validated by the saga's schema before it is stored). */
  handle: (context: StepContext<TState, PayloadOf<TContract>, TStarts, TTx>) => Promise<TInput>;
}

/** A step as the saga keeps it (see {@link step}). */
export interface SagaStep<TState = unknown, TInput = unknown, TTx = Queryable> {
  /** The message contract: its type selects the step. */
  readonly contract: MessageContract;
  /** May it create an instance? */
  readonly starts: boolean;
  /** What it does with a message for an ended instance. */
  readonly afterEnd: AfterEnd;
  /** The instance id of a message. */
  readonly correlate: (payload: unknown, message: MessageMetadata) => unknown;
  /** The handler. */
  readonly handle: (context: StepContext<TState, unknown, boolean, TTx>) => Promise<TInput>;
}

/**
 * Binds a step of a saga to a message contract: how the message finds its instance, whether it
 * may start one, and the handler that returns the new state. Written inside `defineSaga({ steps })`
 * through the `step` that `steps: (step) => […]` receives, it takes the saga's state type from there.
 */
export function step<TContract extends MessageContract, TState, TInput, TStarts extends boolean = false, TTx = Queryable>(
  contract: TContract,
  definition: StepDefinition<TContract, TState, TInput, TStarts, TTx>,
): SagaStep<TState, TInput, TTx> {
  if (typeof contract !== 'object' || contract === null || typeof contract.type !== 'string' || typeof contract.parse !== 'function') {
    throw new MailroomError('INVALID_CONFIG', 'A saga step needs a message contract from defineMessage() as its first argument.');
  }
  if (typeof definition !== 'object' || definition === null || typeof definition.correlate !== 'function' || typeof definition.handle !== 'function') {
    throw new MailroomError('INVALID_CONFIG', `The saga step for "${contract.type}" needs correlate(payload) and handle(context) functions.`);
  }
  const afterEnd = definition.afterEnd ?? 'ignore';
  if (afterEnd !== 'ignore' && afterEnd !== 'handle') {
    throw new MailroomError('INVALID_CONFIG', `The saga step for "${contract.type}": afterEnd must be "ignore" or "handle" (got ${JSON.stringify(afterEnd)}).`);
  }
  return {
    contract,
    starts: definition.starts === true,
    afterEnd,
    correlate: definition.correlate as SagaStep['correlate'],
    handle: definition.handle as SagaStep<TState, TInput, TTx>['handle'],
  };
}

/** The definition of a saga, given to {@link defineSaga}. */
export interface SagaDefinition<TSchema extends z.ZodType, TTx = Queryable> {
  /** The saga's name, stored with each instance: 1 to 100 of a-z 0-9 _ . -, starting with a letter or digit. Keep it stable. */
  name: string;
  /**
   * The zod schema of the state, parsed when a step loads it and when it stores the handler's
   * result. The state is stored as JSON: its output must parse again (strings for dates, no
   * one-way transforms).
   */
  state: TSchema;
  /**
   * The steps, one per message type, at least one of them `starts` an instance: a function that
   * receives {@link step} typed with this saga's state and returns the list.
   */
  steps: (step: StepFactory<z.output<TSchema>, z.input<TSchema>, TTx>) => ReadonlyArray<SagaStep<z.output<TSchema>, z.input<TSchema>, TTx>>;
}

/** {@link step} with the state type of one saga (what `defineSaga({ steps: (step) => […] })` passes). */
export type StepFactory<TState, TInput, TTx = Queryable> = <TContract extends MessageContract, TStarts extends boolean = false>(
  contract: TContract,
  definition: StepDefinition<TContract, TState, TInput, TStarts, TTx>,
) => SagaStep<TState, TInput, TTx>;

/** A defined saga: hand it to `sagaHandlers` for a consumer. */
export interface Saga<TSchema extends z.ZodType = z.ZodType, TTx = Queryable> {
  /** The saga's name. */
  readonly name: string;
  /** The state schema. */
  readonly state: TSchema;
  /** The steps by message type. */
  readonly steps: ReadonlyMap<string, SagaStep<z.output<TSchema>, z.input<TSchema>, TTx>>;
}

const SAGA_NAME = /^[a-z0-9][a-z0-9_.-]{0,99}$/;

/**
 * Defines a saga: its name, its state schema and its steps. Checked here: the name, one step per
 * message type, at least one step that starts an instance.
 *
 * ```ts
 * const orderSaga = defineSaga({
 *   name: 'order-fulfilment',
 *   state: z.object({ status: z.string(), timeoutId: z.string().optional() }),
 *   steps: (step) => [step(OrderPlaced, { starts: true, correlate: (p) => p.orderId, handle: async () => ({ status: 'placed' }) })],
 * });
 * ```
 */
export function defineSaga<TSchema extends z.ZodType, TTx = Queryable>(definition: SagaDefinition<TSchema, TTx>): Saga<TSchema, TTx> {
  if (typeof definition !== 'object' || definition === null) throw new MailroomError('INVALID_CONFIG', 'defineSaga needs { name, state, steps }.');
  const { name, state } = definition;
  if (typeof name !== 'string' || !SAGA_NAME.test(name)) {
    throw new MailroomError('INVALID_CONFIG', `Invalid saga name ${JSON.stringify(name)}: use 1 to 100 of a-z 0-9 _ . - (starting with a letter or digit).`);
  }
  if (typeof state !== 'object' || state === null || typeof (state as { safeParse?: unknown }).safeParse !== 'function') {
    throw new MailroomError('INVALID_CONFIG', `Saga "${name}": state must be a zod schema.`);
  }
  if (typeof definition.steps !== 'function') {
    throw new MailroomError('INVALID_CONFIG', `Saga "${name}": steps must be a function, (step) => [step(Contract, { correlate, handle }), …].`);
  }
  const steps: unknown = definition.steps(step);
  if (!Array.isArray(steps) || steps.length === 0) throw new MailroomError('INVALID_CONFIG', `Saga "${name}": give at least one step.`);
  const byType = new Map<string, SagaStep<z.output<TSchema>, z.input<TSchema>, TTx>>();
  for (const s of steps as ReadonlyArray<SagaStep<z.output<TSchema>, z.input<TSchema>, TTx>>) {
    if (typeof s !== 'object' || s === null || typeof s.handle !== 'function' || typeof s.contract?.type !== 'string') {
      throw new MailroomError('INVALID_CONFIG', `Saga "${name}": each step must come from step(contract, { correlate, handle }).`);
    }
    if (byType.has(s.contract.type)) {
      throw new MailroomError('INVALID_CONFIG', `Saga "${name}": two steps for message type "${s.contract.type}"; give each type one step.`);
    }
    byType.set(s.contract.type, s);
  }
  if (![...byType.values()].some((s) => s.starts)) {
    throw new MailroomError('INVALID_CONFIG', `Saga "${name}": no step starts an instance; mark the first message's step with starts: true.`);
  }
  return { name, state, steps: byType };
}
