-- Wakes a sleeping relay at commit, and only a sleeping one (see the outbox README, "Waking the
-- relay"). A NOTIFY makes PostgreSQL take a database-wide lock in PreCommit_Notify and hold it
-- through the commit's WAL flush, so transactions that notify commit one at a time and lose group
-- commit. A relay that is about to sleep holds a session advisory lock in SHARE mode (class
-- 1661022995, `RELAY_ASLEEP_LOCK_CLASS` in the outbox's names.ts; key hashtext(schema)); a
-- session ends with its locks, so a relay that died leaves nothing behind.
--
-- After every statement that inserts into the outbox (enqueue, a replay, a hand-written INSERT,
-- COPY), this trigger tries that lock in EXCLUSIVE mode and releases it at once: taking it means no
-- relay sleeps, and nothing is sent. Failing means a relay sleeps (or, for a few microseconds,
-- another producer was testing the same lock: a spare NOTIFY, harmless), and pg_notify queues a
-- NOTIFY for the commit. The test runs after the rows were inserted, so after the transaction has
-- its id: a relay that took its lock later waits for every transaction in progress at that moment
-- before its last poll (wake-up.ts), so no producer falls between the two. Locks are not MVCC: the
-- test sees the relay's lock whatever the producer's isolation level and snapshot.
--
-- Both calls are one expression (a CASE, so the unlock runs only after a lock taken): no interrupt
-- is served between them, so a cancelled statement cannot leave the lock held.
CREATE FUNCTION {{schema}}.outbox_wake_relay() RETURNS trigger
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  nobody_asleep boolean;
BEGIN
  nobody_asleep := CASE WHEN pg_catalog.pg_try_advisory_lock(1661022995, pg_catalog.hashtext(TG_TABLE_SCHEMA))
    THEN pg_catalog.pg_advisory_unlock(1661022995, pg_catalog.hashtext(TG_TABLE_SCHEMA)) ELSE false END;
  IF NOT nobody_asleep THEN
    PERFORM pg_catalog.pg_notify(pg_catalog.left(pg_catalog.concat('mailroom_outbox_', TG_TABLE_SCHEMA), 63), '');
  END IF;
  RETURN NULL;
END
$$;

CREATE TRIGGER outbox_wake_relay AFTER INSERT ON {{schema}}.outbox
  FOR EACH STATEMENT EXECUTE FUNCTION {{schema}}.outbox_wake_relay();
