// `mailroom contracts export`: an AsyncAPI 3.0 document of a module's contracts, checked against
// the AsyncAPI 3.0.0 JSON Schema. The command runs in process (against src, like every test),
// and once as the built CLI (run `pnpm build` first) on the same TypeScript module.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import specs from '@asyncapi/specs';
import { Ajv } from 'ajv';
import addFormats from 'ajv-formats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnNode } from '../../../test/helpers.js';
import { UsageError } from '../src/command.js';
import { contractsCommand } from '../src/commands/contracts.js';

const fixture = fileURLToPath(new URL('./fixtures/user-contracts.ts', import.meta.url));
let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mailroom-contracts-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function run(...argv: string[]): Promise<{ code: number; output: string }> {
  let output = '';
  const stdout = new Writable({
    write(chunk: Buffer, _encoding, done) {
      output += chunk.toString('utf8');
      done();
    },
  });
  const code = await contractsCommand.run({ argv, env: {}, stdout, stderr: stdout, stopSignal: new AbortController().signal });
  return { code, output };
}

function validateAsyncApi(document: unknown): string[] {
  // The AsyncAPI schema bundles the draft-07 meta-schema itself: Ajv's own copy would clash with it.
  const ajv = new Ajv({ strict: false, allErrors: true, validateFormats: true, meta: false });
  (addFormats as unknown as (a: Ajv) => void)(ajv);
  const validate = ajv.compile((specs as unknown as { schemas: Record<string, object> }).schemas['3.0.0'] as object);
  return validate(document) ? [] : (validate.errors ?? []).map((e) => `${e.instancePath} ${e.message ?? ''}`);
}

type Doc = {
  asyncapi: string;
  channels: Record<string, { address: string; messages: Record<string, { $ref: string }>; bindings: { amqp: { exchange: { name: string; type: string } } } }>;
  operations: Record<string, { action: string; messages: unknown[] }>;
  components: { messages: Record<string, { name: string; payload: { schemaFormat?: string; schema?: Record<string, unknown>; description?: string }; headers: { required?: string[] }; [k: string]: unknown }> };
};

describe('mailroom contracts export', () => {
  it('writes a valid AsyncAPI 3.0 document: channels by exchange and routing key, a message per version', async () => {
    const { code, output } = await run('export', '--module', fixture, '--title', 'users-service', '--api-version', '2.1.0');
    expect(code).toBe(0);
    const doc = JSON.parse(output) as Doc;
    expect(validateAsyncApi(doc)).toEqual([]);
    // The check has teeth: a channel whose address is a number is refused.
    expect(validateAsyncApi({ ...doc, channels: { bad: { address: 1 } } })).not.toEqual([]);
    expect(doc.asyncapi).toBe('3.0.0');
    expect(Object.keys(doc.channels).sort()).toEqual(['billing.invoice.sent._', 'billing.refund_issued', 'default.audit-queue', 'users.user.created']);
    expect(doc.channels['users.user.created']).toMatchObject({ address: 'user.created', bindings: { amqp: { exchange: { name: 'users', type: 'topic' } } } });
    expect(doc.channels['default.audit-queue']?.bindings.amqp.exchange).toMatchObject({ name: '', type: 'direct' });
    // Both versions of user.created, the older contract exported beside it adding nothing.
    expect(Object.keys(doc.channels['users.user.created']?.messages ?? {})).toEqual(['user.created.v1', 'user.created.v2']);
    const v1 = doc.components.messages['user.created.v1'];
    const v2 = doc.components.messages['user.created.v2'];
    expect(v1?.payload.schema).toMatchObject({ type: 'object', properties: { id: { type: 'string' }, name: { type: 'string' } }, required: ['id', 'name'] });
    expect(v2?.payload.schema).toMatchObject({ properties: { firstName: { type: 'string' }, lastName: { type: 'string' } }, required: ['id', 'firstName'] });
    expect(v2?.headers.required).toEqual(['x-mailroom-version']);
    expect(v2).toMatchObject({ name: 'user.created', 'x-mailroom-contract-version': 2, 'x-mailroom-latest-version': 2, 'x-mailroom-validator': 'zod' });
    // arktype converts itself; valibot has no JSON Schema, and the document says so.
    expect(doc.components.messages['invoice.sent.v1']?.payload.schema).toMatchObject({ properties: { invoiceId: { type: 'string' } } });
    const refund = doc.components.messages['refund_issued.v1'];
    expect(refund?.name).toBe('refund:issued');
    expect(refund?.payload.schema).toBeUndefined();
    expect(refund?.payload.description).toMatch(/No JSON Schema: the valibot validator offers no JSON Schema/);
    expect(refund?.['x-mailroom-json-schema']).toMatch(/^unavailable: /);
    expect(Object.values(doc.operations).map((o) => o.action)).toEqual(['send', 'send', 'send', 'send']);
  });

  it('writes to --out, says receive with --receive, and refuses what it cannot read', async () => {
    const out = join(dir, 'asyncapi.json');
    const written = await run('export', '--module', fixture, '--out', out, '--receive');
    expect(written).toEqual({ code: 0, output: `wrote ${out}: 4 contract(s), 5 message version(s)\n` });
    const doc = JSON.parse(await readFile(out, 'utf8')) as Doc;
    expect(validateAsyncApi(doc)).toEqual([]);
    expect(new Set(Object.values(doc.operations).map((o) => o.action))).toEqual(new Set(['receive']));

    const empty = join(dir, 'empty.mjs');
    await writeFile(empty, 'export const nothing = 1;\n');
    const broken = join(dir, 'broken.mjs');
    await writeFile(broken, 'export const = ;\n');
    const clash = join(dir, 'clash.mjs');
    await writeFile(
      clash,
      `import { z } from 'zod';\nimport { defineMessage } from '@mailroom/core';\nexport const a = defineMessage('x.y', z.object({}), { exchange: 'one' });\nexport const b = defineMessage('x.y', z.object({}), { exchange: 'two' });\n`,
    );
    await expect(run('export')).rejects.toThrowError(/needs --module PATH/);
    await expect(run('import')).rejects.toThrowError(UsageError);
    await expect(run('export', '--module', join(dir, 'missing.mjs'))).rejects.toThrowError(/cannot load module .*missing\.mjs/);
    await expect(run('export', '--module', broken)).rejects.toThrowError(/cannot load module .*broken\.mjs/);
    await expect(run('export', '--module', empty)).rejects.toThrowError(/exports no message contracts/);
    await expect(run('export', '--module', fixture, '--colour')).rejects.toThrowError(/--colour/);
    await expect(run('export', '--module', fixture, '--out', join(dir, 'no', 'such', 'dir.json'))).rejects.toThrowError(/cannot write/);
    await expect(run('export', '--module', clash)).rejects.toThrowError(/two contracts of type "x.y" route differently/);
  });

  it('runs as the built CLI on a TypeScript module', async () => {
    const cli = fileURLToPath(new URL('../dist/main.js', import.meta.url));
    const out = join(dir, 'from-cli.json');
    const child = spawnNode(cli, ['contracts', 'export', '--module', fixture, '--out', out], {});
    expect(await child.exited).toEqual({ code: 0, signal: null });
    expect(child.output()).toBe(`wrote ${out}: 4 contract(s), 5 message version(s)\n`);
    expect(validateAsyncApi(JSON.parse(await readFile(out, 'utf8')))).toEqual([]);
    const usage = spawnNode(cli, ['contracts', 'export'], {});
    expect((await usage.exited).code).toBe(2);
    expect(usage.output()).toContain('contracts export needs --module PATH');
  });
});
