import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';

/** The cookie that carries the token after a visit with `?token=`. */
export const TOKEN_COOKIE = 'mailroom_workbench_token';

/** The form field every POST carries: the CSRF token of the page that made the form. */
export const CSRF_FIELD = '_csrf';

/** Compares two secrets in time that does not depend on where they differ. */
export function sameSecret(a: string, b: string): boolean {
  const x = createHmac('sha256', 'compare').update(a).digest();
  const y = createHmac('sha256', 'compare').update(b).digest();
  return timingSafeEqual(x, y);
}

/** The cookies of a request (the first value of each name). */
export function cookies(req: IncomingMessage): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    const name = part.slice(0, eq).trim();
    if (!out.has(name)) {
      try {
        out.set(name, decodeURIComponent(part.slice(eq + 1).trim()));
      } catch {
        // A cookie that is not URL-encoded text is no token.
      }
    }
  }
  return out;
}

/** The token a request carries: `Authorization: Bearer …`, else the cookie. */
export function presentedToken(req: IncomingMessage): string | undefined {
  const auth = req.headers.authorization;
  if (auth !== undefined && /^Bearer\s+/i.test(auth)) return auth.replace(/^Bearer\s+/i, '').trim();
  return cookies(req).get(TOKEN_COOKIE);
}

/**
 * CSRF tokens of one workbench: an HMAC, with a secret made at start, of the token the browser
 * holds (or of nothing, without a token). A page of another origin cannot read a form's token,
 * so it cannot make a POST the workbench accepts; a restart invalidates open forms.
 */
export class CsrfTokens {
  readonly #secret = randomBytes(32);

  /** The token the forms of a page carry, for a browser that holds `session` (the access token or ''). */
  issue(session: string): string {
    return createHmac('sha256', this.#secret).update(`csrf:${session}`).digest('base64url');
  }

  /** True when `presented` is the token issued for `session`. */
  verify(session: string, presented: string | undefined): boolean {
    return presented !== undefined && presented !== '' && sameSecret(this.issue(session), presented);
  }
}

/**
 * True when a POST comes from a page of the workbench's own origin, as far as the browser says:
 * `Sec-Fetch-Site` other than same-origin (or none, for tools), and an `Origin` whose host is
 * not the request's `Host`, are refused. The CSRF token is checked besides.
 */
export function sameOriginPost(req: IncomingMessage): boolean {
  const site = req.headers['sec-fetch-site'];
  if (site !== undefined && site !== 'same-origin' && site !== 'none') return false;
  const origin = req.headers.origin;
  if (origin === undefined || origin === 'null') return origin === undefined;
  try {
    return new URL(origin).host === req.headers.host;
  } catch {
    return false;
  }
}

/**
 * The headers of every answer: no framing, no inline script, nothing cached, no referrer to
 * other sites. (`no-referrer` would make browsers send `Origin: null` on the workbench's own
 * forms, which the origin check refuses; the token leaves the address at the first visit anyway.)
 */
export const SECURITY_HEADERS: Record<string, string> = {
  'content-security-policy': "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'same-origin',
  'cache-control': 'no-store',
};
