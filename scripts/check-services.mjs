// Checks that PostgreSQL and RabbitMQ are reachable before the tests start, and says what to do
// when they are not. With no URLs in the environment and a Docker engine present, the tests start
// their own containers (testcontainers), so there is nothing to check.
import { connect } from 'node:net';
import { execSync } from 'node:child_process';

const DEFAULTS = {
  MAILROOM_TEST_DATABASE_URL: 'postgres://postgres@127.0.0.1:5432/test',
  MAILROOM_TEST_AMQP_URL: 'amqp://guest:guest@127.0.0.1:5672',
};
const START = {
  MAILROOM_TEST_DATABASE_URL:
    'start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start  (or set MAILROOM_TEST_DATABASE_URL)',
  MAILROOM_TEST_AMQP_URL: 'start it with: rabbitmq-server -detached  (or set MAILROOM_TEST_AMQP_URL)',
};

function dockerAvailable() {
  try {
    execSync('docker info', { stdio: 'ignore', timeout: 5000 });
    return true;
  } catch {
    return false;
  }
}

function reachable(urlText, defaultPort) {
  const url = new URL(urlText);
  return new Promise((resolve) => {
    const socket = connect({ host: url.hostname, port: Number(url.port || defaultPort) });
    const done = (ok) => { socket.destroy(); resolve(ok); };
    socket.setTimeout(3000, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

const given = Object.keys(DEFAULTS).some((k) => process.env[k]);
if (!given && dockerAvailable()) {
  console.log('check-services: no MAILROOM_TEST_*_URL set and a Docker engine is present: tests will start containers.');
  process.exit(0);
}
let failed = false;
for (const [name, fallback] of Object.entries(DEFAULTS)) {
  const url = process.env[name] ?? fallback;
  const port = name.includes('AMQP') ? 5672 : 5432;
  const shown = url.replace(/(\/\/[^:@/]*:)[^@/]*@/, '$1***@');
  if (await reachable(url, port)) {
    console.log(`check-services: ${name.includes('AMQP') ? 'RabbitMQ' : 'PostgreSQL'} reachable at ${shown}`);
  } else {
    failed = true;
    console.error(`check-services: cannot reach ${name.includes('AMQP') ? 'RabbitMQ' : 'PostgreSQL'} at ${shown}; ${START[name]}`);
  }
}
process.exit(failed ? 1 : 0);
