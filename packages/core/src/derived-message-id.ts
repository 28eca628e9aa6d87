import { createHash } from 'node:crypto';

/**
 * A deterministic message id for a message that arrived without a usable one, so that every
 * redelivery of it lands on the same dead-letter row. A UUID (version 8 layout) from a SHA-256
 * of the source, the raw id and the body: two id-less messages with the same body on the same
 * queue are one dead letter.
 */
export function deriveMessageId(parts: { source: string; rawMessageId?: string | null; body: Uint8Array }): string {
  const hash = createHash('sha256')
    .update(parts.source)
    .update('\u0000')
    .update(parts.rawMessageId ?? '')
    .update('\u0000')
    .update(parts.body)
    .digest();
  hash[6] = ((hash[6] ?? 0) & 0x0f) | 0x80;
  hash[8] = ((hash[8] ?? 0) & 0x3f) | 0x80;
  const hex = hash.subarray(0, 16).toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`;
}
