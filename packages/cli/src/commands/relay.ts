import { once } from 'node:events';
import { createConsoleLogger } from '@mailroom/core';
import { createRelay, relayOptionsSchema } from '@mailroom/outbox';
import type { Command } from '../command.js';
import { UsageError } from '../command.js';
import { combineEnv, describeEnv, envSpec, readEnv } from '../env.js';
import { startHttpServer } from '../http-server.js';
import { SIDECAR_ENV } from '../sidecar-env.js';

// Every relay option but the two objects a process cannot get from its environment: the
// variables, their defaults and their --help lines all come from the relay's own schema.
const RELAY_ENV = combineEnv(envSpec(relayOptionsSchema, { omit: ['logger', 'metrics'] }), SIDECAR_ENV);

/** `mailroom relay`: the outbox relay as a sidecar process, configured by environment. */
export const relayCommand: Command = {
  name: 'relay',
  summary: 'run the outbox relay as a sidecar (configured by MAILROOM_* variables)',
  help: () =>
    [
      'Usage: mailroom relay',
      '',
      'Publishes committed outbox rows to RabbitMQ with publisher confirms. Serves /healthz, /readyz and',
      '/metrics (Prometheus) over HTTP. On SIGTERM or SIGINT it stops claiming, commits the batch in flight',
      'and exits 0.',
      '',
      'Environment:',
      describeEnv(RELAY_ENV),
    ].join('\n'),
  async run({ argv, env, stdout, stopSignal }) {
    if (argv.length > 0) throw new UsageError(`unexpected argument ${argv.join(' ')}: the relay is configured by environment (see --help)`);
    const { httpHost, httpPort, logLevel, ...options } = readEnv(env, RELAY_ENV);
    const logger = createConsoleLogger({ level: logLevel, name: options.name });
    const relay = createRelay({ ...options, logger });
    let stopping = false;
    const http = await startHttpServer(
      { live: () => !stopping, ready: () => !stopping && relay.ready, metrics: () => relay.metrics.render() },
      httpHost,
      httpPort,
    );
    logger.info(`serving /healthz, /readyz and /metrics on ${httpHost}:${http.port}`);
    stdout.write(`${JSON.stringify({ event: 'listening', port: http.port })}\n`);
    try {
      await relay.start();
    } catch (error) {
      http.server.close();
      throw error;
    }
    if (!stopSignal.aborted) await once(stopSignal, 'abort');
    stopping = true;
    logger.info('stop requested: finishing the batch in flight');
    await relay.stop();
    http.server.close();
    const s = relay.stats;
    logger.info(`relay exited cleanly: published ${s.published}, returned ${s.returned}, nacked ${s.nacked}, dead-lettered ${s.deadLettered}`);
    return 0;
  },
};
