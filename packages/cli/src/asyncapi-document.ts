import type { MessageContract, StandardSchemaV1 } from '@mailroom/core';

/** Options of {@link asyncApiDocument}. */
export interface AsyncApiOptions {
  /** `info.title`. */
  title: string;
  /** `info.version`: the version of the service's API (not a contract version). */
  version: string;
  /** What the service does with these messages: `send` (it publishes them, the default) or `receive`. */
  action: 'send' | 'receive';
  /** Where the contracts came from, for `info.description`. */
  source: string;
}

/** How a payload schema came out: JSON Schema, or why there is none. */
export type PayloadSchema = { kind: 'json-schema'; schemaFormat: string; schema: Record<string, unknown> } | { kind: 'none'; why: string };

/** Turns a schema into JSON Schema when its library can; see {@link payloadSchemaOf}. */
export type ZodToJsonSchema = (schema: unknown) => Record<string, unknown>;

const DRAFT_07 = 'application/schema+json;version=draft-07';
const DRAFT_2020_12 = 'application/schema+json;version=draft-2020-12';
const AMQP_BINDING_VERSION = '0.3.0';

/**
 * The JSON Schema of what a consumer accepts at one version (the schema's input side): through
 * Standard JSON Schema (`~standard.jsonSchema`, zod 4.2+ and arktype have it) in draft-07, else
 * draft 2020-12; else, for a zod schema, zod's own `toJSONSchema` when given; else none, and why.
 */
export function payloadSchemaOf(schema: StandardSchemaV1, zodToJsonSchema?: ZodToJsonSchema): PayloadSchema {
  const props = schema['~standard'];
  const problems: string[] = [];
  const converter = props.jsonSchema;
  if (converter !== undefined) {
    for (const [target, schemaFormat] of [
      ['draft-07', DRAFT_07],
      ['draft-2020-12', DRAFT_2020_12],
    ] as const) {
      try {
        return { kind: 'json-schema', schemaFormat, schema: converter.input({ target }) };
      } catch (error) {
        problems.push(`${target}: ${error instanceof Error ? error.message : String(error)}`);
      }
    }
  }
  if (props.vendor === 'zod' && zodToJsonSchema !== undefined) {
    try {
      return { kind: 'json-schema', schemaFormat: DRAFT_07, schema: zodToJsonSchema(schema) };
    } catch (error) {
      problems.push(`zod toJSONSchema: ${error instanceof Error ? error.message : String(error)}`);
    }
  }
  const why =
    problems.length > 0
      ? `the ${props.vendor} schema could not be converted to JSON Schema (${problems.join('; ').slice(0, 500)})`
      : `the ${props.vendor} validator offers no JSON Schema (it does not implement Standard JSON Schema, "~standard.jsonSchema")`;
  return { kind: 'none', why };
}

// AsyncAPI component and channel keys: letters, digits, `.`, `-` and `_` only.
function keyOf(text: string): string {
  const key = text.replace(/[^A-Za-z0-9._-]/g, '_');
  return key === '' ? '_' : key;
}

/**
 * An AsyncAPI 3.0 document of message contracts: a channel per exchange and routing key (AMQP
 * channel binding), a message per contract version (its payload's JSON Schema, the
 * `x-mailroom-version` header, the AMQP `type`), and one operation per channel with `action`.
 */
