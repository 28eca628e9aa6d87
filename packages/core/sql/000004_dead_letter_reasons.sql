-- One vocabulary of dead-letter reasons (kebab-case, shared by the relay and the consumers):
-- the relay's `too_large` is the consumers' `oversized`.
UPDATE {{schema}}.dead_letters SET reason = 'oversized' WHERE reason = 'too_large';
