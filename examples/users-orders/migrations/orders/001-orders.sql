-- The orders service's copy of what it needs of users, kept in step by user.* events.
CREATE TABLE user_projection (
  user_id uuid PRIMARY KEY,
  email text NOT NULL,
  name text NOT NULL,
  version integer NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now()
);

-- Orders keep the customer's email and name as they were when the order was placed: an order is
-- a record of what happened (the confirmation went to that address), so an email change later
-- does not rewrite it. The current address is in user_projection.
CREATE TABLE orders (
  id uuid PRIMARY KEY,
  user_id uuid NOT NULL,
  customer_email text NOT NULL,
  customer_name text NOT NULL,
  item text NOT NULL,
  amount numeric(12, 2) NOT NULL CHECK (amount > 0),
  placed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX orders_user_id ON orders (user_id);

-- Every projection change, for the demo and the test to count effects per event.
CREATE TABLE projection_log (
  message_id uuid NOT NULL,
  user_id uuid NOT NULL,
  type text NOT NULL,
  applied boolean NOT NULL,
  at timestamptz NOT NULL DEFAULT now()
);
