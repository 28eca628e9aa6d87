// `pnpm demo`: the whole story. Two examples, five services, five databases, one sidecar relay:
//   1. users → orders: a projection kept in step by events, order history across an email
//      change, a poison event in the dead letters, the fix, `mailroom dlq replay`;
//   2. orders → inventory → payments: a choreographed saga with its compensations.
// Exits 0 only if every step converged. Options: --verbose (service logs). Environment:
// MAILROOM_DATABASE_URL, MAILROOM_AMQP_URL (see examples/README.md).
import { runDemo } from '@mailroom/example-kit/demo-runner';
import { usersOrdersBrokerNames, usersOrdersStory } from '@mailroom/example-users-orders/story';
import { sagaBrokerNames, sagaStory } from '@mailroom/example-order-saga/story';

await runDemo('mailroom demo: a database per service, kept in step by events', [
  { title: '1/2  users → orders: a projection kept in step by events', run: usersOrdersStory, brokerNames: usersOrdersBrokerNames },
  { title: '2/2  orders → inventory → payments: a saga with compensations', run: sagaStory, brokerNames: sagaBrokerNames },
]);
