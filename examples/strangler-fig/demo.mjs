// The strangler-fig story alone (`pnpm demo` at the root runs it after the other three).
import { runDemo } from '@mailroom/example-kit/demo-runner';
import { stranglerBrokerNames, stranglerStory } from './story.mjs';

await runDemo('mailroom example: the strangler fig, the users part taken out of a monolith', [
  { title: 'monolith → users service: outbox, history replay, v2 beside an old consumer, reconciliation', run: stranglerStory, brokerNames: stranglerBrokerNames },
]);
