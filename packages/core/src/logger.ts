import { describeError } from './errors.js';
import { redactSecrets } from './redact.js';

/** Log levels, most verbose first. */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

/** How the console logger writes a line: readable text, or one JSON object per line. */
export type LogFormat = 'text' | 'json';

/** The logger mailroom writes to. Bring your own (pino and winston fit) or use the console one. */
export interface Logger {
  debug(message: string, fields?: Record<string, unknown>): void;
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
}

const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

/** The keys every JSON line starts with; a field of the same name is written as `field.<name>`. */
const RESERVED_KEYS = new Set(['time', 'level', 'name', 'msg']);

/** Options of {@link createConsoleLogger}. */
export interface ConsoleLoggerOptions {
  /** Lowest level written. Default: `info`. */
  level?: LogLevel;
  /**
   * One JSON object per line (`{"time","level","name","msg",…fields}`) instead of readable text.
   * Default: false. `format: 'json'` says the same.
   */
  json?: boolean;
  /** `text` or `json` (same as `json: true`). Default: `text`. */
  format?: LogFormat;
  /** A name printed with every line. Default: `mailroom`. */
  name?: string;
  /** Where lines go. Default: process.stderr. */
  write?: (line: string) => void;
}

/**
 * A field value made safe for JSON: errors as their description (JSON.stringify writes `{}`),
 * bigints as text, and every string redacted on its own. Redacting the finished line instead
 * would let `password=…` run on across the quotes and eat the rest of the JSON object.
 */
function jsonSafe(value: unknown, depth: number, seen: WeakSet<object>): unknown {
  if (typeof value === 'string') return redactSecrets(value);
  if (typeof value === 'bigint') return value.toString();
  if (typeof value === 'number') return Number.isFinite(value) ? value : String(value);
  if (value === null || typeof value === 'boolean') return value;
  if (value === undefined || typeof value === 'function' || typeof value === 'symbol') return undefined;
  if (value instanceof Error) return redactSecrets(describeError(value));
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? 'Invalid Date' : value.toISOString();
  if (seen.has(value)) return '[circular]';
  if (depth >= 8) return '[too deep]';
  seen.add(value);
  try {
    if (Array.isArray(value)) return value.slice(0, 1000).map((v) => jsonSafe(v, depth + 1, seen) ?? null);
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value).slice(0, 1000)) {
      const safe = jsonSafe(v, depth + 1, seen);
      if (safe !== undefined) out[redactSecrets(k)] = safe;
    }
    return out;
  } finally {
    seen.delete(value);
  }
}

/** One JSON line: the fixed keys first, fields after them (never over them). */
export function formatJsonLine(time: Date, level: LogLevel, name: string, message: string, fields?: Record<string, unknown>): string {
  const line: Record<string, unknown> = { time: time.toISOString(), level, name: redactSecrets(name), msg: redactSecrets(message) };
  if (fields !== undefined && fields !== null && typeof fields === 'object') {
    const seen = new WeakSet<object>();
    for (const [k, v] of Object.entries(fields)) {
      const safe = jsonSafe(v, 1, seen);
      if (safe === undefined) continue;
      const key = redactSecrets(k);
      line[RESERVED_KEYS.has(key) ? `field.${key}` : key] = safe;
    }
  }
  // JSON.stringify escapes every control character (NUL, ESC, a newline in a message), so one
  // entry is always exactly one line.
  return JSON.stringify(line);
}

function formatTextLine(time: Date, level: LogLevel, name: string, message: string, fields?: Record<string, unknown>): string {
  let rest = '';
  if (fields && Object.keys(fields).length > 0) {
    try {
      rest = ` ${JSON.stringify(jsonSafe(fields, 0, new WeakSet()))}`;
    } catch {
      rest = ' [fields not printable]';
    }
  }
  return redactSecrets(`${time.toISOString()} ${level.toUpperCase().padEnd(5)} ${name}: ${message}${rest}`);
}

/**
 * A logger on stderr; passwords in URLs (and libpq's `password=`) never reach it. With
 * `format: 'json'` each entry is one JSON object on one line, for log shippers; a logger never
 * throws, whatever the fields hold (cycles, bigints, errors).
 */
export function createConsoleLogger(options: ConsoleLoggerOptions = {}): Logger {
  const min = ORDER[options.level ?? 'info'];
  const name = options.name ?? 'mailroom';
  const json = options.json === true || options.format === 'json';
  const out = options.write ?? ((line: string) => process.stderr.write(line));
  const write = (level: LogLevel, message: string, fields?: Record<string, unknown>): void => {
    if (ORDER[level] < min) return;
    const now = new Date();
    const line = json ? formatJsonLine(now, level, name, String(message), fields) : formatTextLine(now, level, name, String(message), fields);
    out(`${line}\n`);
  };
  return {
    debug: (m, f) => write('debug', m, f),
    info: (m, f) => write('info', m, f),
    warn: (m, f) => write('warn', m, f),
    error: (m, f) => write('error', m, f),
  };
}

/** A logger that writes nothing. */
export const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };
