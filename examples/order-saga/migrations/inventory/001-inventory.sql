CREATE TABLE stock (
  sku text PRIMARY KEY,
  available integer NOT NULL CHECK (available >= 0)
);

CREATE TABLE reservations (
  order_id uuid PRIMARY KEY,
  sku text NOT NULL REFERENCES stock (sku),
  qty integer NOT NULL CHECK (qty > 0),
  status text NOT NULL CHECK (status IN ('reserved', 'released', 'committed')),
  updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE handled_log (message_id uuid NOT NULL, type text NOT NULL, order_id uuid NOT NULL, at timestamptz NOT NULL DEFAULT now());
