-- Saga instances (@mailroom/saga): one row per (saga, correlation id). A step locks its row
-- (SELECT … FOR UPDATE) in the consumer's inbox transaction, so two messages for one instance
-- are applied one after the other and a rolled-back step leaves the row as it was.
-- `version` counts the applied steps (0 only inside the transaction that creates the row);
-- `completed_at` is set when the instance ends (completed or failed) and drives retention.
CREATE TABLE {{schema}}.sagas (
  saga text NOT NULL,
  id text NOT NULL,
  status text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'completed', 'failed')),
  state jsonb NOT NULL,
  version bigint NOT NULL DEFAULT 0,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  completed_at timestamptz,
  PRIMARY KEY (saga, id),
  CHECK ((status = 'running') = (completed_at IS NULL))
);

-- `saga list --status S [--stuck-for D]`: one status, by last change.
CREATE INDEX sagas_status_updated_idx ON {{schema}}.sagas (status, updated_at);
-- `saga list --name N [--status S] [--stuck-for D]`, and the instances-by-status gauge.
CREATE INDEX sagas_saga_status_updated_idx ON {{schema}}.sagas (saga, status, updated_at);
-- Retention: ended instances, oldest first.
CREATE INDEX sagas_completed_at_idx ON {{schema}}.sagas (completed_at) WHERE completed_at IS NOT NULL;

-- What moved each instance: one row per message a step applied (or ignored, for an instance
-- that had ended), written in the same transaction. The key makes a message apply to an
-- instance at most once, whichever consumer (inbox) it came through. `seq` orders the rows.
CREATE TABLE {{schema}}.saga_history (
  saga text NOT NULL,
  instance_id text NOT NULL,
  message_id uuid NOT NULL,
  seq bigint GENERATED ALWAYS AS IDENTITY,
  message_type text NOT NULL,
  outcome text NOT NULL CHECK (outcome IN ('applied', 'ignored')),
  from_status text,
  from_state jsonb,
  from_version bigint NOT NULL,
  to_status text NOT NULL,
  to_state jsonb NOT NULL,
  to_version bigint NOT NULL,
  at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (saga, instance_id, message_id)
);
