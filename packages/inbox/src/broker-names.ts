import { MailroomError } from '@mailroom/core';
import { PUBLISH_LIMITS } from '@mailroom/core/internal';
import type { QueueBinding } from './consumer-options.js';

// Control characters (NUL included) in a broker name are never intended, print badly in every
// tool, and some brokers' management APIs cannot address such a queue at all.
const CONTROL = /[\u0000-\u001f\u007f]/;

/** The one `amq.*` exchange a consumer may bind to: every exchange it declares is a durable topic exchange. */
const PREDECLARED_TOPIC_EXCHANGE = 'amq.topic';

function shortStringProblem(value: string): string | undefined {
  const bytes = Buffer.byteLength(value);
  if (bytes > PUBLISH_LIMITS.shortStringBytes) return `is ${bytes} bytes of UTF-8, over AMQP's limit of ${PUBLISH_LIMITS.shortStringBytes} bytes for a name`;
  if (CONTROL.test(value)) return 'contains a control character';
  return undefined;
}

/** Why `name` cannot be a queue the consumer declares, or undefined. */
export function queueNameProblem(name: string): string | undefined {
  if (name.startsWith('amq.')) return 'starts with "amq.", a prefix RabbitMQ reserves (it refuses to declare such a queue with 403 ACCESS_REFUSED)';
  return shortStringProblem(name);
}

/** Why `name` cannot be an exchange the consumer declares as a durable topic exchange, or undefined. */
export function exchangeNameProblem(name: string): string | undefined {
  if (name.startsWith('amq.') && name !== PREDECLARED_TOPIC_EXCHANGE) {
    return `starts with "amq.", a prefix RabbitMQ reserves (only the predeclared "${PREDECLARED_TOPIC_EXCHANGE}" is a topic exchange a consumer can bind to)`;
  }
  return shortStringProblem(name);
}

/** What the consumer declares on the broker, by the option that names it. */
export interface BrokerNames {
  /** The work queue, and the option it came from (`queue`, or `name` when no queue was given). */
  queue: { option: 'queue' | 'name'; value: string };
  /** The delay queues derived from the work queue. */
  delayQueues: readonly string[];
  /** What the work queue is bound to; `fromContracts` when derived from the handlers' contracts. */
  bindings: readonly QueueBinding[];
  bindingsFromContracts: boolean;
  deadLetters: { exchange: string; queue: string };
}

/**
 * Checks every name the consumer will declare on the broker, so that what RabbitMQ would refuse
 * on every try (a reserved `amq.*` name, a name over 255 bytes, which amqplib refuses before it is
 * sent) fails when the consumer is created, naming the option. Throws `INVALID_CONFIG`.
 */
export function checkBrokerNames(names: BrokerNames): void {
  const problems: string[] = [];
  const add = (option: string, problem: string | undefined, what = ''): void => {
    if (problem !== undefined) problems.push(`"${option}": ${what}${problem}`);
  };
  const { option, value } = names.queue;
  const queueProblem = queueNameProblem(value);
  add(option, queueProblem, option === 'name' ? 'the name is also the work queue (no "queue" given), which ' : 'the queue ');
  if (queueProblem === undefined) {
    const longest = names.delayQueues.reduce((a, b) => (Buffer.byteLength(b) > Buffer.byteLength(a) ? b : a), '');
    const bytes = Buffer.byteLength(longest);
    if (bytes > PUBLISH_LIMITS.shortStringBytes) {
      add(option, `its delay queue "${longest.slice(0, 40)}…" would be ${bytes} bytes, over AMQP's limit of ${PUBLISH_LIMITS.shortStringBytes}; shorten the queue name`);
    }
  }
  names.bindings.forEach((b, i) => {
    const [exchange, key] = names.bindingsFromContracts ? ['handlers', 'handlers'] : [`bindings.${i}.exchange`, `bindings.${i}.routingKey`];
    const of = names.bindingsFromContracts ? `a contract's ` : 'the ';
    add(exchange, exchangeNameProblem(b.exchange), `${of}exchange ${JSON.stringify(b.exchange.slice(0, 60))} `);
    add(key, shortStringProblem(b.routingKey), `${of}binding key `);
  });
  add('deadLetters.exchange', exchangeNameProblem(names.deadLetters.exchange), 'the exchange ');
  add('deadLetters.queue', queueNameProblem(names.deadLetters.queue), 'the queue ');
  if (problems.length > 0) {
    throw new MailroomError('INVALID_CONFIG', `Invalid consumer options: ${problems.join('; ')}`, { details: { issues: problems } });
  }
}
