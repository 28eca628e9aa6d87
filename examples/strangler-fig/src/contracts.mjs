// The events the monolith publishes while its users part is taken out. Every service imports
// this module (in a real system: a small versioned package of contracts). The exchange carries the
// run's prefix, so runs on one broker never meet, nor the other stories of the demo.
import { z } from 'zod';
import { defineMessage } from '@mailroom/core';

/** The monolith's exchange for a prefix (EXAMPLE_PREFIX). */
export const monolithExchange = (prefix) => `${prefix}.strangler-monolith`;

/** The service names of this story: queues are `<prefix>.<name>` (see consumerTopology). */
export const SERVICES = { users: 'strangler-users', mailer: 'strangler-mailer', reportingLive: 'strangler-reporting-live', reporting: 'strangler-reporting' };

const ids = { userId: z.uuid() };
const state = {
  email: z.email(),
  country: z.string().regex(/^[A-Z]{2}$/),
  /** Grows with every change of the user: consumers drop anything older than what they have. */
  version: z.number().int().positive(),
};
const v1User = z.object({ ...ids, ...state, name: z.string().min(1) });
const v2User = z.object({ ...ids, ...state, givenName: z.string().min(1), familyName: z.string() });
const order = z.object({ orderId: z.uuid(), userId: z.uuid(), amount: z.number().positive() });

/**
 * Version 1 → 2: the name splits at its first space. A guess, and the reason version 2 exists:
 * "Mary Ann Evans" upcasts to Mary / Ann Evans, while the new form asks for the given name and
 * the family name separately.
 */
export function splitName({ name, ...rest }) {
  const at = name.indexOf(' ');
  return { ...rest, givenName: at < 0 ? name : name.slice(0, at), familyName: at < 0 ? '' : name.slice(at + 1) };
}

/** The contracts under `prefix`. */
export function stranglerContracts(prefix) {
  const exchange = monolithExchange(prefix);
  const UserCreatedV1 = defineMessage('user.created', v1User, { exchange });
  return {
    /** What the legacy mailer (release 1) knows, and what the monolith produced first. */
    UserCreatedV1,
    /** Version 2: given and family name instead of one name; version 1 is upcast by `splitName`. */
    UserCreated: UserCreatedV1.version(2, v2User, splitName),
    /** A change of email or country; it carries the whole changeable state, not the name (which never changes here). */
    UserUpdated: defineMessage('user.updated', z.object({ ...ids, ...state }), { exchange }),
    /**
     * A user that existed before the monolith published events: the past, emitted once through
     * the outbox so that it sits in the archive with everything after it. Not a user.created:
     * the mailer must not welcome a customer of ten years.
     */
    UserSnapshot: defineMessage('user.snapshot', v1User, { exchange }),
    OrderPlaced: defineMessage('order.placed', order, { exchange }),
    /** An order placed before the monolith published events (see UserSnapshot). */
    OrderSnapshot: defineMessage('order.snapshot', order, { exchange }),
  };
}
