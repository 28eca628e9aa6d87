// Types of story.mjs, for the TypeScript end-to-end test.
import type { StoryOptions } from '@mailroom/example-users-orders/story';

export interface OrchestrationOutcome {
  status: string;
  reason: string | null;
  reservation: string | null;
  payment: string | null;
  stock: number;
}

export interface OrchestrationFacts {
  boundMs: number;
  convergenceMs: number[];
  outcomes: {
    happy: OrchestrationOutcome;
    outOfStock: OrchestrationOutcome;
    declined: OrchestrationOutcome;
    timedOut: OrchestrationOutcome & { timedOutAfterMs: number };
  };
  hostileRefused: number;
  timedOutHistory: { status: string; steps: string[] };
  kills: Array<{ service: string; inFlight: number; downMs: number }>;
  burst: { confirmed: number; cancelled: number; reasons: Record<string, number> };
  invariants: {
    orders: number;
    notFinal: number;
    confirmedWithoutCharge: number;
    chargedAndCancelled: number;
    wrongAmount: number;
    refunded: number;
    sagaInstances: number;
    sagasNotCompleted: number;
    lateRepliesIgnored: number;
    stepsApplied: number;
    stepsAppliedMoreThanOnce: number;
    stockConserved: boolean;
  };
  exitCodes: Record<string, number | null>;
}

export function orchestrationStory(
  options: StoryOptions & {
    databases?: { orders: string; inventory: string; payments: string };
    burst?: number;
    paymentTimeoutMs?: number;
    processorDelayMs?: number;
  },
): Promise<OrchestrationFacts>;
export function orchestrationBrokerNames(prefix: string): { queues: string[]; exchanges: string[] };
