-- One payment attempt per order (the primary key makes a second charge impossible, on top of
-- the inbox making a second delivery harmless).
CREATE TABLE payments (
  order_id uuid PRIMARY KEY,
  amount numeric(12, 2) NOT NULL,
  status text NOT NULL CHECK (status IN ('charged', 'declined')),
  reason text,
  created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE handled_log (message_id uuid NOT NULL, type text NOT NULL, order_id uuid NOT NULL, at timestamptz NOT NULL DEFAULT now());
