// Types of story.mjs, for the TypeScript end-to-end test.
export interface StranglerDatabases {
  monolith: string;
  users: string;
  mailer: string;
  reportingLive: string;
  reporting: string;
}

export interface ReconcileDifference {
  id: string;
  kind: 'missing' | 'extra' | 'differs';
  field?: string;
  monolith?: unknown;
  usersService?: unknown;
}

export interface StranglerFacts {
  boundMs: number;
  convergenceMs: number[];
  past: { users: number; orders: number };
  badSignUp: { status: number; written: number };
  snapshot: { users: number; orders: number; batches: number };
  usersReplay?: { queue: string; published: number; types: string[] };
  deadLetters: Record<string, number>;
  mary: string;
  readSwitch: { before: Record<string, unknown>; after: Record<string, unknown>; reads: { local: number; usersService: number } };
  readsSwitched: boolean;
  reconcileBefore: { monolith: number; usersService: number; differences: ReconcileDifference[] };
  reconcileAfter: { code: number; output: string };
  reportingReplay: { queue: string; published: number };
  liveDuringReplay: number;
  projection: { rows: number; orders: number; matchesLive: boolean; matchesMonolith: boolean; perCountry: Record<string, number> };
  handled: Record<string, number>;
  handledTwice: Record<string, number>;
  exitCodes: Record<string, number | null>;
}

export function stranglerStory(options: {
  databaseUrl: string;
  amqpUrl: string;
  prefix: string;
  databases?: StranglerDatabases;
  say?: (icon: string, text: string) => void;
  onLine?: (name: string, line: string) => void;
  boundMs?: number;
  skipBackfill?: boolean;
}): Promise<StranglerFacts>;
export function stranglerBrokerNames(prefix: string): { queues: string[]; exchanges: string[] };
