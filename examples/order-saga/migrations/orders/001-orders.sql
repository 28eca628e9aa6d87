CREATE TABLE orders (
  id uuid PRIMARY KEY,
  sku text NOT NULL,
  qty integer NOT NULL CHECK (qty > 0),
  amount numeric(12, 2) NOT NULL CHECK (amount > 0),
  status text NOT NULL DEFAULT 'placed' CHECK (status IN ('placed', 'confirmed', 'cancelled')),
  cancel_reason text,
  -- The id of its order.placed event (the demo re-sends it to show a duplicate has no effect).
  placed_message_id uuid NOT NULL,
  placed_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);

-- One row per event a handler of this service applied: effects per event are countable.
CREATE TABLE handled_log (message_id uuid NOT NULL, type text NOT NULL, order_id uuid NOT NULL, at timestamptz NOT NULL DEFAULT now());
