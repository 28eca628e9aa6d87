// Types of story.mjs, for the TypeScript end-to-end test.
import type { StoryOptions } from '@mailroom/example-users-orders/story';

export interface Outcome {
  status: string;
  reason?: string | null;
  payment: string | null;
  stock: number;
}

export interface SagaFacts {
  boundMs: number;
  convergenceMs: number[];
  outcomes: { happy: Outcome; outOfStock: Outcome; declined: Outcome };
  duplicateIgnored: boolean;
  invariants: {
    orders: number;
    stillPlaced: number;
    confirmedWithoutCharge: number;
    cancelledButCharged: number;
    chargedTwiceOrWrongAmount: number;
    eventsHandled: number;
    eventsHandledMoreThanOnce: number;
    stockConserved: boolean;
  };
  burst: { confirmed: number; cancelled: number };
  exitCodes: Record<string, number | null>;
}

export function sagaStory(
  options: StoryOptions & { databases?: { orders: string; inventory: string; payments: string }; burst?: number },
): Promise<SagaFacts>;
export function sagaBrokerNames(prefix: string): { queues: string[]; exchanges: string[] };
