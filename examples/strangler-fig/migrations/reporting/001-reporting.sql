-- The reporting projection: users by country, orders per user. Keyed by entity id and guarded by
-- the user's version, so it does not depend on the order events arrive in (a history replay and
-- live events interleave) nor on an order arriving both as order.snapshot and order.placed.
CREATE TABLE report_users (
  user_id uuid PRIMARY KEY,
  country text NOT NULL,
  version integer NOT NULL
);

CREATE TABLE report_orders (
  order_id uuid PRIMARY KEY,
  user_id uuid NOT NULL,
  amount numeric(12, 2) NOT NULL
);

CREATE TABLE handled_log (
  message_id uuid NOT NULL,
  type text NOT NULL,
  version integer NOT NULL,
  at timestamptz NOT NULL DEFAULT now()
);
