import type { DeadLetterFilter } from '@mailroom/dlq';

/** The text fields of a filter, as named in the address and the forms. */
const TEXT_FIELDS = ['source', 'type', 'reason', 'group', 'text'] as const;

/** A filter as the page shows it back in its form: the fields as typed (times as typed too). */
export interface FilterForm {
  source: string;
  type: string;
  reason: string;
  group: string;
  text: string;
  since: string;
  until: string;
  pending: boolean;
}

/** A filter read from a query string or a form, with what could not be read. */
export interface ParsedFilter {
  filter: DeadLetterFilter;
  form: FilterForm;
  /** Problems to show the operator (a time that is not one); those fields are left out. */
  problems: string[];
}

const AGE = /^(\d{1,6})\s*(m|h|d)$/i;
const UNIT_MS: Record<string, number> = { m: 60_000, h: 3_600_000, d: 86_400_000 };

/**
 * A time as an operator types it: an age (`30m`, `2h`, `7d`: that long ago), or anything
 * `Date` reads (an ISO time, a `datetime-local` value). Undefined when it is not a time.
 */
export function parseTime(text: string, now = Date.now()): Date | undefined {
  const age = AGE.exec(text.trim());
  if (age !== null) return new Date(now - Number(age[1]) * (UNIT_MS[(age[2] as string).toLowerCase()] as number));
  const date = new Date(text);
  return Number.isNaN(date.getTime()) ? undefined : date;
}

/** Reads a filter from query parameters or form fields. Empty fields are no condition. */
export function parseFilter(params: URLSearchParams): ParsedFilter {
  const form: FilterForm = { source: '', type: '', reason: '', group: '', text: '', since: '', until: '', pending: false };
  const filter: DeadLetterFilter = {};
  const problems: string[] = [];
  for (const name of TEXT_FIELDS) {
    // Cut what anyone may type to a length no search needs; the store cuts again.
    const value = (params.get(name) ?? '').slice(0, 1000);
    form[name] = value;
    if (value.trim() !== '') filter[name] = name === 'text' ? value : value.trim();
  }
  for (const name of ['since', 'until'] as const) {
    const value = (params.get(name) ?? '').slice(0, 100);
    form[name] = value;
    if (value.trim() === '') continue;
    const time = parseTime(value);
    if (time === undefined) problems.push(`"${value}" is not a time (use 30m, 2h, 7d or an ISO time): ${name} is ignored`);
    else filter[name] = time;
  }
  const pending = params.get('pending');
  form.pending = pending === '1' || pending === 'on' || pending === 'true';
  if (form.pending) filter.pendingOnly = true;
  return { filter, form, problems };
}

/** The query string of a filter form (only the fields that are set), for links and hidden fields. */
export function filterQuery(form: FilterForm): URLSearchParams {
  const query = new URLSearchParams();
  for (const name of [...TEXT_FIELDS, 'since', 'until'] as const) if (form[name] !== '') query.set(name, form[name]);
  if (form.pending) query.set('pending', '1');
  return query;
}

/** True when the filter has at least one condition (a bulk action needs one). */
export function hasCondition(filter: DeadLetterFilter): boolean {
  return Object.values(filter).some((v) => v !== undefined && v !== '' && v !== false);
}
