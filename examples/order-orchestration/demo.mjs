// The orchestrated saga story alone (`pnpm demo` at the root runs it as story 4).
import { runDemo } from '@mailroom/example-kit/demo-runner';
import { orchestrationBrokerNames, orchestrationStory } from './story.mjs';

await runDemo('mailroom example: an orchestrated order saga with timeouts, a database per service', [
  { title: 'orders ⇄ inventory, payments: an orchestrated saga with timeouts, killed mid-flight', run: orchestrationStory, brokerNames: orchestrationBrokerNames },
]);
