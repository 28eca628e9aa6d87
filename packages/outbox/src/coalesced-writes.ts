// amqplib queues each publish as one chunk (method, properties and body in one buffer) on its
// channel's buffer, and its connection's muxer then writes the queued chunks to the socket one
// `write` at a time, in one synchronous pass. A socket that is not corked sends each chunk with a
// syscall of its own: for a relay publishing a 500-row batch, 500 syscalls and 500 write requests,
// about a third of its CPU per message. Corking the socket for the muxer's pass turns them into
// one `writev` (per socket high-water mark, 64 KiB: the muxer stops when `write` returns false,
// as it does uncorked), with the bytes and their order on the wire unchanged.

/** The part of an amqplib connection (`channel.connection`) this module touches. */
interface MuxedConnection {
  stream?: { cork?: () => void; uncork?: () => void };
  muxer?: { _readIncoming?: () => void };
}

const COALESCED = Symbol('mailroom.coalescedWrites');

/**
 * Makes the connection under `channel` write each pass of its muxer to the socket with one
 * `writev` instead of one `write` per queued publish. Idempotent per connection; does nothing
 * (returns false) when amqplib's internals are not the expected shape, so a future amqplib only
 * loses the saving, never a message.
 */
export function coalesceWrites(channel: object): boolean {
  const connection = (channel as { connection?: MuxedConnection }).connection;
  const stream = connection?.stream;
  const muxer: (MuxedConnection['muxer'] & { [COALESCED]?: true }) | undefined = connection?.muxer;
  if (stream === undefined || muxer === undefined) return false;
  if (muxer[COALESCED]) return true;
  const readIncoming = muxer._readIncoming;
  if (typeof readIncoming !== 'function' || typeof stream.cork !== 'function' || typeof stream.uncork !== 'function') return false;
  muxer._readIncoming = function coalescedReadIncoming(this: unknown): void {
    stream.cork?.();
    try {
      readIncoming.call(this);
    } finally {
      // Flushes everything written in this pass at once, synchronously.
      stream.uncork?.();
    }
  };
  muxer[COALESCED] = true;
  return true;
}
