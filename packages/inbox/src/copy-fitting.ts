import { PUBLISH_LIMITS, VERSION_HEADER, encodedHeaderBytes, isReservedHeader, type CopyProperties, type WireMessage } from '@mailroom/core/internal';

/**
 * What a copy's header table may take: amqplib encodes headers into a 64 KiB buffer, and core's
 * confirmed publish adds a per-publish id header (about 63 bytes) on top of what the codec wrote.
 */
export const COPY_HEADER_BUDGET = PUBLISH_LIMITS.headerTableBytes - 256;

/** A header dropped from a copy so that it fits, and what it took. */
export interface DroppedHeader {
  name: string;
  bytes: number;
}

/** A copy's properties, fitted into {@link COPY_HEADER_BUDGET} if it had to be. */
export interface FittedCopy<P extends CopyProperties> {
  properties: P;
  /** The headers the copy no longer carries; empty when it fit as it was. */
  dropped: DroppedHeader[];
  /** The encoded size of its headers (may still be over the budget when nothing more could be dropped). */
  headerBytes: number;
}

/** How a copy is encoded from a delivery: core's codec, with a note about dropped headers. */
export type CopyEncoder<P extends CopyProperties> = (message: WireMessage, dropped: readonly DroppedHeader[]) => P;

function entryBytes(name: string, value: unknown): number {
  return encodedHeaderBytes({ [name]: value }) - 4;
}

function withoutHeaders(message: WireMessage, names: ReadonlySet<string>): WireMessage {
  const headers: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(message.properties.headers ?? {})) if (!names.has(name)) headers[name] = value;
  return { ...message, properties: { ...message.properties, headers } };
}

/**
 * Encodes a copy of `message` and, when its headers do not fit amqplib's 64 KiB table any more
 * (mailroom's own headers come on top of the producer's), drops headers the copy carries over
 * from the delivery until it fits: the producer's own first, largest first, then mailroom's
 * envelope headers it came with (its key, its occurred-at time; never its contract version, which
 * a replay needs). What the codec writes for the copy (attempt, origin, reason, error, source,
 * seal) is encoded again each time and never dropped. Bounded work: a handful of encodings whatever the number of headers.
 */
export function fitCopy<P extends CopyProperties>(message: WireMessage, encode: CopyEncoder<P>, budget = COPY_HEADER_BUDGET): FittedCopy<P> {
  let properties = encode(message, []);
  let headerBytes = encodedHeaderBytes(properties.headers);
  if (headerBytes <= budget) return { properties, dropped: [], headerBytes };
  const incoming = message.properties.headers ?? {};
  // Only headers carried over as they came save anything: what the codec writes comes back anyway.
  const own = new Set(Object.keys(encode(withoutHeaders(message, new Set(Object.keys(incoming))), []).headers));
  const candidates = Object.entries(incoming)
    // The contract version is never dropped (a few bytes): without it a replay would read the payload as version 1.
    .filter(([name, value]) => value !== undefined && !own.has(name) && name !== VERSION_HEADER && properties.headers[name] === value)
    .map(([name, value]) => ({ name, bytes: entryBytes(name, value), reserved: isReservedHeader(name) }))
    .sort((a, b) => Number(a.reserved) - Number(b.reserved) || b.bytes - a.bytes);
  const dropped: DroppedHeader[] = [];
  const names = new Set<string>();
  let next = 0;
  // Each round drops what the last encoding was over by (the note about dropped headers adds a
  // little each time); the last round drops every candidate left.
  for (let round = 0; round < 4 && headerBytes > budget && next < candidates.length; round++) {
    let excess = round === 3 ? Number.POSITIVE_INFINITY : headerBytes - budget;
    while (excess > 0 && next < candidates.length) {
      const c = candidates[next++]!;
      dropped.push({ name: c.name, bytes: c.bytes });
      names.add(c.name);
      excess -= c.bytes;
    }
    properties = encode(withoutHeaders(message, names), dropped);
    headerBytes = encodedHeaderBytes(properties.headers);
  }
  return { properties, dropped, headerBytes };
}

/** A short account of dropped headers for a dead letter's error: the largest few by name. */
export function describeDropped(dropped: readonly DroppedHeader[]): string {
  const shown = [...dropped]
    .sort((a, b) => b.bytes - a.bytes)
    .slice(0, 5)
    .map((d) => `${JSON.stringify(d.name.slice(0, 60))} (${d.bytes} bytes)`);
  const more = dropped.length > shown.length ? ` and ${dropped.length - shown.length} more` : '';
  return `The copy's headers did not fit AMQP's ${PUBLISH_LIMITS.headerTableBytes}-byte (64 KiB) header table with mailroom's own; dropped ${dropped.length} header(s) the message came with: ${shown.join(', ')}${more}.`;
}
