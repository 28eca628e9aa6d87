import { MailroomError, describeError } from '@mailroom/core';

const LOGIN_REFUSED = /\b403 \(ACCESS[-_]REFUSED\)|ACCESS_REFUSED - Login was refused/;

/**
 * The error `start()` rejects with when RabbitMQ refused the consumer's topology or subscription
 * for a reason another try cannot fix; undefined for what is worth retrying (a lost connection,
 * a broker restarting, a queue being deleted while it is declared).
 *
 * - 403 ACCESS_REFUSED: the user lacks configure, write or read permission, or a name is reserved;
 * - 404 NOT_FOUND: something the consumer relies on does not exist and it does not declare it;
 * - 406 PRECONDITION_FAILED: a queue or exchange exists with other arguments;
 * - 530 NOT_ALLOWED: the virtual host refuses the operation;
 * - a TypeError or RangeError from amqplib: it refused to encode a frame (a name over 255 bytes).
 */
export function permanentStartError(consumer: string, queue: string, error: unknown): MailroomError | undefined {
  const code = typeof error === 'object' && error !== null ? (error as { code?: unknown }).code : undefined;
  const said = describeError(error);
  const fail = (why: string): MailroomError => new MailroomError('INVALID_CONFIG', `Consumer "${consumer}": RabbitMQ refused the topology: ${said}. ${why}`, { cause: error });
  switch (code) {
    case 403:
      return fail(
        `Retrying cannot fix it: give the user configure, write and read permission on the work queue "${queue}", its delay queues ("${queue}.retry.*"), the dead-letter exchange and queue and the bound exchanges (rabbitmqctl set_permissions), or use names outside the reserved "amq." prefix.`,
      );
    case 404:
      return fail('Retrying cannot fix it: declare what is missing, or check the names in the options.');
    case 406:
      return fail('An existing queue or exchange has other arguments (queueType? a topic exchange declared with another type?); delete it or use another name.');
    case 530:
      return fail('The virtual host does not allow it: check the vhost in the URL and the user\'s access to it.');
    default:
      break;
  }
  if (error instanceof TypeError || error instanceof RangeError) return fail('amqplib refused to encode it (a name over 255 bytes?); fix the options.');
  return undefined;
}

/**
 * The error `start()` rejects with when the broker refused the login itself (wrong user or
 * password): reconnecting with the same credentials would be refused forever.
 */
export function loginRefusedError(consumer: string, error: unknown): MailroomError | undefined {
  if (!LOGIN_REFUSED.test(describeError(error))) return undefined;
  return new MailroomError(
    'INVALID_CONFIG',
    `Consumer "${consumer}": RabbitMQ refused the login (403 ACCESS_REFUSED): check the user and password in the AMQP URL. ${describeError(error)}`,
    { cause: error },
  );
}
