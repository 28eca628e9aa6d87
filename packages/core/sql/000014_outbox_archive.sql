-- The event archive: every row the relay published, kept after it leaves the outbox, so that a
-- consumer that joins later (or rebuilds a projection) can be given the past (`mailroom history
-- replay`). Written by the relay in the statement that deletes the published rows from the outbox
-- (one transaction: a row is either still in the outbox or in the archive, never both, never
-- neither), when the relay runs with `archive: true`.
--
-- Partitioned by day on published_at, so retention drops whole partitions (no long DELETE, no
-- bloat, no vacuum debt). The default partition takes rows of a day whose partition was not made
-- ahead; `maintainArchive` (`mailroom history prune`, run by the owner of the tables) creates the
-- coming days' partitions and drops the ones past the retention window. No primary key: it would
-- have to include published_at; outbox_id is unique anyway (one identity).
CREATE TABLE {{schema}}.outbox_archive (
  outbox_id bigint NOT NULL,
  message_id uuid NOT NULL,
  type text NOT NULL,
  exchange text NOT NULL,
  routing_key text NOT NULL,
  key text,
  headers jsonb NOT NULL DEFAULT '{}'::jsonb,
  payload jsonb NOT NULL,
  occurred_at timestamptz NOT NULL,
  published_at timestamptz NOT NULL DEFAULT now()
) PARTITION BY RANGE (published_at);

CREATE TABLE {{schema}}.outbox_archive_default PARTITION OF {{schema}}.outbox_archive DEFAULT;

-- Replay and list read in outbox order (a key's order); show finds one message id; list and replay
-- by key read that key's rows. Indexes on the parent are made on every partition, present and
-- future. Each index is paid for by every publish (the bench measured the drain with five:
-- type and published_at were dropped for it; a type filter walks the outbox-id order, a time
-- filter prunes whole partitions).
CREATE INDEX outbox_archive_order_idx ON {{schema}}.outbox_archive (outbox_id);
CREATE INDEX outbox_archive_message_id_idx ON {{schema}}.outbox_archive (message_id);
CREATE INDEX outbox_archive_key_idx ON {{schema}}.outbox_archive (key, outbox_id) WHERE key IS NOT NULL;
