-- The SHA-256 of each handled message's body, so a later delivery with the same id but another
-- body is told apart from a plain duplicate (counted and logged as a conflicting duplicate; the
-- first one still wins). Nullable: rows written before this migration have no hash, and a
-- duplicate of one of them is a plain duplicate. Adding a nullable column without a default
-- rewrites nothing, so this is instant on a large inbox.
ALTER TABLE {{schema}}.inbox ADD COLUMN payload_hash bytea;
