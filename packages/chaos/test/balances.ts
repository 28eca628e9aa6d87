// setup and verify for the balance fixtures (the same module the CLI takes with --checks).
import type { ChaosOptions } from '@mailroom/chaos';
import { setup, verify } from './fixtures/balance-checks.js';

export function balanceChecks(keys: number): Pick<ChaosOptions, 'setup' | 'verify' | 'keys'> {
  return { keys, setup, verify };
}
