-- One dead-letter store for both sides: relay rows that could not be published and messages
-- that consumers gave up on. (source, message_id) is unique so every sink is idempotent.
CREATE TABLE {{schema}}.dead_letters (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  message_id uuid NOT NULL,
  source text NOT NULL,
  reason text NOT NULL,
  error text,
  attempts integer NOT NULL DEFAULT 0,
  first_failed_at timestamptz NOT NULL DEFAULT now(),
  last_failed_at timestamptz NOT NULL DEFAULT now(),
  type text,
  exchange text,
  routing_key text,
  key text,
  headers jsonb NOT NULL DEFAULT '{}'::jsonb,
  payload jsonb,
  body bytea,
  fingerprint text NOT NULL,
  replayed_at timestamptz,
  UNIQUE (source, message_id)
);

CREATE INDEX dead_letters_fingerprint_idx ON {{schema}}.dead_letters (fingerprint);
CREATE INDEX dead_letters_last_failed_at_idx ON {{schema}}.dead_letters (last_failed_at);
