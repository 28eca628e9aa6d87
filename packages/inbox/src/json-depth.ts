const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_BRACE = 0x7b;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACE = 0x7d;
const CLOSE_BRACKET = 0x5d;

/**
 * True when JSON text nests objects and arrays deeper than `maxDepth`. One pass over the bytes,
 * no recursion and no allocation, so it is safe on hostile input before anything parses it
 * (brackets inside strings, escaped quotes included, are text). UTF-8 never puts these ASCII
 * bytes inside a multi-byte character, so the bytes can be scanned as they are. Cost, measured
 * (Node 24): about 1.5 µs for a 1 KiB body, 20 µs at 16 KiB, 1 to 2 ms at 1 MiB, a third to a
 * half of what JSON.parse takes on the same body.
 */
export function exceedsJsonDepth(body: Uint8Array, maxDepth: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < body.length; i++) {
    const c = body[i];
    if (inString) {
      if (c === BACKSLASH) i++;
      else if (c === QUOTE) inString = false;
    } else if (c === QUOTE) {
      inString = true;
    } else if (c === OPEN_BRACE || c === OPEN_BRACKET) {
      if (++depth > maxDepth) return true;
    } else if (c === CLOSE_BRACE || c === CLOSE_BRACKET) {
      depth--;
    }
  }
  return false;
}
