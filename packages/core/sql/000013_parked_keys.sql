-- Sequenced dead letters. With ordering on, when a keyed message becomes a dead letter its key is
-- parked behind it: later messages of the key are stored as dead letters (reason `parked`) instead
-- of being handled out of order, until the head is replayed or discarded.
--
-- parked_keys: one row per parked key of a consumer's queue (`source`, as in dead_letters). The key
-- is kept as its SHA-256 so that any key (NUL bytes, 100 KB) fits the primary key; the store never
-- needs the key itself, it finds a park by its head. `released` is set by a release (replay or
-- discard of the head): the message ids sent back through the outbox, in order; the consumer keeps
-- the key parked until it has handled the last of them, so nothing newer overtakes them.
CREATE TABLE {{schema}}.parked_keys (
  source text NOT NULL,
  key_hash bytea NOT NULL,
  head_message_id uuid NOT NULL,
  parked_at timestamptz NOT NULL DEFAULT now(),
  released uuid[],
  PRIMARY KEY (source, key_hash)
);
CREATE INDEX parked_keys_head_idx ON {{schema}}.parked_keys (source, head_message_id);

-- parked_messages: which message waits behind which head, in arrival order (`seq`). Written by the
-- consumer before it acks the delivery; the message itself reaches dead_letters through the sink.
-- A message parked again (redelivered, or released and parked behind a new head) keeps its seq.
CREATE TABLE {{schema}}.parked_messages (
  seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  source text NOT NULL,
  head_message_id uuid NOT NULL,
  message_id uuid NOT NULL,
  parked_at timestamptz NOT NULL DEFAULT now(),
  released_at timestamptz,
  UNIQUE (source, message_id)
);
CREATE INDEX parked_messages_head_idx ON {{schema}}.parked_messages (source, head_message_id, seq);
