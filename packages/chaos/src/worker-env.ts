/** Reads a variable the harness sets for its child processes, or fails naming it. */
export function need(name: string): string {
  const value = process.env[name];
  if (value === undefined || value === '') throw new Error(`${name} is not set: this file is started by the chaos harness`);
  return value;
}

/** A whole number from the harness's environment. */
export function needInt(name: string): number {
  const value = Number(need(name));
  if (!Number.isFinite(value)) throw new Error(`${name} must be a number`);
  return value;
}

/** One JSON line on stdout: how a child reports to the harness. */
export function report(event: string, fields: Record<string, unknown> = {}): void {
  process.stdout.write(`${JSON.stringify({ event, ...fields })}\n`);
}
