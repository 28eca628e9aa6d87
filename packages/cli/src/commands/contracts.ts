import { writeFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { describeError, isMessageContract, type MessageContract } from '@mailroom/core';
import { asyncApiDocument, type ZodToJsonSchema } from '../asyncapi-document.js';
import type { Command } from '../command.js';
import { UsageError } from '../command.js';

const HELP = [
  'Usage: mailroom contracts export --module PATH [--module PATH …] [--out FILE] [--title T] [--api-version V] [--receive]',
  '',
  'Writes an AsyncAPI 3.0 document (JSON) of the message contracts that the modules export: a',
  'channel per exchange and routing key, a message per contract version with the JSON Schema of',
  'its payload and the x-mailroom-version header it travels with.',
  '  --module PATH       a JavaScript module (or TypeScript, where Node strips types) whose exports',
  '                      include contracts made by defineMessage: as exports, in arrays or in',
  '                      objects of contracts; repeat for several modules',
  '  --out FILE          write the document to FILE (default: standard output)',
  '  --title T           info.title (default: the first module\'s file name)',
  "  --api-version V     info.version, the service's API version (default: 1.0.0)",
  '  --receive           the service receives these messages (operations say receive, not send)',
  '',
  'A payload whose validator offers no JSON Schema (zod 4 and arktype do; valibot needs',
  '@valibot/to-json-schema) is described as such in the document, never left out silently.',
].join('\n');

/** `mailroom contracts export`: an AsyncAPI document of a service's message contracts. */
export const contractsCommand: Command = {
  help: () => HELP,
  async run({ argv, stdout }) {
    const [sub, ...rest] = argv;
    if (sub !== 'export') throw new UsageError(sub === undefined ? 'contracts needs a subcommand: export (see --help)' : `unknown subcommand ${JSON.stringify(sub)}: contracts has export (see --help)`);
    const { values, positionals } = (() => {
      try {
        return parseArgs({
          args: rest,
          allowPositionals: true,
          strict: true,
          options: {
            module: { type: 'string', multiple: true },
            out: { type: 'string' },
            title: { type: 'string' },
            'api-version': { type: 'string' },
            receive: { type: 'boolean' },
          },
        });
      } catch (error) {
        throw new UsageError(`${(error as Error).message} (see mailroom contracts --help)`);
      }
    })();
    if (positionals.length > 0) throw new UsageError(`unexpected argument ${positionals.join(' ')} (see --help)`);
    const modules = values.module ?? [];
    if (modules.length === 0) throw new UsageError('contracts export needs --module PATH (a module that exports contracts)');
    const contracts = new Map<string, MessageContract>();
    for (const path of modules) {
      let exported: Record<string, unknown>;
      try {
        exported = (await import(pathToFileURL(resolve(path)).href)) as Record<string, unknown>;
      } catch (error) {
        throw new UsageError(`cannot load module ${path}: ${describeError(error)}`);
      }
      const found = contractsIn(exported);
      if (found.length === 0) throw new UsageError(`module ${path} exports no message contracts (made by defineMessage)`);
      for (const contract of found) keepNewest(contracts, contract);
    }
    const document = asyncApiDocument(
      [...contracts.values()],
      {
        title: values.title ?? (modules[0] as string).replace(/^.*[\\/]/, '').replace(/\.[cm]?[jt]s$/, ''),
        version: values['api-version'] ?? '1.0.0',
        action: values.receive === true ? 'receive' : 'send',
        source: modules.join(', '),
      },
      await zodConverter(),
    );
    const text = `${JSON.stringify(document, null, 2)}\n`;
    if (values.out === undefined) {
      stdout.write(text);
      return 0;
    }
    try {
      await writeFile(values.out, text);
    } catch (error) {
      throw new UsageError(`cannot write ${values.out}: ${describeError(error)}`);
    }
    const versions = [...contracts.values()].reduce((n, c) => n + c.latestVersion, 0);
    stdout.write(`wrote ${values.out}: ${contracts.size} contract(s), ${versions} message version(s)\n`);
    return 0;
  },
};

/** The contracts among a module's exports: exported directly, in arrays, or as values of plain objects. */
function contractsIn(exported: Record<string, unknown>): MessageContract[] {
  const out: MessageContract[] = [];
  const visit = (value: unknown, depth: number): void => {
    if (isMessageContract(value)) out.push(value);
    else if (depth > 0 && Array.isArray(value)) for (const item of value.slice(0, 10_000)) visit(item, depth - 1);
    else if (depth > 0 && typeof value === 'object' && value !== null && Object.getPrototypeOf(value) === Object.prototype) {
      for (const item of Object.values(value).slice(0, 10_000)) visit(item, depth - 1);
    }
  };
  for (const value of Object.values(exported)) visit(value, 2);
  return out;
}

/**
 * One contract per type: a module may export a contract and the older contract it was grown
 * from (`const V2 = V1.version(2, …)`); the one with more versions describes both. Two contracts
 * of one type that route differently are a mistake in the module, said as such.
 */
function keepNewest(contracts: Map<string, MessageContract>, contract: MessageContract): void {
  const known = contracts.get(contract.type);
  if (known === undefined) {
    contracts.set(contract.type, contract);
    return;
  }
  if (known.exchange !== contract.exchange || known.routingKey !== contract.routingKey) {
    throw new UsageError(
      `two contracts of type "${contract.type}" route differently (${known.exchange}/${known.routingKey} and ${contract.exchange}/${contract.routingKey}): export one`,
    );
  }
  if (contract.latestVersion > known.latestVersion) contracts.set(contract.type, contract);
}

/**
 * zod's own converter, for zod schemas without Standard JSON Schema (zod 3.25's `zod/v4`):
 * loaded only when zod is installed, since it is a peer dependency.
 */
async function zodConverter(): Promise<ZodToJsonSchema | undefined> {
  try {
    const zod = (await import('zod/v4')) as { toJSONSchema?: (schema: never, params?: Record<string, unknown>) => Record<string, unknown> };
    const toJSONSchema = zod.toJSONSchema;
    if (typeof toJSONSchema !== 'function') return undefined;
    return (schema) => toJSONSchema(schema as never, { target: 'draft-7', io: 'input' });
  } catch {
    return undefined;
  }
}
