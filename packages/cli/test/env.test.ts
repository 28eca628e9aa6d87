// The CLI's environment is derived from the options' zod schemas: names, kinds, defaults, --help
// and errors that name the variable. No services needed.
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { relayOptionsSchema } from '@mailroom/outbox';
import { combineEnv, describeEnv, envSpec, readEnv } from '../src/env.js';

const schema = z.strictObject({
  url: z.string().min(1).meta({ env: 'MAILROOM_TEST_URL_X', description: 'where to connect (required)' }),
  batchSize: z.number().int().positive().max(100).default(10).meta({ description: 'rows per batch' }),
  ordering: z.boolean().default(false).meta({ description: 'keep order' }),
  name: z
    .string()
    .default(() => `worker-${process.pid}`)
    .meta({ description: 'instance name', defaultText: 'worker-<pid>' }),
  topology: z
    .strictObject({ queue: z.string().default('q').meta({ description: 'the queue' }) })
    .prefault({})
    .meta({ description: 'where' }),
  logger: z.custom<{ warn(): void }>(() => true).optional(),
});
const spec = envSpec(schema, { omit: ['logger'] });

describe('environment from a zod schema', () => {
  it('names each variable by meta().env or MAILROOM_ + UPPER_SNAKE, with the default of the schema', () => {
    expect(spec.vars.map((v) => [v.name, v.kind, v.defaultText, v.required])).toEqual([
      ['MAILROOM_TEST_URL_X', 'string', undefined, true],
      ['MAILROOM_BATCH_SIZE', 'int', '10', false],
      ['MAILROOM_ORDERING', 'bool', 'false', false],
      ['MAILROOM_NAME', 'string', 'worker-<pid>', false],
      ['MAILROOM_TOPOLOGY_QUEUE', 'string', 'q', false],
    ]);
    const help = describeEnv(spec);
    expect(help).toMatch(/MAILROOM_BATCH_SIZE +rows per batch \(default: 10\)/);
    expect(help).toContain('(default: worker-<pid>)');
    expect(help).not.toContain('MAILROOM_LOGGER');
  });

  it('converts by the zod type and fills in the defaults, computed ones included', () => {
    const read = readEnv({ MAILROOM_TEST_URL_X: 'pg://x', MAILROOM_BATCH_SIZE: '25', MAILROOM_ORDERING: 'yes', MAILROOM_TOPOLOGY_QUEUE: '' }, spec);
    expect(read).toEqual({ url: 'pg://x', batchSize: 25, ordering: true, name: `worker-${process.pid}`, topology: { queue: 'q' } });
  });

  it('names every problem by its variable, in one error', () => {
    expect(() => readEnv({ MAILROOM_BATCH_SIZE: 'lots', MAILROOM_ORDERING: 'maybe' }, spec)).toThrowError(
      'Invalid environment: MAILROOM_BATCH_SIZE must be a whole number, got "lots"; MAILROOM_ORDERING must be true or false, got "maybe"; missing MAILROOM_TEST_URL_X.',
    );
    expect(() => readEnv({ MAILROOM_TEST_URL_X: 'pg://x', MAILROOM_BATCH_SIZE: '500' }, spec)).toThrowError(/MAILROOM_BATCH_SIZE=500: Too big/);
    expect(() => readEnv({ MAILROOM_TEST_URL_X: 'pg://x', MAILROOM_BATHC_SIZE: '5' }, spec)).toThrowError(/unknown variable MAILROOM_BATHC_SIZE/);
  });

  it('gives `mailroom relay` one variable per relay option but the logger and the metrics', () => {
    const relay = combineEnv(envSpec(relayOptionsSchema, { omit: ['logger', 'metrics'] }), envSpec(z.object({ httpPort: z.number().int().default(9464) })));
    const fields = Object.keys(relayOptionsSchema.shape).filter((k) => k !== 'logger' && k !== 'metrics');
    expect(relay.vars.map((v) => v.path.join('.'))).toEqual([...fields, 'httpPort']);
    const names = relay.vars.map((v) => v.name);
    for (const name of ['MAILROOM_DATABASE_URL', 'MAILROOM_AMQP_URL', 'MAILROOM_SCHEMA', 'MAILROOM_BATCH_SIZE', 'MAILROOM_RELAY_NAME', 'MAILROOM_HTTP_PORT']) {
      expect(names).toContain(name);
    }
    expect(describeEnv(relay)).toMatch(/MAILROOM_RELAY_NAME .*\(default: mailroom-relay-<pid>\)/);
  });
});
