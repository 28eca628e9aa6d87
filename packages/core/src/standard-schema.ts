/**
 * Standard Schema v1 (https://standardschema.dev), the interface zod (3.24+, 4), valibot (1.0+),
 * arktype (2.0+) and others implement under `~standard`. The spec asks libraries to copy these
 * types rather than depend on a package for them: a contract then accepts any such validator and
 * core needs none of them at run time. zod stays the default in the docs and examples; nothing
 * here is zod-specific.
 */
export interface StandardSchemaV1<Input = unknown, Output = Input> {
  /** The Standard Schema properties. */
  readonly '~standard': StandardSchemaProps<Input, Output>;
}

/** The `~standard` properties of a Standard Schema. */
export interface StandardSchemaProps<Input = unknown, Output = Input> {
  /** The version of the standard: 1. */
  readonly version: 1;
  /** The library that made the schema (`zod`, `valibot`, `arktype`, …). */
  readonly vendor: string;
  /** Validates an unknown value: the typed value, or the issues; possibly a Promise. */
  readonly validate: (value: unknown, options?: { readonly libraryOptions?: Record<string, unknown> | undefined }) => StandardResult<Output> | Promise<StandardResult<Output>>;
  /** The inferred types (present in types only). */
  readonly types?: { readonly input: Input; readonly output: Output } | undefined;
  /**
   * Standard JSON Schema (optional, zod 4.2+ and arktype have it): converts the schema to JSON
   * Schema. `mailroom contracts export` uses it when present.
   */
  readonly jsonSchema?: StandardJsonSchemaConverter | undefined;
}

/** The Standard JSON Schema converter (`~standard.jsonSchema`); each method may throw. */
export interface StandardJsonSchemaConverter {
  readonly input: (options: { readonly target: string; readonly libraryOptions?: Record<string, unknown> | undefined }) => Record<string, unknown>;
  readonly output: (options: { readonly target: string; readonly libraryOptions?: Record<string, unknown> | undefined }) => Record<string, unknown>;
}

/** The result of `~standard.validate`: a value, or issues. */
export type StandardResult<Output> = { readonly value: Output; readonly issues?: undefined } | { readonly issues: readonly StandardIssue[] };

/** One validation problem. */
export interface StandardIssue {
  /** What is wrong. */
  readonly message: string;
  /** Where: property keys, or segments with a `key`. */
  readonly path?: ReadonlyArray<PropertyKey | { readonly key: PropertyKey }> | undefined;
}

/** The input type of a Standard Schema (what `create` takes). */
export type InferInput<S extends StandardSchemaV1> = NonNullable<S['~standard']['types']>['input'];

/** The output type of a Standard Schema (what a handler receives). */
export type InferOutput<S extends StandardSchemaV1> = NonNullable<S['~standard']['types']>['output'];

/** True when `value` implements Standard Schema v1 (has `~standard.validate`, version 1). */
export function isStandardSchema(value: unknown): value is StandardSchemaV1 {
  if ((typeof value !== 'object' && typeof value !== 'function') || value === null) return false;
  const props = (value as { '~standard'?: unknown })['~standard'];
  return typeof props === 'object' && props !== null && (props as { version?: unknown }).version === 1 && typeof (props as { validate?: unknown }).validate === 'function';
}

/** The issues of a failed validation as `path: message` lines (`(payload)` for the root). */
export function describeIssues(issues: readonly StandardIssue[]): string[] {
  return issues.map((issue) => {
    const path = (issue.path ?? []).map((segment) => String(typeof segment === 'object' && segment !== null ? segment.key : segment));
    return `${path.length > 0 ? path.join('.') : '(payload)'}: ${String(issue.message)}`;
  });
}
