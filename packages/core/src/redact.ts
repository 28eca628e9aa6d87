// Matches the userinfo of any URL-looking string: scheme://user:password@host. The password runs
// to the LAST `@` of the authority: pg and amqplib both accept an unencoded `@` in a password, and
// stopping at the first one would print the rest of it.
const URL_CREDENTIALS = /([a-z][a-z0-9+.-]*:\/\/)([^:@/\s]*):([^/\s]*)@/gi;
// Matches key=value passwords as libpq connection strings write them.
const KV_PASSWORD = /(password\s*=\s*)('[^']*'|\S+)/gi;

/**
 * Replaces the password of every URL (and `password=` of libpq strings) in a text with `***`.
 * Used on every log line and every error message mailroom produces.
 */
export function redactSecrets(text: string): string {
  return text.replace(URL_CREDENTIALS, '$1$2:***@').replace(KV_PASSWORD, '$1***');
}

/** Returns a URL safe to print: the password, if any, replaced by `***`. */
export function redactUrl(url: string): string {
  return redactSecrets(url);
}
