// Runs stories as a demo: finds PostgreSQL and RabbitMQ, checks they answer (and says how to start
// them when they do not), runs each story with readable progress, cleans the broker up, and sets
// the exit code: 0 only when every step converged.
//
//   MAILROOM_DATABASE_URL  default postgres://postgres@127.0.0.1:5432/test (needs CREATE DATABASE)
//   MAILROOM_AMQP_URL      default amqp://guest:guest@127.0.0.1:5672
//   With neither set and a Docker engine present, both are started with testcontainers.
//   --verbose              also print every line the services log
import { execSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { redactUrl } from '@mailroom/core';
import { DEFAULT_AMQP_URL, DEFAULT_DATABASE_URL } from './kit.mjs';
import { checkServices, cleanupBroker } from './orchestra.mjs';

function dockerAvailable() {
  try {
    execSync('docker info', { stdio: 'ignore', timeout: 5000 });
    return true;
  } catch {
    return false;
  }
}

// Only when asked for: the demo must run where testcontainers (or Docker) is not installed.
async function startContainers(say) {
  say('•', 'no MAILROOM_DATABASE_URL / MAILROOM_AMQP_URL and a Docker engine: starting PostgreSQL and RabbitMQ with testcontainers');
  const { GenericContainer, Wait } = await import('testcontainers');
  const [postgres, rabbit] = await Promise.all([
    new GenericContainer('postgres:17-alpine')
      .withEnvironment({ POSTGRES_PASSWORD: 'mailroom', POSTGRES_DB: 'mailroom' })
      .withExposedPorts(5432)
      .withWaitStrategy(Wait.forLogMessage(/database system is ready to accept connections/, 2))
      .start(),
    new GenericContainer('rabbitmq:4-alpine').withExposedPorts(5672).withWaitStrategy(Wait.forLogMessage(/Server startup complete/)).start(),
  ]);
  return {
    databaseUrl: `postgres://postgres:mailroom@${postgres.getHost()}:${postgres.getMappedPort(5432)}/mailroom`,
    amqpUrl: `amqp://guest:guest@${rabbit.getHost()}:${rabbit.getMappedPort(5672)}`,
    stop: async () => {
      await Promise.all([postgres.stop(), rabbit.stop()]);
    },
  };
}

const t0 = Date.now();
const stamp = () => `${((Date.now() - t0) / 1000).toFixed(1).padStart(5)}s`;

/** Prints `<time>  <icon>  <text>`. */
export function say(icon, text) {
  console.log(`${stamp()}  ${icon}  ${text}`);
}

/**
 * @param {string} title
 * @param {Array<{ title: string, run: (ctx: object) => Promise<object>, brokerNames: (prefix: string) => { queues: string[], exchanges: string[] } }>} chapters
 */
export async function runDemo(title, chapters) {
  const verbose = process.argv.includes('--verbose');
  let code = 1;
  let containers;
  try {
    let databaseUrl = process.env.MAILROOM_DATABASE_URL;
    let amqpUrl = process.env.MAILROOM_AMQP_URL;
    if (databaseUrl === undefined && amqpUrl === undefined && dockerAvailable()) {
      containers = await startContainers(say);
      ({ databaseUrl, amqpUrl } = containers);
    }
    databaseUrl ??= DEFAULT_DATABASE_URL;
    amqpUrl ??= DEFAULT_AMQP_URL;
    say('•', `${title}`);
    say('•', `PostgreSQL ${redactUrl(databaseUrl)} · RabbitMQ ${redactUrl(amqpUrl)}`);
    await checkServices(databaseUrl, amqpUrl);
    // A fresh prefix per run: exchanges and queues of other runs (or a crashed one) never meet ours.
    const prefix = `mailroom-demo-${randomBytes(3).toString('hex')}`;
    say('•', `exchange and queue prefix ${prefix} (deleted at the end)`);
    const onLine = verbose ? (name, line) => console.log(`         ${name.padEnd(11)} | ${line}`) : undefined;
    const results = [];
    for (const chapter of chapters) {
      console.log('');
      say('#', chapter.title);
      try {
        results.push(await chapter.run({ databaseUrl, amqpUrl, prefix, say, onLine }));
      } finally {
        await cleanupBroker(amqpUrl, chapter.brokerNames(prefix)).catch((error) => say('!', `broker clean-up failed: ${error.message}`));
      }
    }
    console.log('');
    say('✓', `every step converged (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
    code = 0;
  } catch (error) {
    console.log('');
    say('✗', `FAILED: ${error.message}`);
    if (!verbose && !error.unreachable) say('•', 'run again with --verbose to see what the services logged');
  } finally {
    if (containers) await containers.stop().catch(() => undefined);
  }
  process.exit(code);
}
