import type { z } from 'zod/v4';
import { MailroomError } from '@mailroom/core';

/** How a variable's text becomes the option's value, from the zod type of the option. */
type EnvKind = 'string' | 'int' | 'number' | 'bool';

/** One environment variable a command reads: one field of an options schema. */
export interface EnvVar {
  /** `meta().env`, or `MAILROOM_` + the field's name in upper snake case. */
  name: string;
  /** The option it sets: `['batchSize']`, or `['topology', 'queue']` for a nested one. */
  path: readonly string[];
  /** From `meta().description`. */
  description: string;
  kind: EnvKind;
  /** The default as `--help` shows it (`meta().defaultText` when it is computed); undefined when none. */
  defaultText: string | undefined;
  /** True when the option has neither a default nor is optional. */
  required: boolean;
}

/** Problems found in one field, or its value. */
type FieldResult = { ok: true; value: unknown } | { ok: false; issues: ReadonlyArray<{ path: readonly PropertyKey[]; message: string }> };

/** The variables of a command, and how their values become options of type `T`. */
export interface EnvSpec<T> {
  readonly vars: readonly EnvVar[];
  /** Checks each field of `input` (built from the variables) with its zod schema. */
  readonly fields: ReadonlyArray<{ key: string; parse(value: unknown): FieldResult }>;
  /** Type only: what {@link readEnv} returns. */
  readonly _output?: T;
}

/** What {@link readEnv} returns for a spec. */
export type EnvOf<S> = S extends EnvSpec<infer T> ? T : never;

// Every `MAILROOM_*` name some command reads, plus core's crash points (read by the library) and
// the log level and format (accepted by every command). Any other one is a typo, refused by name
// rather than silently ignored.
const declared = new Set<string>(['MAILROOM_CRASH_POINTS', 'MAILROOM_LOG_LEVEL', 'MAILROOM_LOG_FORMAT']);

interface Def {
  type: string;
  innerType?: z.ZodType;
  options?: readonly z.ZodType[];
  shape?: Record<string, z.ZodType>;
  defaultValue?: unknown;
}

const defOf = (schema: z.ZodType): Def => (schema as unknown as { def: Def }).def;
const WRAPPERS = new Set(['default', 'prefault', 'optional', 'nullable', 'readonly', 'catch', 'nonoptional']);

/** The schema under defaults and optionals, and the default found on the way. */
function unwrap(schema: z.ZodType): { base: z.ZodType; hasDefault: boolean; defaultValue: unknown } {
  let base = schema;
  let found: { value: unknown } | undefined;
  for (let def = defOf(base); WRAPPERS.has(def.type) && def.innerType !== undefined; def = defOf(base)) {
    // The default's getter runs a computed default (a pid, say): --help prefers meta().defaultText.
    if ((def.type === 'default' || def.type === 'prefault') && found === undefined) found = { value: def.defaultValue };
    base = def.innerType;
  }
  return { base, hasDefault: found !== undefined, defaultValue: found?.value };
}

function kindOf(schema: z.ZodType, where: string): EnvKind {
  const def = defOf(schema);
  if (def.type === 'string' || def.type === 'enum' || def.type === 'literal') return 'string';
  if (def.type === 'boolean') return 'bool';
  if (def.type === 'number') return (schema as unknown as { isInt?: boolean }).isInt === true ? 'int' : 'number';
  // A URL or a handle (`string | Pool`): the environment can only give the URL.
  if (def.type === 'union' && def.options?.some((o) => defOf(o).type === 'string') === true) return 'string';
  throw new Error(`${where}: a ${def.type} option has no environment form; leave it out of the command's variables`);
}

const upperSnake = (name: string): string => name.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase();

function describeDefault(meta: Record<string, unknown>, found: { hasDefault: boolean; defaultValue: unknown }): string | undefined {
  if (typeof meta.defaultText === 'string') return meta.defaultText;
  if (!found.hasDefault) return undefined;
  const value = found.defaultValue;
  return typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean' ? String(value) : undefined;
}

function leafVar(schema: z.ZodType, path: readonly string[]): EnvVar {
  const meta = (schema.meta() ?? {}) as Record<string, unknown>;
  const found = unwrap(schema);
  const name = typeof meta.env === 'string' ? meta.env : `MAILROOM_${path.map(upperSnake).join('_')}`;
  return {
    name,
    path,
    description: typeof meta.description === 'string' ? meta.description : path.join('.'),
    kind: kindOf(found.base, name),
    defaultText: describeDefault(meta, found),
    required: !schema.safeParse(undefined).success,
  };
}

/**
 * The variables of the fields of an options schema (all of them, or `pick`, minus `omit`): a
 * field that is an object gives one variable per field inside it. Their names are declared, so
 * every command refuses a `MAILROOM_*` variable that no command reads.
 */
