-- The inbox: one row per message a consumer has handled, written in the handler's transaction.
-- The primary key is the dedupe: a second insert of (consumer, message_id) conflicts and the
-- delivery is a duplicate.
CREATE TABLE {{schema}}.inbox (
  consumer text NOT NULL,
  message_id uuid NOT NULL,
  received_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (consumer, message_id)
);

-- Retention cleanup deletes the oldest rows of one consumer at a time.
CREATE INDEX inbox_consumer_received_at_idx ON {{schema}}.inbox (consumer, received_at);

-- Each consumer records its queue and windows when it starts, so a dead-letter replay can tell
-- whether an inbox may already have forgotten a message (and the replay could run twice).
CREATE TABLE {{schema}}.inbox_consumers (
  consumer text PRIMARY KEY,
  queue text NOT NULL,
  retention_ms bigint NOT NULL,
  retry_horizon_ms bigint NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now()
);
