import { EventEmitter } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import * as amqp from 'amqplib';
import { backoffDelay } from './backoff.js';
import { describeError, MailroomError } from './errors.js';
import { silentLogger, type Logger } from './logger.js';
import { redactUrl } from './redact.js';

/** The live amqplib connection handed out by {@link AmqpConnection}. */
export type AmqpChannelModel = amqp.ChannelModel;

/** Options of {@link createAmqpConnection}. */
export interface AmqpConnectionOptions {
  /**
   * `amqp://user:pass@host:5672/vhost` (or `amqps://` for TLS), or several URLs of one cluster:
   * each (re)connect tries them in turn, starting after the last one that failed. Passwords never
   * appear in logs or errors.
   */
  url: string | readonly string[];
  /**
   * TLS for `amqps://` URLs: the CA that signed the broker's certificate, and the client
   * certificate and key for mutual TLS (PEM text or Buffers). Default: Node's CA store, no client
   * certificate.
   */
  tls?: AmqpTlsOptions;
  /**
   * How to authenticate: `plain` (user and password from the URL) or `external` (SASL EXTERNAL:
   * the broker takes the identity from the client certificate; needs RabbitMQ's
   * `rabbitmq_auth_mechanism_ssl` plugin). Default: `plain`.
   */
  auth?: 'plain' | 'external';
  /** Shown in the RabbitMQ management UI as the connection name. Default: `mailroom`. */
  name?: string;
  /** Heartbeat in seconds, unless the URL sets one. Default: 10. */
  heartbeatSeconds?: number;
  /** First reconnect delay in ms; it doubles up to `maxReconnectDelayMs`. Default: 100. */
  reconnectDelayMs?: number;
  /** Longest reconnect delay in ms. Default: 5000. */
  maxReconnectDelayMs?: number;
  /** Where connection events are logged. Default: silent. */
  logger?: Logger;
}

/** TLS settings of an AMQP connection (passed to Node's `tls.connect`). */
export interface AmqpTlsOptions {
  /** CA certificate(s) to trust, PEM. Default: Node's built-in CAs. */
  ca?: string | Buffer | ReadonlyArray<string | Buffer>;
  /** Client certificate chain, PEM (mutual TLS). */
  cert?: string | Buffer;
  /** Client private key, PEM. */
  key?: string | Buffer;
  /** Passphrase of the key. */
  passphrase?: string;
  /** Server name for SNI and certificate checks. Default: the URL's host. */
  servername?: string;
  /** Refuse a broker certificate that does not verify. Default: true. */
  rejectUnauthorized?: boolean;
}

/** Events of an {@link AmqpConnection}. */
export interface AmqpConnectionEvents {
  /** A (re)connection succeeded; consumers set up their channels again here. */
  connected: [connection: AmqpChannelModel];
  /** The connection was lost; a reconnect is scheduled unless closed. */
  disconnected: [error: Error | undefined];
}

/**
 * A RabbitMQ connection that recovers: after a loss it reconnects with capped exponential
 * backoff and emits `connected` again, so channels and consumers can be set up anew. Made by
 * {@link createAmqpConnection}; several components can share one.
 */
export interface AmqpConnection extends EventEmitter<AmqpConnectionEvents> {
  /** True while a connection is open. */
  readonly connected: boolean;
  /** The URL with its password hidden. */
  readonly displayUrl: string;
  /** Resolves with a live connection, connecting (with retries) when there is none. Rejects once closed. */
  get(): Promise<AmqpChannelModel>;
  /** One connection attempt without retries (for a start-up check). */
  connectOnce(): Promise<AmqpChannelModel>;
  /** Closes the connection and stops reconnecting. Always resolves. */
  close(): Promise<void>;
}

class RecoveringAmqpConnection extends EventEmitter<AmqpConnectionEvents> implements AmqpConnection {
  readonly #options: Required<Omit<AmqpConnectionOptions, 'logger' | 'url' | 'tls'>> & { logger: Logger; urls: readonly string[]; tls: AmqpTlsOptions | undefined };
  // The URL to try next: after a failure, the next one of the cluster.
  #next = 0;
  #current: AmqpChannelModel | undefined;
  #connecting: Promise<AmqpChannelModel> | undefined;
  #closed = false;
  readonly #abort = new AbortController();

