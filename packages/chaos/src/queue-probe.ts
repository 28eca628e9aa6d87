import type * as amqp from 'amqplib';

/** A queue's message count (0 when the queue does not exist). */
export interface QueueCount {
  queue: string;
  messages: number;
}

/** The message count of each queue, read passively. */
export async function queueCounts(connection: amqp.ChannelModel, queues: readonly string[]): Promise<QueueCount[]> {
  const out: QueueCount[] = [];
  for (const queue of queues) {
    // A passive check of a missing queue closes its channel: one channel per queue.
    const probe = await connection.createChannel();
    probe.on('error', () => undefined);
    try {
      const ok = await probe.checkQueue(queue);
      out.push({ queue, messages: ok.messageCount });
      await probe.close();
    } catch {
      out.push({ queue, messages: 0 });
    }
  }
  return out;
}

/**
 * The message ids still waiting in `queues` (and, with `markerHeader`, that header's values too:
 * a dead-letter copy may carry a derived id). Messages are fetched without an ack and given back
 * when the reading channel closes, so the queues are as they were.
 */
export async function queuedMessageIds(connection: amqp.ChannelModel, queues: readonly string[], markerHeader?: string): Promise<string[]> {
  const ids: string[] = [];
  for (const queue of queues) {
    const reader = await connection.createChannel();
    reader.on('error', () => undefined);
    try {
      for (let i = 0; i < 100_000; i += 1) {
        const m = await reader.get(queue, { noAck: false });
        if (m === false) break;
        ids.push(String(m.properties.messageId));
        const marker: unknown = markerHeader !== undefined ? m.properties.headers?.[markerHeader] : undefined;
        if (typeof marker === 'string' || Buffer.isBuffer(marker)) ids.push(marker.toString());
      }
      await reader.close();
    } catch {
      // the queue does not exist: nothing waits in it
    }
  }
  return ids;
}
