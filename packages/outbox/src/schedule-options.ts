import { MailroomError } from '@mailroom/core';

/**
 * The furthest ahead a message can be scheduled: 10 years (365.25-day years), in ms. Beyond it a
 * date is almost certainly a unit mistake (seconds taken for ms, a year typed wrong), and a row
 * that waits decades is a row nobody will remember to cancel.
 */
export const MAX_SCHEDULE_MS = 10 * 365.25 * 24 * 60 * 60 * 1000;

/** When the messages of one `enqueue` call are due: at a date, or a delay after the insert. */
export type ScheduleSpec = { kind: 'at'; at: Date } | { kind: 'delay'; ms: number };

function refuse(problem: string, field: string): never {
  throw new MailroomError('INVALID_MESSAGE', `Cannot enqueue message: ${problem}.`, { details: { field } });
}

/**
 * Validates `deliverAt` / `delay` of an `enqueue` call before anything is stored; undefined when
 * neither is given (an ordinary enqueue). A `deliverAt` in the past is allowed (due at once, as
 * a saga's overdue timeout is), back to the Unix epoch; a Date from another realm is accepted.
 */
export function resolveSchedule(options: { deliverAt?: unknown; delay?: unknown }): ScheduleSpec | undefined {
  const { deliverAt, delay } = options;
  if (deliverAt !== undefined && delay !== undefined) refuse('give deliverAt or delay, not both', 'deliverAt');
  if (deliverAt !== undefined) {
    if (Object.prototype.toString.call(deliverAt) !== '[object Date]') refuse(`deliverAt must be a Date, got ${describe(deliverAt)}`, 'deliverAt');
    const ms = (deliverAt as Date).getTime();
    if (Number.isNaN(ms)) refuse('deliverAt is an invalid Date', 'deliverAt');
    if (ms < 0) refuse(`deliverAt ${(deliverAt as Date).toISOString()} is before 1970`, 'deliverAt');
    if (ms - Date.now() > MAX_SCHEDULE_MS) refuse(`deliverAt ${(deliverAt as Date).toISOString()} is more than 10 years ahead`, 'deliverAt');
    return { kind: 'at', at: new Date(ms) };
  }
  if (delay !== undefined) {
    if (typeof delay !== 'number') refuse(`delay must be a number of milliseconds, got ${describe(delay)}`, 'delay');
    if (!Number.isFinite(delay)) refuse(`delay must be finite, got ${delay}`, 'delay');
    if (delay < 0) refuse(`delay must not be negative, got ${delay}`, 'delay');
    if (delay > MAX_SCHEDULE_MS) refuse(`delay ${delay} ms is more than 10 years`, 'delay');
    return { kind: 'delay', ms: delay };
  }
  return undefined;
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (typeof value === 'string') return `a string (${JSON.stringify(value.slice(0, 40))})`;
  return `a ${typeof value}`;
}
