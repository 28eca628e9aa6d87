// Types of story.mjs, for the TypeScript end-to-end test.
export interface StoryOptions {
  databaseUrl: string;
  amqpUrl: string;
  prefix: string;
  say?: (icon: string, text: string) => void;
  onLine?: (name: string, line: string) => void;
  boundMs?: number;
}

export interface UsersOrdersFacts {
  boundMs: number;
  convergenceMs: number[];
  history: Array<{ id: string; emailAtOrder: string; currentEmail: string }>;
  historyKept: boolean;
  deadLetter: { id: string; reason: string; source: string };
  poisonBlockedProjection: boolean;
  replayed: boolean;
  events: number;
  maxEffectsPerEvent: number;
  exitCodes: Record<string, number | null>;
}

export function usersOrdersStory(options: StoryOptions & { databases?: { users: string; orders: string } }): Promise<UsersOrdersFacts>;
export function usersOrdersBrokerNames(prefix: string): { queues: string[]; exchanges: string[] };
