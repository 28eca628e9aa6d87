import { redactSecrets } from './redact.js';

/** Log levels, most verbose first. */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

/** The logger mailroom writes to. Bring your own (pino and winston fit) or use the console one. */
export interface Logger {
  debug(message: string, fields?: Record<string, unknown>): void;
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
}

const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

/** Options of {@link createConsoleLogger}. */
export interface ConsoleLoggerOptions {
  /** Lowest level written. Default: `info`. */
  level?: LogLevel;
  /** One JSON object per line instead of readable text. Default: false. */
  json?: boolean;
  /** A name printed with every line. Default: `mailroom`. */
  name?: string;
}

/** A logger on stderr; every line is redacted so URL passwords never reach it. */
export function createConsoleLogger(options: ConsoleLoggerOptions = {}): Logger {
  const min = ORDER[options.level ?? 'info'];
  const name = options.name ?? 'mailroom';
  const write = (level: LogLevel, message: string, fields?: Record<string, unknown>): void => {
    if (ORDER[level] < min) return;
    const line = options.json
      ? JSON.stringify({ time: new Date().toISOString(), level, name, msg: message, ...fields })
      : `${new Date().toISOString()} ${level.toUpperCase().padEnd(5)} ${name}: ${message}${
          fields && Object.keys(fields).length > 0 ? ` ${JSON.stringify(fields)}` : ''
        }`;
    process.stderr.write(`${redactSecrets(line)}\n`);
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
