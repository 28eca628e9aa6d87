import { once } from 'node:events';
import { createConsoleLogger, MailroomError, type LogLevel } from '@mailroom/core';
import { createRelay } from '@mailroom/outbox';
import type { Command } from '../command.js';
import { UsageError } from '../command.js';
import { AMQP_VARS, DATABASE_VARS, declareEnv, describeEnv, readEnv, type EnvVar } from '../env.js';
import { startHttpServer } from '../http-server.js';

const RELAY_VARS: EnvVar[] = declareEnv([
  ...DATABASE_VARS,
  ...AMQP_VARS,
  { name: 'MAILROOM_HTTP_HOST', description: 'address of the /healthz, /readyz and /metrics server', default: '0.0.0.0' },
  { name: 'MAILROOM_HTTP_PORT', description: 'port of that server (0 picks a free one)', default: '9464' },
  { name: 'MAILROOM_BATCH_SIZE', description: 'rows claimed and published per batch', default: '500' },
  { name: 'MAILROOM_CONCURRENCY', description: 'batches in flight at once (without ordering)', default: '3' },
  { name: 'MAILROOM_POLL_INTERVAL_MS', description: 'poll interval, the safety net for a lost NOTIFY', default: '1000' },
  { name: 'MAILROOM_PUBLISH_TIMEOUT_MS', description: 'wait for publisher confirms before retrying', default: '10000' },
  { name: 'MAILROOM_RETRY_INITIAL_DELAY_MS', description: 'first retry delay of a failed row (doubles per attempt)', default: '500' },
  { name: 'MAILROOM_RETRY_MAX_DELAY_MS', description: 'longest retry delay of a failed row', default: '60000' },
  { name: 'MAILROOM_MAX_UNROUTABLE_ATTEMPTS', description: 'attempts before an unroutable row becomes a dead letter', default: '10' },
  { name: 'MAILROOM_MAX_MESSAGE_BYTES', description: 'largest payload; larger rows become dead letters', default: '4194304' },
  { name: 'MAILROOM_ORDERING', description: "publish each key's events in outbox order (true/false)", default: 'false' },
  { name: 'MAILROOM_PARTITIONS', description: 'key-space partitions leased among relays in ordering mode', default: '64' },
  { name: 'MAILROOM_LEASE_HEARTBEAT_MS', description: 'lease renewal and rebalancing interval in ordering mode', default: '1000' },
  { name: 'MAILROOM_DECLARE_EXCHANGES', description: 'declare missing exchanges as durable topic exchanges', default: 'true' },
  { name: 'MAILROOM_SHUTDOWN_TIMEOUT_MS', description: 'how long SIGTERM waits for the batch in flight', default: '30000' },
  { name: 'MAILROOM_RELAY_NAME', description: 'instance name in logs and connection names', default: 'mailroom-relay-<pid>' },
  { name: 'MAILROOM_LOG_LEVEL', description: 'debug, info, warn or error', default: 'info' },
]);

function int(vars: Record<string, string>, name: string, min = 1): number {
  const text = vars[name] ?? '';
  const value = Number(text);
  if (!/^\d+$/.test(text) || value < min) throw new MailroomError('INVALID_CONFIG', `${name} must be a whole number >= ${min}, got "${text}".`);
  return value;
}

function bool(vars: Record<string, string>, name: string): boolean {
  const text = (vars[name] ?? '').toLowerCase();
  if (['true', '1', 'yes', 'on'].includes(text)) return true;
  if (['false', '0', 'no', 'off'].includes(text)) return false;
  throw new MailroomError('INVALID_CONFIG', `${name} must be true or false, got "${vars[name] ?? ''}".`);
}

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
      describeEnv(RELAY_VARS),
    ].join('\n'),
  async run({ argv, env, stdout, stopSignal }) {
    if (argv.length > 0) throw new UsageError(`unexpected argument ${argv.join(' ')}: the relay is configured by environment (see --help)`);
    const vars = readEnv(env, RELAY_VARS);
    const level = vars.MAILROOM_LOG_LEVEL as LogLevel;
    if (!['debug', 'info', 'warn', 'error'].includes(level)) throw new MailroomError('INVALID_CONFIG', `MAILROOM_LOG_LEVEL must be debug, info, warn or error.`);
    const name = vars.MAILROOM_RELAY_NAME === 'mailroom-relay-<pid>' ? `mailroom-relay-${process.pid}` : (vars.MAILROOM_RELAY_NAME as string);
    const logger = createConsoleLogger({ level, name });
    const relay = createRelay({
      database: vars.MAILROOM_DATABASE_URL as string,
      amqp: vars.MAILROOM_AMQP_URL as string,
      schema: vars.MAILROOM_SCHEMA,
      batchSize: int(vars, 'MAILROOM_BATCH_SIZE'),
      concurrency: int(vars, 'MAILROOM_CONCURRENCY'),
      pollIntervalMs: int(vars, 'MAILROOM_POLL_INTERVAL_MS'),
      publishTimeoutMs: int(vars, 'MAILROOM_PUBLISH_TIMEOUT_MS'),
      retryInitialDelayMs: int(vars, 'MAILROOM_RETRY_INITIAL_DELAY_MS'),
      retryMaxDelayMs: int(vars, 'MAILROOM_RETRY_MAX_DELAY_MS'),
      maxUnroutableAttempts: int(vars, 'MAILROOM_MAX_UNROUTABLE_ATTEMPTS'),
      maxMessageBytes: int(vars, 'MAILROOM_MAX_MESSAGE_BYTES'),
      ordering: bool(vars, 'MAILROOM_ORDERING'),
      partitions: int(vars, 'MAILROOM_PARTITIONS'),
      leaseHeartbeatMs: int(vars, 'MAILROOM_LEASE_HEARTBEAT_MS'),
      declareExchanges: bool(vars, 'MAILROOM_DECLARE_EXCHANGES'),
      shutdownTimeoutMs: int(vars, 'MAILROOM_SHUTDOWN_TIMEOUT_MS'),
      name,
      logger,
    });
    let stopping = false;
    const http = await startHttpServer(
      { live: () => !stopping, ready: () => !stopping && relay.ready, metrics: () => relay.metrics.render() },
      vars.MAILROOM_HTTP_HOST as string,
      int(vars, 'MAILROOM_HTTP_PORT', 0),
    );
    logger.info(`serving /healthz, /readyz and /metrics on ${vars.MAILROOM_HTTP_HOST}:${http.port}`);
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
    const c = relay.counters();
    logger.info(`relay exited cleanly: published ${c.published}, returned ${c.returned}, nacked ${c.nacked}, dead-lettered ${c.deadLettered}`);
    return 0;
  },
};
