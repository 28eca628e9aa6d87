import { randomBytes } from 'node:crypto';
import { createAmqpConnection, describeError, isMailroomError, type AmqpConnectionOptions } from '@mailroom/core';
import type { DoctorCheck } from './doctor-check.js';

/**
 * Plugins `mailroom doctor` can check without the management plugin: each adds an exchange type,
 * and declaring a temporary exchange of that type shows whether it is enabled (RabbitMQ refuses
 * an unknown type with 503 COMMAND_INVALID).
 */
export const PLUGIN_EXCHANGE_TYPES: Readonly<Record<string, { type: string; arguments?: Record<string, unknown>; neededBy: string }>> = {
  rabbitmq_consistent_hash_exchange: { type: 'x-consistent-hash', neededBy: 'partitioned consumers (keyed messages spread over partition queues)' },
  rabbitmq_random_exchange: { type: 'x-random', neededBy: 'nothing in mailroom (checked on request)' },
  rabbitmq_recent_history_exchange: { type: 'x-recent-history', neededBy: 'nothing in mailroom (checked on request)' },
  rabbitmq_sharding: { type: 'x-modulus-hash', neededBy: 'nothing in mailroom (checked on request)' },
  rabbitmq_delayed_message_exchange: { type: 'x-delayed-message', arguments: { 'x-delayed-type': 'topic' }, neededBy: 'nothing in mailroom (checked on request)' },
};

/** The plugin checked on every run (reported as a note when missing and not asked for). */
const ALWAYS_PROBED = 'rabbitmq_consistent_hash_exchange';

/** What the broker checks need to know. */
export interface BrokerCheckOptions {
  /** How to connect (URLs, TLS, authentication), as for the relay. */
  connection: Pick<AmqpConnectionOptions, 'url' | 'tls' | 'auth'>;
  /** Temporary names start with it: `<prefix>doctor-<random>` (the names your permissions allow). */
  prefix: string;
  /** Plugins the configuration needs: a missing one fails. */
  requiredPlugins: readonly string[];
}

type Channel = Awaited<ReturnType<Awaited<ReturnType<ReturnType<typeof createAmqpConnection>['connectOnce']>>['createChannel']>>;
type Connection = Awaited<ReturnType<ReturnType<typeof createAmqpConnection>['connectOnce']>>;

/** Runs `fn` on a fresh channel (a refusal closes the channel it happens on), and closes it. */
async function onChannel<T>(connection: Connection, fn: (channel: Channel) => Promise<T>): Promise<T> {
  const channel = await connection.createChannel();
  channel.on('error', () => undefined);
  try {
    return await fn(channel);
  } finally {
    await channel.close().catch(() => undefined);
  }
}

/**
 * Connects, then tests on a temporary exchange and queue named under `prefix`: configure
 * (declare, delete), write (publish to the exchange, confirmed), read (consume from the queue) and
 * bind (what a consumer does: write on its queue, read on the exchange); then checks plugins by
 * declaring an exchange of each plugin's type, each on a connection of its own since RabbitMQ
 * closes the whole connection on an unknown exchange type. Everything temporary is deleted.
 */
