// `pnpm demo`: the whole story. Four examples, thirteen services, thirteen databases, two sidecar relays:
//   1. users → orders: a projection kept in step by events, order history across an email
//      change, a poison event in the dead letters, the fix, `mailroom dlq replay`;
//   2. orders → inventory → payments: a choreographed saga with its compensations;
//   3. the same order saga orchestrated (@mailroom/saga): commands, a payment timeout, compensations,
//      and the orchestrator and payments killed with SIGKILL mid-flight;
//   4. the strangler fig: users taken out of a monolith (outbox instead of dual write, the past as
//      snapshots in the archive, a backfill by `mailroom history replay`, user.created v2 beside an
//      old consumer, reads switched, a reconciliation, a reporting service rebuilt from history).
// Exits 0 only if every step converged. Options: --verbose (service logs). Environment:
// MAILROOM_DATABASE_URL, MAILROOM_AMQP_URL (see examples/README.md).
import { runDemo } from '@mailroom/example-kit/demo-runner';
import { usersOrdersBrokerNames, usersOrdersStory } from '@mailroom/example-users-orders/story';
import { sagaBrokerNames, sagaStory } from '@mailroom/example-order-saga/story';
import { orchestrationBrokerNames, orchestrationStory } from '@mailroom/example-order-orchestration/story';
import { stranglerBrokerNames, stranglerStory } from '@mailroom/example-strangler-fig/story';

await runDemo('mailroom demo: a database per service, kept in step by events', [
  { title: '1/4  users → orders: a projection kept in step by events', run: usersOrdersStory, brokerNames: usersOrdersBrokerNames },
  { title: '2/4  orders → inventory → payments: a saga with compensations', run: sagaStory, brokerNames: sagaBrokerNames },
  {
    title: '3/4  orders ⇄ inventory, payments: an orchestrated saga with timeouts, killed mid-flight',
    run: orchestrationStory,
    brokerNames: orchestrationBrokerNames,
  },
  {
    title: '4/4  monolith → users service: the strangler fig (outbox, history replay, v2 beside an old consumer, reconciliation)',
    run: stranglerStory,
    brokerNames: stranglerBrokerNames,
  },
]);
