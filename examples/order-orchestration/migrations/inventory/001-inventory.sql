CREATE TABLE stock (
  sku text PRIMARY KEY,
  available integer NOT NULL CHECK (available >= 0)
);

-- One row per order that inventory heard of. 'released' without a reservation (qty 0) is a
-- tombstone: the release came before the reserve command (a timeout, a redelivery after a
-- crash), and a reserve that arrives later must not take stock for a cancelled order.
CREATE TABLE reservations (
  order_id uuid PRIMARY KEY,
  sku text NOT NULL,
  qty integer NOT NULL CHECK (qty >= 0),
  status text NOT NULL CHECK (status IN ('reserved', 'rejected', 'released', 'committed')),
  updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE handled_log (message_id uuid NOT NULL, type text NOT NULL, order_id uuid NOT NULL, at timestamptz NOT NULL DEFAULT now());