  /** Use {@link createAmqpConnection}. */
  constructor(options: AmqpConnectionOptions) {
    super();
    this.#options = {
      urls: typeof options.url === 'string' ? [options.url] : [...options.url],
      tls: options.tls,
      auth: options.auth ?? 'plain',
      name: options.name ?? 'mailroom',
      heartbeatSeconds: options.heartbeatSeconds ?? 10,
      reconnectDelayMs: options.reconnectDelayMs ?? 100,
      maxReconnectDelayMs: options.maxReconnectDelayMs ?? 5000,
      logger: options.logger ?? silentLogger,
    };
  }

  /** True while a connection is open. */
  get connected(): boolean {
    return this.#current !== undefined;
  }

  /** The URL with its password redacted. */
  get displayUrl(): string {
    return this.#options.urls.map(redactUrl).join(', ');
  }

  /** Resolves with the open connection, connecting first (with retries) when there is none. */
  get(): Promise<AmqpChannelModel> {
    if (this.#closed) return Promise.reject(new MailroomError('STOPPED', 'The AMQP connection is closed.'));
    if (this.#current) return Promise.resolve(this.#current);
    this.#connecting ??= this.#connectWithRetry().finally(() => {
      this.#connecting = undefined;
    });
    return this.#connecting;
  }

  /** Connects once, without retrying: for startup checks that should fail fast. */
  async connectOnce(): Promise<AmqpChannelModel> {
    if (this.#current) return this.#current;
    const connection = await this.#open();
    return connection;
  }

  /** Closes the connection and stops reconnecting. Always resolves. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#abort.abort();
    const current = this.#current;
    this.#current = undefined;
    if (current) await current.close().catch(() => undefined);
  }

  async #connectWithRetry(): Promise<AmqpChannelModel> {
    const policy = { initialMs: this.#options.reconnectDelayMs, maxMs: this.#options.maxReconnectDelayMs };
    for (let attempt = 1; ; attempt++) {
      const delay = backoffDelay(policy, attempt);
      try {
        return await this.#open();
      } catch (error) {
        if (this.#closed) throw new MailroomError('STOPPED', 'The AMQP connection is closed.');
        this.#options.logger.warn(`AMQP connect to ${this.displayUrl} failed, retrying in ${delay} ms`, {
          error: describeError(error),
        });
        await sleep(delay, undefined, { signal: this.#abort.signal }).catch(() => undefined);
        if (this.#closed) throw new MailroomError('STOPPED', 'The AMQP connection is closed.');
      }
    }
  }

  async #open(): Promise<AmqpChannelModel> {
    const urls = this.#options.urls;
    const index = this.#next % urls.length;
    const url = new URL(urls[index] as string);
    if (!url.searchParams.has('heartbeat')) url.searchParams.set('heartbeat', String(this.#options.heartbeatSeconds));
    let connection: AmqpChannelModel;
    try {
      // noDelay: without it Nagle's algorithm holds small publishes back for tens of milliseconds.
      const socketOptions: Record<string, unknown> = { noDelay: true, clientProperties: { connection_name: this.#options.name }, ...this.#options.tls };
      if (this.#options.auth === 'external') socketOptions.credentials = amqp.credentials.external();
      connection = await amqp.connect(url.toString(), socketOptions);
    } catch (error) {
      this.#next = index + 1;
      throw new MailroomError('UNREACHABLE', `Cannot connect to RabbitMQ at ${redactUrl(urls[index] as string)}: ${describeError(error)}`, {
        cause: error,
      });
    }
    if (this.#closed) {
      await connection.close().catch(() => undefined);
      throw new MailroomError('STOPPED', 'The AMQP connection is closed.');
    }
    let lastError: Error | undefined;
    connection.on('error', (error: Error) => {
      lastError = error;
      this.#options.logger.warn('AMQP connection error', { error: describeError(error) });
    });
    connection.on('close', () => {
      if (this.#current !== connection) return;
      this.#current = undefined;
      this.emit('disconnected', lastError);
      if (!this.#closed) {
        this.#options.logger.warn(`AMQP connection to ${this.displayUrl} lost, reconnecting`);
        this.get().catch(() => undefined);
      }
    });
    this.#current = connection;
    this.#options.logger.debug(`AMQP connected to ${this.displayUrl}`);
    this.emit('connected', connection);
    return connection;
  }
}

/** Creates a recovering RabbitMQ connection. Nothing connects until `get()` is called. */
export function createAmqpConnection(options: AmqpConnectionOptions): AmqpConnection {
  return new RecoveringAmqpConnection(options);
}

/**
 * The connection a component works on: a URL opens one that the component owns (and closes when
 * it stops); a connection passed in is borrowed and left open.
 */
export function resolveAmqpConnection(
  amqp: string | readonly string[] | AmqpConnection,
  options: Omit<AmqpConnectionOptions, 'url'> = {},
): { connection: AmqpConnection; owned: boolean } {
  return typeof amqp === 'string' || Array.isArray(amqp)
    ? { connection: createAmqpConnection({ ...options, url: amqp as string | readonly string[] }), owned: true }
    : { connection: amqp as AmqpConnection, owned: false };
}
