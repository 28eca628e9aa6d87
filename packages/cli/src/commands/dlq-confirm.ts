import { createInterface } from 'node:readline/promises';
import type { Readable, Writable } from 'node:stream';

/** Where a confirmation is asked: the terminal's input and the stream the question goes to. */
export interface ConfirmIo {
  input: Readable & { isTTY?: boolean };
  output: Writable;
}

/**
 * Asks `question` on a terminal and resolves true only for `yes` or `y`. Resolves undefined when
 * `input` is not a terminal (a pipe, a script, CI): nobody can answer, and an unanswered question
 * must never count as a yes. End of input counts as no.
 */
export async function confirmOnTerminal(io: ConfirmIo, question: string): Promise<boolean | undefined> {
  if (io.input.isTTY !== true) return undefined;
  const rl = createInterface({ input: io.input, output: io.output, terminal: false });
  try {
    const ended = new Promise<string>((resolve) => rl.once('close', () => resolve('')));
    const answer = await Promise.race([rl.question(`${question} [y/N] `), ended]);
    return /^\s*(y|yes)\s*$/i.test(answer);
  } finally {
    rl.close();
  }
}
