// The console logger's JSON lines (issue 13, MAILROOM_LOG_FORMAT=json): one object per line with
// time, level, name and msg first, whatever the message and fields hold, and no secret in them.
import { describe, expect, it } from 'vitest';
import { createConsoleLogger } from '@mailroom/core';

function capture(options: Parameters<typeof createConsoleLogger>[0] = {}): { lines: string[]; logger: ReturnType<typeof createConsoleLogger> } {
  const lines: string[] = [];
  return { lines, logger: createConsoleLogger({ ...options, write: (line) => lines.push(line) }) };
}

describe('createConsoleLogger with format json', () => {
  it('writes one JSON object per line: time, level, name, msg, then the fields', () => {
    const { lines, logger } = capture({ format: 'json', name: 'relay-1' });
    logger.info('relay started', { batch: 500, ordering: false });
    expect(lines).toHaveLength(1);
    const line = lines[0] as string;
    expect(line.endsWith('\n')).toBe(true);
    expect(line.slice(0, -1)).not.toContain('\n');
    const parsed = JSON.parse(line) as Record<string, unknown>;
    expect(Object.keys(parsed)).toEqual(['time', 'level', 'name', 'msg', 'batch', 'ordering']);
    expect(parsed).toMatchObject({ level: 'info', name: 'relay-1', msg: 'relay started', batch: 500, ordering: false });
    expect(new Date(parsed.time as string).toISOString()).toBe(parsed.time);
  });

  it('keeps every line parseable and one line long whatever the message and fields hold', () => {
    const { lines, logger } = capture({ format: 'json' });
    const cycle: Record<string, unknown> = { a: 1 };
    cycle.self = cycle;
    let deep: Record<string, unknown> = {};
    const root = deep;
    for (let i = 0; i < 50; i++) deep = deep.next = {} as Record<string, unknown>;
    logger.warn('line one\nline two\u0000\u001b[31m\u202Eend', {
      error: new Error('boom at postgres://app:hunter2@db:5432/x'),
      big: 12345678901234567890n,
      cycle,
      root,
      nan: Number.NaN,
      when: new Date(0),
      fn: () => 1,
      sym: Symbol('s'),
      undef: undefined,
      list: [1, undefined, 'x'],
      time: 'forged',
      level: 'error',
      msg: 'forged',
    });
    expect(lines).toHaveLength(1);
    expect((lines[0] as string).slice(0, -1)).not.toMatch(/[\n\r]/);
    const parsed = JSON.parse(lines[0] as string) as Record<string, unknown>;
    expect(parsed.level).toBe('warn');
    expect(parsed.msg).toBe('line one\nline two\u0000\u001b[31m\u202Eend');
    // A field named like a fixed key never overwrites it.
    expect(parsed['field.level']).toBe('error');
    expect(parsed['field.msg']).toBe('forged');
    expect(parsed['field.time']).toBe('forged');
    expect(parsed.error).toBe('Error: boom at postgres://app:***@db:5432/x');
    expect(parsed.big).toBe('12345678901234567890');
    expect(parsed.cycle).toEqual({ a: 1, self: '[circular]' });
    expect(JSON.stringify(parsed.root)).toContain('[too deep]');
    expect(parsed.nan).toBe('NaN');
    expect(parsed.when).toBe('1970-01-01T00:00:00.000Z');
    expect(parsed).not.toHaveProperty('fn');
    expect(parsed).not.toHaveProperty('sym');
    expect(parsed).not.toHaveProperty('undef');
    expect(parsed.list).toEqual([1, null, 'x']);
  });

  it('redacts passwords in the message and in each field on its own, so `password=` never eats the rest of the line', () => {
    const { lines, logger } = capture({ format: 'json' });
    logger.error('connect failed: host=db password=s3cret user=app', { url: 'amqp://relay:s3cret@mq:5672', next: 'kept', nested: { dsn: 'password=s3cret' } });
    const text = lines[0] as string;
    expect(text).not.toContain('s3cret');
    const parsed = JSON.parse(text) as Record<string, unknown>;
    expect(parsed.msg).toBe('connect failed: host=db password=*** user=app');
    expect(parsed.url).toBe('amqp://relay:***@mq:5672');
    expect(parsed.next).toBe('kept');
    expect(parsed.nested).toEqual({ dsn: 'password=***' });
  });

  it('json: true means the same; text stays text; levels below the minimum are dropped', () => {
    const json = capture({ json: true, level: 'warn' });
    json.logger.info('dropped');
    json.logger.warn('kept');
    expect(json.lines.map((l) => (JSON.parse(l) as { msg: string }).msg)).toEqual(['kept']);
    const text = capture({ name: 'n' });
    text.logger.info('hello', { url: 'postgres://u:pw@h/db' });
    expect(text.lines[0]).toMatch(/^\d{4}-\d\d-\d\dT[\d:.]+Z INFO  n: hello \{"url":"postgres:\/\/u:\*\*\*@h\/db"\}\n$/);
  });
});
