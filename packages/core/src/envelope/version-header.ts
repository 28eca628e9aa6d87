import { MAX_CONTRACT_VERSION } from '../contract-versions.js';
import { MailroomError } from '../errors.js';
import { H } from './header-names.js';
import { headerText } from './header-values.js';

/**
 * The contract version a message carries. Version 1 travels without the header (every message
 * published before contracts had versions is version 1, and the broker carries one header less
 * per message); from version 2 on, `x-mailroom-version` holds it in decimal.
 */
export type VersionReading = { ok: true; version: number } | { ok: false; problem: string };

// Canonical decimal only: no sign, no leading zero, no exponent, no space, at most five digits.
const VERSION_TEXT = /^[1-9][0-9]{0,4}$/;

/** The header that carries the contract version (for code that must keep it, such as a copy that sheds headers to fit). */
export const VERSION_HEADER: string = H.version;

/**
 * Reads the version header of a delivery (any value a sender may have put there): absent is
 * version 1; a whole number from 1 to {@link MAX_CONTRACT_VERSION} (text, or an AMQP integer)
 * is that version; anything else is a problem, described without echoing more than 40 characters.
 */
export function readVersionHeader(headers: Record<string, unknown> | undefined): VersionReading {
  const raw = headers?.[H.version];
  if (raw === undefined) return { ok: true, version: 1 };
  const text = headerText(raw);
  if (text !== null && VERSION_TEXT.test(text)) {
    const version = Number(text);
    if (version <= MAX_CONTRACT_VERSION) return { ok: true, version };
  }
  const shown = text === null ? `(a ${raw === null ? 'null' : Array.isArray(raw) ? 'list' : typeof raw})` : JSON.stringify(text.slice(0, 40)) + (text.length > 40 ? ` (${text.length} characters)` : '');
  return { ok: false, problem: `The ${H.version} header ${shown} is not a contract version: a whole number from 1 to ${MAX_CONTRACT_VERSION} is expected.` };
}

/**
 * The version a stored message's headers say (a dead letter's, an archived row's), for sending it
 * again with the same version: undefined when absent (version 1) or not a version.
 */
export function versionOfHeaders(headers: Record<string, unknown>): number | undefined {
  const reading = readVersionHeader(headers);
  return reading.ok && reading.version > 1 ? reading.version : undefined;
}

/**
 * Adds the version header to the headers an outbox row is stored with (the relay publishes them
 * as they are): nothing for version 1 or none. Throws `INVALID_MESSAGE` for a version that is
 * not a whole number from 1 to {@link MAX_CONTRACT_VERSION}.
 */
export function withVersionHeader<T extends Record<string, unknown>>(headers: T, version: number | undefined): T {
  if (version === undefined || version === 1) return headers;
  if (!Number.isInteger(version) || version < 1 || version > MAX_CONTRACT_VERSION) {
    throw new MailroomError('INVALID_MESSAGE', `Cannot enqueue message: version ${String(version)} is not a whole number from 1 to ${MAX_CONTRACT_VERSION}.`);
  }
  (headers as Record<string, unknown>)[H.version] = String(version);
  return headers;
}
