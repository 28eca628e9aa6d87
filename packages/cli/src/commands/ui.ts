import { once } from 'node:events';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { z } from 'zod/v4';
import type { Command } from '../command.js';
import { UsageError } from '../command.js';
import { DATABASE_ENV } from '../connection-env.js';
import { combineEnv, describeEnv, envSpec, readEnv } from '../env.js';
import { cliActor } from './dlq-discard.js';

/** What `mailroom ui` reads besides the database: where to listen, the token, the mode. */
const uiEnvSchema = z.strictObject({
  /** MAILROOM_UI_HOST. */
  uiHost: z.string().min(1).default('127.0.0.1').meta({ description: 'address to bind; anything but a loopback address needs MAILROOM_UI_TOKEN' }),
  /** MAILROOM_UI_PORT. */
  uiPort: z.number().int().min(0).max(65_535).default(7480).meta({ description: 'port (0: any free one)' }),
  /** MAILROOM_UI_TOKEN. */
  uiToken: z.string().min(16).optional().meta({ description: 'secret every request must carry (open the page once with ?token=…); at least 16 characters' }),
  /** MAILROOM_UI_READ_ONLY. */
  uiReadOnly: z.boolean().default(false).meta({ description: 'show everything, change nothing (true/false)' }),
});

const UI_ENV = combineEnv(DATABASE_ENV, envSpec(uiEnvSchema));

/** `mailroom ui`: the dead-letter workbench in the browser, until SIGTERM. */
export const uiCommand: Command = {
  help: () =>
    [
      'Usage: mailroom ui [--host H] [--port P] [--read-only]',
      '',
      'Serves the workbench: overview (outbox backlog, dead letters by failure group over time, recent actions),',
      'dead letters with filters and keyset pages, detail, replay (one, a selection, a filtered set with a rate',
      'limit and progress), edit-and-replay, discard with a confirmation, export as JSON lines, and the audit.',
      'Actions are recorded as cli:<os user>@<host>. Flags override the variables of the same name.',
      '',
      'Environment:',
      describeEnv(UI_ENV),
    ].join('\n'),
  async run({ argv, env, stdout, stopSignal }) {
    const { values } = (() => {
      try {
        return parseArgs({ args: argv, strict: true, options: { host: { type: 'string' }, port: { type: 'string' }, 'read-only': { type: 'boolean' } } });
      } catch (error) {
        throw new UsageError(`${(error as Error).message} (see mailroom ui --help)`);
      }
    })();
    const vars = readEnv(env, UI_ENV);
    const port = values.port === undefined ? vars.uiPort : Number(values.port);
    if (!Number.isInteger(port) || port < 0 || port > 65_535) throw new UsageError(`--port must be 0 to 65535 (got ${values.port})`);
    // Loaded here, not at the top: every other command (the relay sidecar first) starts without it.
    const { startWorkbench } = await import('@mailroom/ui');
    const pool = new pg.Pool({ connectionString: vars.databaseUrl, max: 4, application_name: 'mailroom-ui' });
    pool.on('error', () => undefined);
    try {
      const running = await startWorkbench({
        db: pool,
        schema: vars.schema,
        host: values.host ?? vars.uiHost,
        port,
        readOnly: values['read-only'] === true || vars.uiReadOnly,
        actor: cliActor(env),
        ...(vars.uiToken === undefined ? {} : { token: vars.uiToken }),
      });
      stdout.write(`workbench at ${running.url}${vars.uiToken === undefined ? '' : ' (open it once with ?token=<MAILROOM_UI_TOKEN>)'}${values['read-only'] === true || vars.uiReadOnly ? ', read-only' : ''}; SIGTERM to stop\n`);
      if (!stopSignal.aborted) await once(stopSignal, 'abort');
      await running.stop();
      return 0;
    } finally {
      await pool.end().catch(() => undefined);
    }
  },
};
