import { MailroomError, describeError } from './errors.js';
import { describeIssues, type StandardResult, type StandardSchemaV1 } from './standard-schema.js';

/**
 * The highest version a contract may reach, and the highest a version header may state. Far
 * above any real contract's history; the bound keeps a hostile header (`99999999999999999999`)
 * from becoming a number that means nothing.
 */
export const MAX_CONTRACT_VERSION = 10_000;

/** Turns the previous version's validated payload into this version's input. May be async. */
export type Upcaster<From, To> = (previous: From) => To | Promise<To>;

/** One version of a contract's payload. */
export interface ContractVersion {
  /** 1, 2, 3 … in order, no gaps. */
  readonly version: number;
  /** The payload's schema at this version (any Standard Schema validator). */
  readonly schema: StandardSchemaV1;
  /** From the previous version's output to this version's input; absent on version 1. */
  readonly upcast?: Upcaster<unknown, unknown>;
}

/** `INVALID_PAYLOAD` naming the type, the version and every issue. */
function invalid(type: string, message: string, details: Record<string, unknown>, cause?: unknown): MailroomError {
  return new MailroomError('INVALID_PAYLOAD', message, { details: { type, ...details }, ...(cause === undefined ? {} : { cause }) });
}

function outcome<T>(type: string, result: StandardResult<T>, what: string, details: Record<string, unknown>): T {
  if (result.issues !== undefined) {
    const problems = describeIssues(result.issues);
    throw invalid(type, `Invalid payload for message type "${type}"${what}: ${problems.join('; ')}`, { ...details, issues: problems });
  }
  return result.value;
}

/**
 * Validates `payload` against `schema` synchronously (`create` and `enqueue` return or store at
 * once). A schema whose validation is asynchronous (an async refinement) cannot be used to
 * produce: that is refused with `INVALID_CONFIG`; consumers accept such schemas through
 * {@link decodeVersion}.
 */
export function validateNow<T>(type: string, schema: StandardSchemaV1<unknown, T>, payload: unknown, what = ''): T {
  const result = schema['~standard'].validate(payload);
  if (result instanceof Promise) {
    // Nobody awaits it: keep an eventual rejection from becoming an unhandled one.
    result.catch(() => undefined);
    throw new MailroomError(
      'INVALID_CONFIG',
      `The schema of message type "${type}" validates asynchronously, so messages cannot be created or enqueued with it (create and enqueue validate synchronously); consumers accept it.`,
      { details: { type } },
    );
  }
  return outcome(type, result, what, {});
}

/**
 * A payload that arrived as `version` of contract `type`, validated at that version and upcast
 * step by step to the latest, each step's output validated by the next version's schema. Throws
 * `INVALID_PAYLOAD` naming the type and the version whose schema refused it, the step whose
 * upcaster threw, or the version no version of `versions` knows.
 */
export async function decodeVersion(type: string, versions: readonly ContractVersion[], payload: unknown, version: number): Promise<unknown> {
  const latest = versions.length;
  if (!Number.isInteger(version) || version < 1 || version > latest) {
    throw invalid(
      type,
      Number.isInteger(version) && version > latest
        ? `Message type "${type}" version ${version} is newer than this contract knows (${latest}).`
        : `Message type "${type}" has no version ${String(version)}: versions are whole numbers from 1.`,
      { version, latestVersion: latest },
    );
  }
  const first = versions[version - 1] as ContractVersion;
  const suffix = latest > 1 ? ` at version ${version}` : '';
  let value = outcome(type, await first.schema['~standard'].validate(payload), suffix, { version });
  for (let next = version + 1; next <= latest; next++) {
    const step = versions[next - 1] as ContractVersion;
    let upcast: unknown;
    try {
      upcast = await (step.upcast as Upcaster<unknown, unknown>)(value);
    } catch (error) {
      throw invalid(type, `Upcasting message type "${type}" from version ${next - 1} to ${next} failed: ${describeError(error)}`, { version, step: next }, error);
    }
    value = outcome(type, await step.schema['~standard'].validate(upcast), ` after upcasting from version ${next - 1} to ${next}`, { version, step: next });
  }
  return value;
}
