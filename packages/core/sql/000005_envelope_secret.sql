-- The key that seals what mailroom writes into copies of messages (a retry's attempt count and
-- origin, a dead letter's source, reason and destination). Consumers and the dead-letter sink read
-- it from here; a sender who can publish to RabbitMQ but cannot read this table cannot forge a
-- seal. gen_random_uuid() draws from PostgreSQL's strong random source: 2 x 122 random bits.
CREATE TABLE {{schema}}.secrets (
  name text PRIMARY KEY,
  value bytea NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);

INSERT INTO {{schema}}.secrets (name, value)
VALUES ('envelope-seal', decode(replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), 'hex'));
