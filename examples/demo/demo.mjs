// `pnpm demo`: the whole story. Three examples, eight services, eight databases, one sidecar relay:
//   1. users → orders: a projection kept in step by events, order history across an email
//      change, a poison event in the dead letters, the fix, `mailroom dlq replay`;
//   2. orders → inventory → payments: a choreographed saga with its compensations;
//   3. the same order saga orchestrated (@mailroom/saga): commands, a payment timeout, compensations,
//      and the orchestrator and payments killed with SIGKILL mid-flight.
// Exits 0 only if every step converged. Options: --verbose (service logs). Environment:
// MAILROOM_DATABASE_URL, MAILROOM_AMQP_URL (see examples/README.md).
import { runDemo } from '@mailroom/example-kit/demo-runner';
import { usersOrdersBrokerNames, usersOrdersStory } from '@mailroom/example-users-orders/story';
import { sagaBrokerNames, sagaStory } from '@mailroom/example-order-saga/story';
import { orchestrationBrokerNames, orchestrationStory } from '@mailroom/example-order-orchestration/story';

await runDemo('mailroom demo: a database per service, kept in step by events', [
  { title: '1/3  users → orders: a projection kept in step by events', run: usersOrdersStory, brokerNames: usersOrdersBrokerNames },
  { title: '2/3  orders → inventory → payments: a saga with compensations', run: sagaStory, brokerNames: sagaBrokerNames },
  {
    title: '3/3  orders ⇄ inventory, payments: an orchestrated saga with timeouts, killed mid-flight',
    run: orchestrationStory,
    brokerNames: orchestrationBrokerNames,
  },
]);
