import { createWriteStream, type WriteStream } from 'node:fs';

/**
 * One operation of the history, as Jepsen records it: an `invoke` when a process starts an
 * operation, then `ok` (it happened), `fail` (it certainly did not) or `info` (unknown outcome,
 * or a plain observation such as a fault or a duplicate delivery).
 */
export interface HistoryOp {
  /** Milliseconds since the run started. */
  time: number;
  type: 'invoke' | 'ok' | 'fail' | 'info';
  /** Who: `producer-2`, `nemesis`, `relay-1`, `consumer-1`, `harness`. */
  process: string;
  /** What: `commit`, a fault kind, `inject-duplicate`, `inject-poison`, `duplicate-delivery`, `phase`, … */
  f: string;
  value?: unknown;
}

/** The events of one producer transaction, the `value` of its `commit` operations. */
export interface CommitValue {
  tx: string;
  events: Array<{ id: string; key: string }>;
}

/** Appends operations to memory and, when given a path, to a JSONL file. */
export class History {
  readonly ops: HistoryOp[] = [];
  readonly #start = performance.now();
  /** The wall-clock time (ms since the epoch) of the history's zero. */
  readonly startedAtMs = Date.now();
  readonly #file: WriteStream | undefined;

  constructor(path?: string) {
    this.#file = path !== undefined ? createWriteStream(path, { flags: 'w' }) : undefined;
    this.#file?.on('error', () => undefined);
  }

  /** Records one operation and returns it. */
  add(type: HistoryOp['type'], process: string, f: string, value?: unknown): HistoryOp {
    const op: HistoryOp = { time: Math.round((performance.now() - this.#start) * 10) / 10, type, process, f };
    if (value !== undefined) op.value = value;
    this.ops.push(op);
    this.#file?.write(`${JSON.stringify(op)}\n`);
    return op;
  }

  /** Flushes and closes the file. */
  async close(): Promise<void> {
    const file = this.#file;
    if (file === undefined) return;
    await new Promise<void>((resolve) => file.end(() => resolve()));
  }
}

/** Parses a JSONL history (as written by {@link History}). */
export function parseHistory(text: string): HistoryOp[] {
  return text
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line) as HistoryOp);
}
