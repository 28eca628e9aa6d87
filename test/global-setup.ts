import { execSync } from 'node:child_process';
import type { TestProject } from 'vitest/node';

declare module 'vitest' {
  export interface ProvidedContext {
    databaseUrl: string;
    amqpUrl: string;
  }
}

const DEFAULT_DATABASE_URL = 'postgres://postgres@127.0.0.1:5432/test';
const DEFAULT_AMQP_URL = 'amqp://guest:guest@127.0.0.1:5672';

function dockerAvailable(): boolean {
  try {
    execSync('docker info', { stdio: 'ignore', timeout: 5000 });
    return true;
  } catch {
    return false;
  }
}

/**
 * Finds PostgreSQL and RabbitMQ for the test run: URLs from MAILROOM_TEST_DATABASE_URL and
 * MAILROOM_TEST_AMQP_URL; without them, containers started by testcontainers when a Docker engine
 * is there; without one, the local defaults.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  let databaseUrl = process.env.MAILROOM_TEST_DATABASE_URL;
  let amqpUrl = process.env.MAILROOM_TEST_AMQP_URL;
  const stops: Array<() => Promise<unknown>> = [];
  if ((databaseUrl === undefined || amqpUrl === undefined) && dockerAvailable()) {
    const { GenericContainer, Wait } = await import('testcontainers');
    if (databaseUrl === undefined) {
      const pg = await new GenericContainer('postgres:17-alpine')
        .withEnvironment({ POSTGRES_PASSWORD: 'mailroom', POSTGRES_DB: 'test' })
        .withExposedPorts(5432)
        .withWaitStrategy(Wait.forLogMessage(/database system is ready to accept connections/, 2))
        .start();
      stops.push(() => pg.stop());
      databaseUrl = `postgres://postgres:mailroom@${pg.getHost()}:${pg.getMappedPort(5432)}/test`;
    }
    if (amqpUrl === undefined) {
      const mq = await new GenericContainer('rabbitmq:4-alpine')
        .withExposedPorts(5672)
        .withWaitStrategy(Wait.forLogMessage(/Server startup complete/))
        .start();
      stops.push(() => mq.stop());
      amqpUrl = `amqp://guest:guest@${mq.getHost()}:${mq.getMappedPort(5672)}`;
    }
  }
  project.provide('databaseUrl', databaseUrl ?? DEFAULT_DATABASE_URL);
  project.provide('amqpUrl', amqpUrl ?? DEFAULT_AMQP_URL);
  return async () => {
    for (const stop of stops) await stop();
  };
}
