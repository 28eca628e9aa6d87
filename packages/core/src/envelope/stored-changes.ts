/**
 * The key, in a stored dead letter's `headers`, under which the dead-letter sink lists what it
 * had to change to store the message (a NUL replaced, a body truncated, headers left out, a
 * minimal row). It exists only in the `dead_letters` table, never on the wire: the sink drops a
 * header of this name from what it receives, and a replay leaves out every `x-mailroom-*` header.
 * The dead-letter store reads it back as `DeadLetter.changes`.
 */
export const STORED_CHANGES_HEADER = 'x-mailroom-stored-changes';
