-- An audit of what operators did to dead letters: who replayed or discarded which messages, and
-- when. Written by the dead-letter store in the same transaction as the replay or discard, so
-- there is never an action without its record or a record without its action.
CREATE TABLE {{schema}}.dead_letter_actions (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  at timestamptz NOT NULL DEFAULT now(),
  -- Who, as the caller said: `cli:<os user>@<host>` for the CLI, the store's `actor` option otherwise.
  actor text NOT NULL,
  -- Who, as PostgreSQL knows it: the role that ran the statement.
  db_user text NOT NULL DEFAULT current_user,
  action text NOT NULL CHECK (action IN ('replay', 'discard')),
  -- What was asked for: {"ids": [...], "group": "...", "force": true}.
  selection jsonb NOT NULL,
  -- How many dead letters it acted on, and their message ids.
  count integer NOT NULL,
  message_ids uuid[] NOT NULL
);

CREATE INDEX dead_letter_actions_at_idx ON {{schema}}.dead_letter_actions (at);
