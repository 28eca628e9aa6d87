-- The monolith's one schema: users and orders side by side, joined at will. This is what the
-- story takes apart. `version` grows with every change of a user and travels in its events, so a
-- consumer can ignore a change older than what it has.
CREATE TABLE users (
  id uuid PRIMARY KEY,
  email text NOT NULL UNIQUE,
  name text NOT NULL,
  country text NOT NULL,
  version integer NOT NULL DEFAULT 1,
  created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE orders (
  id uuid PRIMARY KEY,
  user_id uuid NOT NULL REFERENCES users (id),
  amount numeric(12, 2) NOT NULL CHECK (amount > 0),
  placed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX orders_user_id ON orders (user_id);
