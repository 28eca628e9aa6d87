// The users/orders story alone (`pnpm demo` at the root runs it with the saga).
import { runDemo } from '@mailroom/example-kit/demo-runner';
import { usersOrdersBrokerNames, usersOrdersStory } from './story.mjs';

await runDemo('mailroom example: users and orders, a database each', [
  { title: 'users → orders: a projection kept in step by events', run: usersOrdersStory, brokerNames: usersOrdersBrokerNames },
]);
