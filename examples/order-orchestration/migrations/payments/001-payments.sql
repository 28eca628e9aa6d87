-- One row per order that payments heard of (the primary key makes a second charge impossible).
-- 'pending': the card processor has not answered; 'voided': cancelled before it charged (also a
-- tombstone when the void came before the charge command); 'refunded': charged, then the order
-- was cancelled (the void came after the charge).
CREATE TABLE payments (
  order_id uuid PRIMARY KEY,
  amount numeric(12, 2),
  status text NOT NULL CHECK (status IN ('pending', 'charged', 'declined', 'voided', 'refunded')),
  reason text,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE handled_log (message_id uuid NOT NULL, type text NOT NULL, order_id uuid NOT NULL, at timestamptz NOT NULL DEFAULT now());