export async function checkBroker(options: BrokerCheckOptions): Promise<DoctorCheck[]> {
  const checks: DoctorCheck[] = [];
  const amqp = createAmqpConnection({ ...options.connection, name: 'mailroom-doctor' });
  const name = `${options.prefix}doctor-${randomBytes(4).toString('hex')}`;
  let configured = false;
  try {
    let connection: Connection;
    try {
      connection = await amqp.connectOnce();
    } catch (error) {
      checks.push({ name: 'rabbitmq', status: 'fail', message: isMailroomError(error) ? error.message : describeError(error) });
      return checks;
    }
    const last: { error: Error | undefined } = { error: undefined };
    connection.on('error', (error: Error) => (last.error = error));
    const props = (connection.connection as unknown as { serverProperties?: { version?: string } }).serverProperties;
    checks.push({ name: 'rabbitmq', status: 'ok', message: `RabbitMQ ${props?.version ?? ''} at ${amqp.displayUrl}` });

    const channelError = async (fn: (channel: Channel) => Promise<unknown>): Promise<string | undefined> => {
      let problem: string | undefined;
      const onError = (error: Error): void => void (problem ??= describeError(error));
      try {
        await onChannel(connection, async (channel) => {
          channel.on('error', onError);
          await fn(channel);
        });
      } catch (error) {
        // The channel's own error says why; a connection-level one (amqplib then only says
        // "Channel ended") is the connection's.
        problem ??= describeError(last.error ?? error);
      }
      return problem;
    };
    const permission = (what: 'configure' | 'write' | 'read' | 'bind', problem: string | undefined, does: string): void => {
      if (problem === undefined) checks.push({ name: `permission:${what}`, status: 'ok', message: `${what} on ${name}: ${does}` });
      else
        checks.push({
          name: `permission:${what}`,
          status: 'fail',
          message: `${what} on ${name} refused: ${problem}`,
          fix: `grant ${what === 'bind' ? 'write (queues) and read (exchanges)' : what} on names starting with "${options.prefix}": rabbitmqctl set_permissions -p <vhost> <user> <configure> <write> <read>`,
        });
    };

    const configure = await channelError(async (channel) => {
      await channel.assertExchange(name, 'topic', { durable: false, autoDelete: false });
      configured = true;
      await channel.assertQueue(name, { durable: false, exclusive: false, autoDelete: false });
    });
    permission('configure', configure, 'declared an exchange and a queue');
    if (configure !== undefined) {
      for (const what of ['write', 'read', 'bind'] as const) {
        checks.push({ name: `permission:${what}`, status: 'skip', message: `${what}: not tested (no exchange and queue of its own to test on without configure)` });
      }
    } else {
      const write = await channelError(async () => {
        const confirm = await connection.createConfirmChannel();
        let refused: Error | undefined;
        confirm.on('error', (error: Error) => void (refused ??= error));
        try {
          confirm.publish(name, 'doctor', Buffer.from('{}'), { contentType: 'application/json' });
          await confirm.waitForConfirms();
        } catch (error) {
          // A refused publish closes the channel: its error says why, the rejection only "channel closed".
          throw refused ?? error;
        } finally {
          await confirm.close().catch(() => undefined);
        }
      });
      permission('write', write, 'published a message to the exchange');
      const read = await channelError(async (channel) => {
        const { consumerTag } = await channel.consume(name, () => undefined, { noAck: true });
        await channel.cancel(consumerTag);
      });
      permission('read', read, 'consumed from the queue');
      const bind = await channelError(async (channel) => {
        await channel.bindQueue(name, name, '#');
      });
      permission('bind', bind, 'bound the queue to the exchange');
    }
    // Clean-up needs configure; a declare that half-worked (exchange yes, queue no) is cleaned too.
    if (configured) {
      await channelError(async (channel) => {
        await channel.deleteQueue(name);
        await channel.deleteExchange(name);
      });
    }
  } finally {
    await amqp.close();
  }

  const plugins = [...new Set([ALWAYS_PROBED, ...options.requiredPlugins])];
  for (const plugin of plugins) checks.push(await checkPlugin(options, plugin, configured));
  return checks;
}

async function checkPlugin(options: BrokerCheckOptions, plugin: string, canConfigure: boolean): Promise<DoctorCheck> {
  const spec = PLUGIN_EXCHANGE_TYPES[plugin];
  const required = options.requiredPlugins.includes(plugin);
  const enable = `rabbitmq-plugins enable ${plugin}`;
  if (spec === undefined) return { name: `plugin:${plugin}`, status: 'fail', message: `${plugin}: mailroom doctor cannot check this plugin` };
  if (!canConfigure) {
    return { name: `plugin:${plugin}`, status: required ? 'fail' : 'skip', message: `${plugin}: not checked (the check declares an exchange, which needs configure permission)` };
  }
  const name = `${options.prefix}doctor-${randomBytes(4).toString('hex')}`;
  const amqp = createAmqpConnection({ ...options.connection, name: 'mailroom-doctor-plugin' });
  let closedWith: string | undefined;
  try {
    const connection = await amqp.connectOnce();
    connection.on('error', (error: Error) => (closedWith ??= describeError(error)));
    try {
      await onChannel(connection, async (channel) => {
        await channel.assertExchange(name, spec.type, { durable: false, autoDelete: false, ...(spec.arguments ? { arguments: spec.arguments } : {}) });
        await channel.deleteExchange(name);
      });
      return { name: `plugin:${plugin}`, status: 'ok', message: `${plugin} is enabled (declared an exchange of type ${spec.type})` };
    } catch (error) {
      // Give the connection's close a moment to tell why: amqplib rejects with "Channel ended" first.
      await new Promise((resolve) => setTimeout(resolve, 50));
      const why = closedWith ?? describeError(error);
      if (/unknown exchange type|COMMAND.INVALID/i.test(why)) {
        return {
          name: `plugin:${plugin}`,
          status: required ? 'fail' : 'note',
          message: `${plugin} is not enabled (RabbitMQ does not know exchange type ${spec.type}); needed by ${spec.neededBy}`,
          fix: enable,
        };
      }
      return { name: `plugin:${plugin}`, status: required ? 'fail' : 'skip', message: `${plugin}: could not check: ${why}` };
    }
  } catch (error) {
    return { name: `plugin:${plugin}`, status: required ? 'fail' : 'skip', message: `${plugin}: could not check: ${describeError(error)}` };
  } finally {
    await amqp.close();
  }
}