export function envSpec<S extends z.ZodObject, K extends keyof S['shape'] & string = never, P extends keyof S['shape'] & string = keyof S['shape'] & string>(
  schema: S,
  select: { omit?: readonly K[]; pick?: readonly P[] } = {},
): EnvSpec<Omit<Pick<z.output<S>, P>, K>> {
  const keys = Object.keys(schema.shape).filter(
    (k) => (select.pick === undefined || (select.pick as readonly string[]).includes(k)) && !(select.omit as readonly string[] | undefined)?.includes(k),
  );
  const vars: EnvVar[] = [];
  const fields: Array<EnvSpec<unknown>['fields'][number]> = [];
  for (const key of keys) {
    const field = schema.shape[key] as z.ZodType;
    const inner = defOf(unwrap(field).base);
    if (inner.type === 'object' && inner.shape !== undefined) {
      for (const [sub, subSchema] of Object.entries(inner.shape)) vars.push(leafVar(subSchema, [key, sub]));
    } else {
      vars.push(leafVar(field, [key]));
    }
    fields.push({
      key,
      parse(value) {
        const result = field.safeParse(value);
        return result.success ? { ok: true, value: result.data } : { ok: false, issues: result.error.issues };
      },
    });
  }
  for (const v of vars) declared.add(v.name);
  return { vars, fields };
}

/** The variables of two specs, read together (a name in both is read once, for both). */
export function combineEnv<A, B>(a: EnvSpec<A>, b: EnvSpec<B>): EnvSpec<A & B> {
  return { vars: [...a.vars, ...b.vars], fields: [...a.fields, ...b.fields] };
}

/** Renders the variables of a spec for `--help`. */
export function describeEnv(spec: EnvSpec<unknown>): string {
  const vars = [...new Map(spec.vars.map((v) => [v.name, v])).values()];
  const width = Math.max(...vars.map((v) => v.name.length));
  return vars
    .map((v) => {
      const note = v.defaultText !== undefined ? ` (default: ${v.defaultText})` : v.required && !v.description.includes('(required)') ? ' (required)' : '';
      return `  ${v.name.padEnd(width)}  ${v.description}${note}`;
    })
    .join('\n');
}

const TRUE = ['true', '1', 'yes', 'on'];
const FALSE = ['false', '0', 'no', 'off'];

/** The value of a variable's text, or the problem with it (named; only non-secret kinds echo the text). */
function coerce(v: EnvVar, text: string): { value: unknown } | { problem: string } {
  switch (v.kind) {
    case 'string':
      return { value: text };
    case 'int':
      return /^-?\d+$/.test(text.trim()) ? { value: Number(text) } : { problem: `${v.name} must be a whole number, got ${JSON.stringify(text)}` };
    case 'number': {
      const n = Number(text);
      return text.trim() !== '' && Number.isFinite(n) ? { value: n } : { problem: `${v.name} must be a number, got ${JSON.stringify(text)}` };
    }
    case 'bool': {
      const lower = text.trim().toLowerCase();
      if (TRUE.includes(lower)) return { value: true };
      if (FALSE.includes(lower)) return { value: false };
      return { problem: `${v.name} must be true or false, got ${JSON.stringify(text)}` };
    }
  }
}

function setAt(target: Record<string, unknown>, path: readonly string[], value: unknown): void {
  const [head, ...rest] = path;
  if (head === undefined) return;
  if (rest.length === 0) {
    target[head] = value;
    return;
  }
  const child = (target[head] ??= {}) as Record<string, unknown>;
  setAt(child, rest, value);
}

/**
 * Reads a command's options from `env`: each variable's text is converted by its option's type,
 * then checked, and the defaults filled in, by the option's zod schema. Every problem is named by
 * its variable, in one `INVALID_CONFIG` error: unknown `MAILROOM_*` variables, missing required
 * ones, values that are no number, out of range, and so on. An empty variable counts as unset.
 */
export function readEnv<T>(env: NodeJS.ProcessEnv, spec: EnvSpec<T>): T {
  const problems: string[] = [];
  const unknown = Object.keys(env).filter((k) => k.startsWith('MAILROOM_') && !k.startsWith('MAILROOM_TEST_') && !declared.has(k));
  if (unknown.length > 0) problems.push(`unknown variable${unknown.length > 1 ? 's' : ''} ${unknown.join(', ')}`);
  const input: Record<string, unknown> = {};
  const bad = new Set<string>();
  for (const v of spec.vars) {
    const text = env[v.name];
    if (text === undefined || text === '') continue;
    const coerced = coerce(v, text);
    if ('problem' in coerced) {
      problems.push(coerced.problem);
      bad.add(v.name);
    } else {
      setAt(input, v.path, coerced.value);
    }
  }
  const missing: string[] = [];
  const output: Record<string, unknown> = {};
  for (const field of spec.fields) {
    const result = field.parse(input[field.key]);
    if (result.ok) {
      output[field.key] = result.value;
      continue;
    }
    for (const issue of result.issues) {
      const path = [field.key, ...issue.path.map(String)].join('.');
      const v = spec.vars.find((x) => x.path.join('.') === path) ?? spec.vars.find((x) => x.path[0] === field.key);
      const name = v?.name ?? field.key;
      if (bad.has(name)) continue;
      if (v !== undefined && v.required && (env[v.name] ?? '') === '') {
        if (!missing.includes(name)) missing.push(name);
      } else {
        // Numbers and flags are shown with the value given; strings may be URLs with passwords.
        const given = v !== undefined && v.kind !== 'string' && env[v.name] !== undefined ? `=${env[v.name]}` : '';
        problems.push(`${name}${given}: ${issue.message}`);
      }
    }
  }
  if (missing.length > 0) problems.push(`missing ${missing.join(', ')}`);
  if (problems.length > 0) {
    // A variable read by two specs (MAILROOM_SCHEMA, say) is named once.
    throw new MailroomError('INVALID_CONFIG', `Invalid environment: ${[...new Set(problems)].join('; ')}. See --help for every variable.`);
  }
  return output as T;
}
