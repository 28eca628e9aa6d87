// The saga story alone (`pnpm demo` at the root runs it after users/orders).
import { runDemo } from '@mailroom/example-kit/demo-runner';
import { sagaBrokerNames, sagaStory } from './story.mjs';

await runDemo('mailroom example: a choreographed order saga, a database per service', [
  { title: 'orders → inventory → payments: a saga with compensations', run: sagaStory, brokerNames: sagaBrokerNames },
]);
