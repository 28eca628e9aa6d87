-- The workbench pages through dead letters newest failure first, with or without a filter on
-- the failure group, the source or the type, by keyset (last_failed_at, id): each index below
-- serves one of those filters so a page is an index range read at a million rows. The earlier
-- single-column indexes on fingerprint and last_failed_at are prefixes of these, so they go.
CREATE INDEX dead_letters_page_idx ON {{schema}}.dead_letters (last_failed_at DESC, id DESC);
CREATE INDEX dead_letters_group_page_idx ON {{schema}}.dead_letters (fingerprint, last_failed_at DESC, id DESC);
CREATE INDEX dead_letters_source_page_idx ON {{schema}}.dead_letters (source, last_failed_at DESC, id DESC);
CREATE INDEX dead_letters_type_page_idx ON {{schema}}.dead_letters (type, last_failed_at DESC, id DESC);
DROP INDEX {{schema}}.dead_letters_fingerprint_idx;
DROP INDEX {{schema}}.dead_letters_last_failed_at_idx;
