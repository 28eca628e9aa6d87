import type { DeadLetterReason } from '../dead-letter-reason.js';
import type { VersionReading } from './version-header.js';

/** AMQP message properties mailroom reads or copies (amqplib's `MessageProperties` has them). */
export interface WireProperties {
  messageId?: unknown;
  type?: unknown;
  timestamp?: unknown;
  contentType?: unknown;
  contentEncoding?: unknown;
  correlationId?: unknown;
  replyTo?: unknown;
  appId?: unknown;
  priority?: unknown;
  headers?: Record<string, unknown> | undefined;
}

/** A delivery as mailroom reads it (amqplib's `ConsumeMessage` / `Message` fit). */
export interface WireMessage {
  content: Buffer;
  fields: { exchange: string; routingKey: string; redelivered?: boolean };
  properties: WireProperties;
}

/** Properties of a copy mailroom publishes again (a retry or a dead letter). */
export interface CopyProperties {
  persistent: true;
  headers: Record<string, unknown>;
  messageId?: string;
  type?: string;
  contentType?: string;
  contentEncoding?: string;
  correlationId?: string;
  replyTo?: string;
  appId?: string;
  timestamp?: number;
  priority?: number;
}

/** Where a message was first published. */
export interface Origin {
  exchange: string;
  routingKey: string;
}

/** What the consumer reads from a delivery, before validation. */
export interface DecodedDelivery {
  /** The `messageId` property as it arrived (anything a sender put there). */
  rawMessageId: unknown;
  /** The message id, lower-cased, when `rawMessageId` is a UUID; otherwise null. */
  messageId: string | null;
  /** The `type` property when it is a string. */
  type: string | null;
  /** The ordering key. */
  key: string | null;
  /** The contract version of the payload (no header: version 1), or why the header is not one. */
  version: VersionReading;
  /** When the producer created the event (the header, else the AMQP timestamp, else now). */
  occurredAt: Date;
  /** The headers whose values are strings, numbers or booleans, as text. */
  headers: Record<string, string>;
  /** This delivery's attempt, from 1; counted only on copies that came back from a delay queue. */
  attempt: number;
  /** True when the delivery came back from one of this consumer's delay queues (with a valid seal, when a seal is given). */
  fromRetry: boolean;
  /** True when the delivery came by the delay-queue route with retry headers whose seal is missing or wrong: a sender forged retry state. */
  forged: boolean;
  /** Where the message was first published. */
  origin: Origin;
}

/** A dead letter as the sink reads it from the dead-letter queue. */
export interface DecodedDeadLetter {
  messageId: string;
  source: string;
  reason: string;
  error: string | null;
  attempts: number;
  failedAt: Date;
  type: string | null;
  exchange: string | null;
  routingKey: string | null;
  key: string | null;
  /** The headers without mailroom's dead-letter bookkeeping. */
  headers: Record<string, unknown>;
  /** Whether a mailroom consumer wrote it: its seal verified (null when no seal was given to check). */
  sealed: boolean | null;
}


/** What a consumer says about a message it gives up on. */
export interface DeadLetterVerdict {
  reason: DeadLetterReason;
  error: string;
  /** Who gave up: the consumer's queue. */
  source: string;
  failedAt?: Date;
}

