// HTML built by a tagged template that escapes every interpolated value unless it is already
// `SafeHtml`: a page is made only of this, so a payload, a header or an error cannot add markup.

/** Markup that is already safe to send (built by {@link html} or {@link raw}). */
export class SafeHtml {
  constructor(readonly text: string) {}
  toString(): string {
    return this.text;
  }
}

/** What may stand in a template: text (escaped), numbers, safe markup, lists of those, nothing. */
export type HtmlValue = SafeHtml | string | number | boolean | null | undefined | readonly HtmlValue[];

// Bidirectional overrides and isolates reorder what an operator reads ("exe.txt" shown as
// "txt.exe"): they are shown as their code, like the CLI does.
const BIDI = /[\u202A-\u202E\u2066-\u2069]/g;
// NUL is a parse error in HTML (browsers show U+FFFD); other C0 controls but tab and newlines
// and DEL are shown as their code, so nothing invisible hides in a value.
const CONTROL = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F]/g;
const ENTITIES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/**
 * Text made safe for HTML content and quoted attribute values: `& < > " '` as entities,
 * control characters and bidi overrides shown as `\uXXXX`.
 */
export function escapeHtml(text: string): string {
  return text
    .replace(CONTROL, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0').toUpperCase()}`)
    .replace(BIDI, (c) => `\\u${c.charCodeAt(0).toString(16).toUpperCase()}`)
    .replace(/[&<>"']/g, (c) => ENTITIES[c] as string);
}

function render(value: HtmlValue): string {
  if (value === null || value === undefined || value === false) return '';
  if (value instanceof SafeHtml) return value.text;
  if (Array.isArray(value)) return (value as readonly HtmlValue[]).map(render).join('');
  return escapeHtml(String(value));
}

/** A template of markup: every `${value}` is escaped (lists joined, null and false left out). */
export function html(strings: TemplateStringsArray, ...values: HtmlValue[]): SafeHtml {
  let out = strings[0] ?? '';
  values.forEach((value, i) => {
    out += render(value) + (strings[i + 1] ?? '');
  });
  return new SafeHtml(out);
}

/** Markup taken as is: only for text this package wrote (never for anything from a message). */
export function raw(text: string): SafeHtml {
  return new SafeHtml(text);
}

/** `text` cut to `max` characters with an ellipsis and the size left out, for tables and previews. */
export function clip(text: string, max: number): string {
  if (text.length <= max) return text;
  return `${text.slice(0, max)}… (${(text.length - max).toLocaleString('en')} more characters)`;
}
