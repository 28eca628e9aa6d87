import { createHash } from 'node:crypto';

/**
 * A fingerprint that groups failures of the same cause: the source, the reason and the error
 * text with its variable parts (ids, numbers, quoted values) replaced, hashed to 16 hex digits.
 */
export function failureFingerprint(parts: { source: string; reason: string; type?: string | null; error?: string | null }): string {
  const shape = (parts.error ?? '')
    .replace(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/gi, '<uuid>')
    .replace(/"[^"]*"|'[^']*'/g, '<str>')
    .replace(/\d+(\.\d+)?/g, '<n>')
    .slice(0, 500);
  return createHash('sha256')
    .update(`${parts.source}\u0000${parts.reason}\u0000${parts.type ?? ''}\u0000${shape}`)
    .digest('hex')
    .slice(0, 16);
}
