-- The orders service's own tables. The saga's instances and their history live in mailroom's
-- schema (@mailroom/saga's migration), next to the outbox and inbox of this database.
CREATE TABLE orders (
  id uuid PRIMARY KEY,
  sku text NOT NULL,
  qty integer NOT NULL CHECK (qty > 0),
  amount numeric(12, 2) NOT NULL CHECK (amount > 0),
  status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'confirmed', 'cancelled')),
  cancel_reason text,
  placed_at timestamptz NOT NULL DEFAULT now(),
  settled_at timestamptz
);

-- One row per saga step the orchestrator applied: a step applied twice would show as two rows.
CREATE TABLE handled_log (message_id uuid NOT NULL, type text NOT NULL, order_id uuid NOT NULL, at timestamptz NOT NULL DEFAULT now());
