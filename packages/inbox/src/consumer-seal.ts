import { MailroomError, describeError, isMailroomError, type Queryable } from '@mailroom/core';
import { loadEnvelopeSeal, toExecutor, type EnvelopeSeal } from '@mailroom/core/internal';

/**
 * Loads the envelope seal of `schema` (the key migration 5 wrote into `<schema>.secrets`), which
 * the consumer seals its retry and dead-letter copies with and checks retry state against. Fails
 * with a message that says what to do: migrate when the table or its key is missing, grant
 * SELECT when the role may not read it.
 */
export async function loadConsumerSeal(db: Queryable, schema: string, consumer: string): Promise<EnvelopeSeal> {
  try {
    return await loadEnvelopeSeal(toExecutor(db), schema);
  } catch (error) {
    if (isMailroomError(error)) throw error;
    const code = typeof error === 'object' && error !== null ? (error as { code?: unknown }).code : undefined;
    if (code === '42P01' || code === '3F000') {
      throw new MailroomError(
        'NOT_MIGRATED',
        `Consumer "${consumer}": schema "${schema}" has no secrets table (the key that seals retry and dead-letter copies): run \`mailroom migrate\` (or migrate() from @mailroom/core) first.`,
        { cause: error },
      );
    }
    if (code === '42501') {
      throw new MailroomError('INVALID_CONFIG', `Consumer "${consumer}": its role may not read "${schema}".secrets (the envelope seal's key): GRANT SELECT ON it. ${describeError(error)}`, {
        cause: error,
      });
    }
    throw error;
  }
}
