-- The users service's own table. The name is split (given and family name): that is what
-- user.created version 2 carries; a version 1 event is upcast on the way in. The names are null
-- until the user's user.created or user.snapshot arrived (a user.updated, which carries no name,
-- may come first while a history replay and live events interleave).
CREATE TABLE users (
  id uuid PRIMARY KEY,
  email text NOT NULL,
  given_name text,
  family_name text,
  country text NOT NULL,
  version integer NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now()
);

-- Every event handled, for the demo and the test to count effects per message.
CREATE TABLE handled_log (
  message_id uuid NOT NULL,
  type text NOT NULL,
  version integer NOT NULL,
  at timestamptz NOT NULL DEFAULT now()
);
