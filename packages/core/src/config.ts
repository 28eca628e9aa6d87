import { z } from 'zod/v4';
import { MailroomError } from './errors.js';

/**
 * Parses `input` with a zod object schema that rejects unknown keys, and turns every problem
 * into one `MailroomError('INVALID_CONFIG')` whose message names each key and what to set.
 */
export function parseConfig<T extends z.ZodType>(schema: T, input: unknown, what: string): z.output<T> {
  const result = schema.safeParse(input);
  if (result.success) return result.data;
  const problems = result.error.issues.map((issue) => {
    if (issue.code === 'unrecognized_keys') {
      const path = issue.path.length > 0 ? `${issue.path.join('.')}.` : '';
      return `unknown option${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `"${path}${k}"`).join(', ')}`;
    }
    const path = issue.path.length > 0 ? issue.path.join('.') : '(root)';
    return `"${path}": ${issue.message}`;
  });
  throw new MailroomError('INVALID_CONFIG', `Invalid ${what}: ${problems.join('; ')}`, {
    details: { issues: problems },
  });
}
