// What `mailroom dlq` prints comes from messages anyone could publish: a type, a header, an error
// text may carry terminal escapes (ESC [2J clears the screen, ESC ]0; sets the window title, C1
// CSI does the same in one character) or bidi overrides that make text read backwards. Every such
// character is shown escaped, never sent to the terminal.

/** C0 controls (tab and line feed included), DEL, C1 controls, and the bidi and line-separator controls. */
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;
/** What JSON.stringify leaves raw of those: DEL, C1, bidi and separators (it escapes C0 itself). */
const CONTROL_IN_JSON = /[\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;
const NAMED: Record<string, string> = { '\t': '\\t', '\n': '\\n', '\r': '\\r' };

function hex(code: number, width: number): string {
  return code.toString(16).toUpperCase().padStart(width, '0');
}

/** `text` with every control character written as an escape: `\n`, `\x1B`, `\x9B`, `\u202E`. */
export function escapeControls(text: string): string {
  return text.replace(CONTROL, (c) => {
    const code = c.charCodeAt(0);
    return NAMED[c] ?? (code <= 0xff ? `\\x${hex(code, 2)}` : `\\u${hex(code, 4)}`);
  });
}

/**
 * `value` as JSON that is safe on a terminal and still the same JSON: the controls JSON.stringify
 * leaves raw (DEL, C1, bidi) are written as `\uXXXX` escapes, which parse back to the same text.
 */
export function safeJson(value: unknown, indent?: number): string {
  return (JSON.stringify(value, null, indent) ?? 'null').replace(CONTROL_IN_JSON, (c) => `\\u${hex(c.charCodeAt(0), 4)}`);
}
