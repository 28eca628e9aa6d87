import { MailroomError, validateIdentifier } from '@mailroom/core';

/** One environment variable a command reads, for `--help` and for validation. */
export interface EnvVar {
  name: string;
  description: string;
  /** Shown in --help; undefined means required. */
  default?: string;
}

const registry = new Set<string>(['MAILROOM_CRASH_POINTS', 'MAILROOM_LOG_LEVEL']);

/**
 * Declares variables a command reads. A `MAILROOM_*` variable that no command declares is
 * refused by name, so a typo never silently falls back to a default.
 */
export function declareEnv(vars: EnvVar[]): EnvVar[] {
  for (const v of vars) registry.add(v.name);
  return vars;
}

/** Variables every command that talks to PostgreSQL reads. */
export const DATABASE_VARS: EnvVar[] = declareEnv([
  { name: 'MAILROOM_DATABASE_URL', description: 'PostgreSQL URL, e.g. postgres://user:pass@host:5432/db (required)' },
  { name: 'MAILROOM_SCHEMA', description: "schema of mailroom's tables", default: 'mailroom' },
]);

/** Variables every command that talks to RabbitMQ reads. */
export const AMQP_VARS: EnvVar[] = declareEnv([
  { name: 'MAILROOM_AMQP_URL', description: 'RabbitMQ URL, e.g. amqp://user:pass@host:5672/vhost (required)' },
]);

/** Renders a list of variables for `--help`. */
export function describeEnv(vars: EnvVar[]): string {
  const width = Math.max(...vars.map((v) => v.name.length));
  return vars.map((v) => `  ${v.name.padEnd(width)}  ${v.description}${v.default !== undefined ? ` (default: ${v.default})` : ''}`).join('\n');
}

/**
 * Reads the variables of a command from `env`. Unknown `MAILROOM_*` variables (declared by no
 * command) are refused by name; missing required ones are named too.
 */
export function readEnv(env: NodeJS.ProcessEnv, vars: EnvVar[]): Record<string, string> {
  declareEnv(vars);
  const unknown = Object.keys(env).filter((k) => k.startsWith('MAILROOM_') && !k.startsWith('MAILROOM_TEST_') && !registry.has(k));
  const missing = vars.filter((v) => v.default === undefined && (env[v.name] ?? '') === '').map((v) => v.name);
  const problems: string[] = [];
  if (unknown.length > 0) problems.push(`unknown variable${unknown.length > 1 ? 's' : ''} ${unknown.join(', ')}`);
  if (missing.length > 0) problems.push(`missing ${missing.join(', ')}`);
  if (problems.length > 0) {
    throw new MailroomError('INVALID_CONFIG', `Invalid environment: ${problems.join('; ')}. See --help for every variable.`);
  }
  const out: Record<string, string> = {};
  for (const v of vars) {
    const value = env[v.name];
    if (value !== undefined && value !== '') out[v.name] = value;
    else if (v.default !== undefined) out[v.name] = v.default;
  }
  if (out.MAILROOM_SCHEMA !== undefined) validateIdentifier(out.MAILROOM_SCHEMA);
  return out;
}
