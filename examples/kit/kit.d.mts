// Types of the parts of kit.mjs the TypeScript end-to-end test uses.
export function databaseUrlFor(baseUrl: string, database: string): string;
export function ensureDatabase(baseUrl: string, database: string): Promise<boolean>;
export function dropDatabase(baseUrl: string, database: string): Promise<void>;
