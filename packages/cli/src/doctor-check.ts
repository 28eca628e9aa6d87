/** How one check of `mailroom doctor` came out. `fail` is the only one that makes it exit 1. */
export type CheckStatus = 'ok' | 'fail' | 'skip' | 'note';

/** One line of `mailroom doctor`'s report (one object of its `--json` output). */
export interface DoctorCheck {
  /** What was checked: `postgres`, `migrations`, `outbox`, `rabbitmq`, `permission:configure`, `plugin:<name>`, … */
  name: string;
  status: CheckStatus;
  /** What was found, secret-free. */
  message: string;
  /** What to run or change, when something is wrong or missing. */
  fix?: string;
}

/** A check line as text: `ok    PostgreSQL 16.4 at …`, with the fix after it when there is one. */
export function formatCheck(check: DoctorCheck): string {
  const label = check.status === 'fail' ? 'FAIL' : check.status;
  return `${label.padEnd(6)}${check.message}${check.fix === undefined ? '' : `\n      fix: ${check.fix}`}`;
}