export function asyncApiDocument(contracts: readonly MessageContract[], options: AsyncApiOptions, zodToJsonSchema?: ZodToJsonSchema): Record<string, unknown> {
  const channels: Record<string, Record<string, unknown>> = {};
  const operations: Record<string, Record<string, unknown>> = {};
  const messages: Record<string, Record<string, unknown>> = {};
  const channelKeys = new Map<string, string>();
  const sorted = [...contracts].sort((a, b) => (a.type < b.type ? -1 : a.type > b.type ? 1 : 0));
  for (const contract of sorted) {
    const route = `${contract.exchange}\u0000${contract.routingKey}`;
    let channelKey = channelKeys.get(route);
    if (channelKey === undefined) {
      const base = keyOf(`${contract.exchange === '' ? 'default' : contract.exchange}.${contract.routingKey}`);
      channelKey = base;
      for (let n = 2; channels[channelKey] !== undefined; n++) channelKey = `${base}_${n}`;
      channelKeys.set(route, channelKey);
      channels[channelKey] = {
        address: contract.routingKey,
        title: `${contract.exchange === '' ? "RabbitMQ's default exchange" : `exchange ${contract.exchange}`}, routing key ${contract.routingKey}`,
        messages: {},
        bindings: {
          amqp: {
            is: 'routingKey',
            exchange:
              contract.exchange === ''
                ? { name: '', type: 'direct', durable: true, autoDelete: false, vhost: '/' }
                : { name: contract.exchange, type: 'topic', durable: true, autoDelete: false, vhost: '/' },
            bindingVersion: AMQP_BINDING_VERSION,
          },
        },
      };
      operations[keyOf(`${options.action}.${channelKey}`)] = {
        action: options.action,
        channel: { $ref: `#/channels/${channelKey}` },
        messages: [],
      };
    }
    const channel = channels[channelKey] as { messages: Record<string, unknown> };
    const operation = operations[keyOf(`${options.action}.${channelKey}`)] as { messages: unknown[] };
    for (const entry of contract.versions) {
      const messageKey = keyOf(`${contract.type}.v${entry.version}`);
      const latest = entry.version === contract.latestVersion;
      const payload = payloadSchemaOf(entry.schema, zodToJsonSchema);
      const upcast = entry.version > 1 ? ` A consumer upcasts version ${entry.version - 1} to this one.` : '';
      messages[messageKey] = {
        name: contract.type,
        title: `${contract.type} version ${entry.version}${latest ? ' (latest)' : ''}`,
        summary: latest
          ? `What producers of ${contract.type} emit now.${upcast}`
          : `An older version of ${contract.type}: still accepted by consumers, which upcast it to version ${contract.latestVersion}.${upcast}`,
        contentType: 'application/json',
        headers: versionHeaders(entry.version),
        payload:
          payload.kind === 'json-schema'
            ? { schemaFormat: payload.schemaFormat, schema: payload.schema }
            : { description: `No JSON Schema: ${payload.why}. Validated by the contract's ${entry.schema['~standard'].vendor} schema.` },
        bindings: { amqp: { messageType: contract.type, bindingVersion: AMQP_BINDING_VERSION } },
        'x-mailroom-contract-version': entry.version,
        'x-mailroom-latest-version': contract.latestVersion,
        'x-mailroom-validator': entry.schema['~standard'].vendor,
        ...(payload.kind === 'none' ? { 'x-mailroom-json-schema': `unavailable: ${payload.why}` } : {}),
      };
      channel.messages[messageKey] = { $ref: `#/components/messages/${messageKey}` };
      operation.messages.push({ $ref: `#/channels/${channelKey}/messages/${messageKey}` });
    }
  }
  return {
    asyncapi: '3.0.0',
    info: {
      title: options.title,
      version: options.version,
      description: [
        `Message contracts exported by \`mailroom contracts export\` from ${options.source}.`,
        'Every message is JSON (application/json) with a UUID `messageId` that stays the same on every retry and replay, and its contract type in the AMQP `type` property.',
        'The `x-mailroom-version` header carries the contract version from version 2 on; a message without it is version 1.',
        'A consumer accepts every version its contract knows and dead-letters a newer one (reason unknown-version) until it is upgraded and the dead letter replayed.',
      ].join(' '),
    },
    defaultContentType: 'application/json',
    channels,
    operations,
    components: { messages },
  };
}

function versionHeaders(version: number): Record<string, unknown> {
  const key = { type: 'string', description: 'The ordering key: messages of one key are published and handled in order (absent: no ordering).' };
  if (version === 1) {
    return {
      type: 'object',
      properties: {
        'x-mailroom-key': key,
        'x-mailroom-version': { type: 'string', const: '1', description: 'Version 1 is sent without this header; "1" is read the same way.' },
      },
    };
  }
  return {
    type: 'object',
    properties: { 'x-mailroom-key': key, 'x-mailroom-version': { type: 'string', const: String(version), description: 'The contract version of the payload.' } },
    required: ['x-mailroom-version'],
  };
}
