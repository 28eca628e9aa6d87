-- The legacy mailer: one welcome mail per user.created it handled.
CREATE TABLE welcome_mails (
  user_id uuid PRIMARY KEY,
  message_id uuid NOT NULL,
  recipient text NOT NULL,
  greeting text NOT NULL,
  contract_version integer NOT NULL,
  release text NOT NULL,
  sent_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE handled_log (
  message_id uuid NOT NULL,
  type text NOT NULL,
  version integer NOT NULL,
  at timestamptz NOT NULL DEFAULT now()
);
