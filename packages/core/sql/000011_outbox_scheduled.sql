-- Scheduled delivery: a message enqueued with `deliverAt` or `delay` waits here, not in the outbox,
-- until it falls due; the relay then moves it into the outbox in one statement (a new outbox id:
-- it takes its place in its key's order when it falls due). Kept apart so that a million rows
-- scheduled for later cost the relay's claim of due rows nothing (the claim walks the outbox's
-- primary key) and never block their key while they wait (ordering mode skips a key behind a row
-- whose available_at is in the future). See the outbox README, "Scheduled delivery".
CREATE TABLE {{schema}}.outbox_scheduled (
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
  deliver_at timestamptz NOT NULL
);

-- The relay reads the due head (and the next due time) through this index only.
CREATE INDEX outbox_scheduled_deliver_at_idx ON {{schema}}.outbox_scheduled (deliver_at, id);

-- A moved row keeps its due time in the outbox: the relay measures the lateness of its publish.
ALTER TABLE {{schema}}.outbox ADD COLUMN deliver_at timestamptz;

-- Re-arms a relay's timer when a statement schedules a row due before every other one (the
-- relay sleeps until the earliest due time it knows of). Only then: a NOTIFY serializes commits
-- (see migration 9), and rows due after the earliest are found when the relay wakes for that one
-- (or at its poll interval, the safety net). The payload 'scheduled' tells the relay this is not
-- a new outbox row. Every built-in is schema-qualified: the caller's search_path changes nothing.
CREATE FUNCTION {{schema}}.outbox_scheduled_wake_relay() RETURNS trigger
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
  IF (SELECT pg_catalog.min(i.deliver_at) FROM inserted i)
     OPERATOR(pg_catalog.<=) (SELECT pg_catalog.min(s.deliver_at) FROM {{schema}}.outbox_scheduled s) THEN
    PERFORM pg_catalog.pg_notify(pg_catalog.left(pg_catalog.concat('mailroom_outbox_', TG_TABLE_SCHEMA), 63), 'scheduled');
  END IF;
  RETURN NULL;
END
$$;

CREATE TRIGGER outbox_scheduled_wake_relay AFTER INSERT ON {{schema}}.outbox_scheduled
  REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION {{schema}}.outbox_scheduled_wake_relay();
