-- The outbox: one row per event, written in the producer's transaction, deleted once published.
CREATE TABLE {{schema}}.outbox (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  message_id uuid NOT NULL UNIQUE,
  type text NOT NULL,
  exchange text NOT NULL,
  routing_key text NOT NULL,
  key text,
  headers jsonb NOT NULL DEFAULT '{}'::jsonb,
  payload jsonb NOT NULL,
  occurred_at timestamptz NOT NULL DEFAULT now(),
  created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  attempts integer NOT NULL DEFAULT 0,
  available_at timestamptz NOT NULL DEFAULT now(),
  last_error text
);

-- Ordering mode reads the head of each key.
CREATE INDEX outbox_key_id_idx ON {{schema}}.outbox (key, id) WHERE key IS NOT NULL;
-- Rows in backoff are skipped by the claim without a scan of the whole table.
CREATE INDEX outbox_available_at_idx ON {{schema}}.outbox (available_at) WHERE attempts > 0;
