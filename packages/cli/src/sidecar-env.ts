import { z } from 'zod/v4';
import { envSpec } from './env.js';
import { SIDECAR_SEMI_SPACE_MB } from './young-generation.js';

/** What a sidecar command reads besides the options of what it runs: its HTTP server, logging and launcher. */
export const sidecarEnvSchema = z.strictObject({
  /** MAILROOM_HTTP_HOST. */
  httpHost: z.string().min(1).default('0.0.0.0').meta({ description: 'address of the /healthz, /readyz and /metrics server' }),
  /** MAILROOM_HTTP_PORT. */
  httpPort: z.number().int().min(0).max(65_535).default(9464).meta({ description: 'port of that server (0 picks a free one)' }),
  /** MAILROOM_LOG_LEVEL. */
  logLevel: z.enum(['debug', 'info', 'warn', 'error']).default('info').meta({ description: 'debug, info, warn or error' }),
  /** MAILROOM_LOG_FORMAT. */
  logFormat: z
    .enum(['text', 'json'])
    .default('text')
    .meta({ description: 'text (readable lines) or json (one JSON object per line: time, level, name, msg and fields)' }),
  /** MAILROOM_EXIT_WITH_PARENT. */
  exitWithParent: z
    .boolean()
    .default(true)
    .meta({ description: 'stop gracefully when the process that started this one exits (npx, a shell script) (true/false)' }),
  /** MAILROOM_SEMI_SPACE_MB (read before start-up by young-generation.ts, which re-executes the process). */
  semiSpaceMb: z
    .number()
    .int()
    .min(0)
    .max(256)
    .default(SIDECAR_SEMI_SPACE_MB)
    .meta({ description: "cap in MB of V8's young-generation semi-spaces; the process re-executes itself in place with it (0: V8's default)" }),
});

/** MAILROOM_HTTP_HOST, MAILROOM_HTTP_PORT, MAILROOM_LOG_LEVEL, MAILROOM_LOG_FORMAT, MAILROOM_EXIT_WITH_PARENT and MAILROOM_SEMI_SPACE_MB. */
export const SIDECAR_ENV = envSpec(sidecarEnvSchema);
