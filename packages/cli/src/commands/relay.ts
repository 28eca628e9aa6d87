import { once } from 'node:events';
import pg from 'pg';
import { createAmqpConnection, createConsoleLogger, describeError } from '@mailroom/core';
import { createDeadLetterStore } from '@mailroom/dlq';
import { createRelay, relayOptionsSchema, type RelayLinks } from '@mailroom/outbox';
import type { Command } from '../command.js';
import { UsageError } from '../command.js';
import { flushCliCompileCache } from '../compile-cache.js';
import { AMQP_TLS_ENV, amqpConnectionOptions, splitAmqpUrls } from '../connection-env.js';
import { combineEnv, describeEnv, envSpec, readEnv } from '../env.js';
import { startHttpServer } from '../http-server.js';
import { watchParent } from '../parent-watch.js';
import { SIDECAR_ENV } from '../sidecar-env.js';
import { registerBuildInfo, registerDeadLetterGauges } from '../sidecar-metrics.js';
import { cliVersion } from '../version.js';

/** The links that are down, by name, and why: what /readyz puts first so a person sees it at once. */
export function linksDown(links: RelayLinks): { down: string[]; reason: string | undefined } {
  const down = (['postgres', 'rabbitmq'] as const).filter((link) => !links[link].up);
  const reason = down.length === 0 ? undefined : down.map((link) => `${link} is down: ${links[link].error ?? 'unknown'}`).join('; ');
  return { down, reason };
}

// Every relay option but the two objects a process cannot get from its environment: the
// variables, their defaults and their --help lines all come from the relay's own schema; then
// the sidecar's own (HTTP, logging, launcher) and the broker's TLS and authentication.
const RELAY_ENV = combineEnv(combineEnv(envSpec(relayOptionsSchema, { omit: ['logger', 'metrics'] }), SIDECAR_ENV), AMQP_TLS_ENV);

/** `mailroom relay`: the outbox relay as a sidecar process, configured by environment. */
export const relayCommand: Command = {
  help: () =>
    [
      'Usage: mailroom relay',
      '',
      'Publishes committed outbox rows to RabbitMQ with publisher confirms. Serves /healthz, /readyz (JSON: "down"',
      'names the links that are down, "reason" says why) and /metrics (Prometheus) over HTTP. On SIGTERM or SIGINT',
      'it stops claiming, commits the batch in flight and exits 0; it does the same when the process that started',
      'it exits (npx does not forward SIGTERM: run `exec mailroom relay` or `node …/mailroom/dist/main.js relay` in',
      'containers). MAILROOM_LOG_FORMAT=json writes the log as JSON lines.',
      '',
      'MAILROOM_AMQP_URL may list several URLs of one cluster, separated by commas.',
      '',
      'Environment:',
      describeEnv(RELAY_ENV),
    ].join('\n'),
  async run({ argv, env, stdout, stopSignal }) {
    if (argv.length > 0) throw new UsageError(`unexpected argument ${argv.join(' ')}: the relay is configured by environment (see --help)`);
    const {
      httpHost,
      httpPort,
      logLevel,
      logFormat,
      exitWithParent,
      // Applied before start-up (main.ts re-executes the process with it).
      semiSpaceMb: _semiSpaceMb,
      amqpTlsCaFile,
      amqpTlsCertFile,
      amqpTlsKeyFile,
      amqpTlsKeyPassphrase,
      amqpTlsServername,
      amqpTlsRejectUnauthorized,
      amqpAuth,
      ...options
    } = readEnv(env, RELAY_ENV);
    const tlsEnv = { amqpTlsCaFile, amqpTlsCertFile, amqpTlsKeyFile, amqpTlsKeyPassphrase, amqpTlsServername, amqpTlsRejectUnauthorized, amqpAuth };
    const logger = createConsoleLogger({ level: logLevel, format: logFormat, name: options.name });
    const urls = typeof options.amqp === 'string' ? splitAmqpUrls(options.amqp) : [];
    // The sidecar opens the broker connection itself (TLS, EXTERNAL, several URLs) and closes it after the relay stopped.
    const amqp = createAmqpConnection({ ...amqpConnectionOptions(urls, tlsEnv), name: options.name, logger });
    const relay = createRelay({ ...options, amqp, logger });
    // The sidecar's own series beside the relay's: what runs, the process, and the dead letters
    // (read through the store's API on a connection of their own, at most every 30 s).
    relay.metrics.collectProcessMetrics();
    registerBuildInfo(relay.metrics, { version: cliVersion(), instance: options.name });
    const storePool = new pg.Pool({ connectionString: options.database as string, max: 1, application_name: `${options.name}-metrics` });
    storePool.on('error', (error) => logger.debug('metrics database connection failed', { error: describeError(error) }));
    const store = createDeadLetterStore({ db: storePool, schema: options.schema });
    registerDeadLetterGauges(relay.metrics, () => store.groups());
    const endStorePool = (): Promise<void> => storePool.end().catch(() => undefined);

    const stop = new AbortController();
    const onStop = (): void => stop.abort();
    stopSignal.addEventListener('abort', onStop, { once: true });
    if (stopSignal.aborted) stop.abort();
    const unwatch = exitWithParent
      ? watchParent((parent) => {
          logger.warn(`the process that started the relay (pid ${parent}) exited: stopping (MAILROOM_EXIT_WITH_PARENT=false keeps running)`);
          stop.abort();
        })
      : () => undefined;

    let stopping = false;
    const http = await startHttpServer(
      {
        live: () => !stopping,
        readiness: () => {
          const links = relay.links;
          const { down, reason } = linksDown(links);
          return { ready: !stopping && relay.ready, detail: { stopping, down, ...(reason === undefined ? {} : { reason }), links } };
        },
        metrics: () => relay.metrics.render(),
      },
      httpHost,
      httpPort,
    );
    logger.info(`serving /healthz, /readyz and /metrics on ${httpHost}:${http.port}`);
    stdout.write(`${JSON.stringify({ event: 'listening', port: http.port })}\n`);
    try {
      await relay.start();
    } catch (error) {
      unwatch();
      http.server.close();
      await amqp.close();
      await endStorePool();
      throw error;
    }
    // Everything the relay loads is loaded by now: keep it for the next start (see compile-cache.ts).
    flushCliCompileCache();
    if (!stop.signal.aborted) await once(stop.signal, 'abort');
    stopping = true;
    unwatch();
    logger.info('stop requested: finishing the batch in flight');
    await relay.stop();
    await amqp.close();
    http.server.close();
    await endStorePool();
    const s = relay.stats;
    logger.info(`relay exited cleanly: published ${s.published}, returned ${s.returned}, nacked ${s.nacked}, dead-lettered ${s.deadLettered}`);
    return 0;
  },
};
