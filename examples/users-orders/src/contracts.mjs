// The events the users service publishes. Both services import this module (in a real system it
// would be a small versioned package of contracts). The exchange carries the run's prefix, so
// repeated demo runs on one broker do not meet.
import { z } from 'zod';
import { defineMessage } from '@mailroom/core';

/** The users exchange for a prefix (EXAMPLE_PREFIX). */
export const usersExchange = (prefix) => `${prefix}.users`;

const user = {
  userId: z.uuid(),
  email: z.email(),
  name: z.string().min(1),
  /** Grows with every change of the user: consumers drop anything older than what they have. */
  version: z.number().int().positive(),
};

/** Contracts as the users service defines them. */
export function userContracts(prefix) {
  const exchange = usersExchange(prefix);
  return {
    UserCreated: defineMessage('user.created', z.object(user), { exchange }),
    // The whole user travels with the change (event-carried state), so a consumer can apply it
    // even if it never saw user.created, and in any order thanks to `version`.
    UserEmailChanged: defineMessage('user.email_changed', z.object({ ...user, previousEmail: z.email() }), { exchange }),
  };
}

/**
 * The fix for the legacy-import incident (see README): the CRM import script sent user.created
 * with `emailAddress` instead of `email`. Release 1.1 of orders accepts that shape too, so the
 * dead-lettered events can be replayed as they are.
 */
export function tolerantUserCreated(prefix) {
  const { email, ...rest } = user;
  const legacy = z.object({ ...rest, emailAddress: email }).transform(({ emailAddress, ...fields }) => ({ ...fields, email: emailAddress }));
  return defineMessage('user.created', z.union([z.object(user), legacy]), { exchange: usersExchange(prefix) });
}
