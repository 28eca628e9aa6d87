import { hostname, userInfo } from 'node:os';
import type { Writable } from 'node:stream';
import type { DeadLetterSelection, DeadLetterStore } from '@mailroom/dlq';
import { UsageError } from '../command.js';
import { confirmOnTerminal, type ConfirmIo } from './dlq-confirm.js';
import { escapeControls as esc } from './dlq-escape.js';
import { jsonText, write } from './dlq-text.js';

/** Who acts from the CLI, for the audit of replays and discards: `cli:<os user>@<host>`. */
export function cliActor(env: NodeJS.ProcessEnv): string {
  let user: string;
  try {
    user = userInfo().username;
  } catch {
    // A container without a passwd entry for its uid.
    user = env.USER ?? env.USERNAME ?? `uid ${process.getuid?.() ?? '?'}`;
  }
  return `cli:${user}@${hostname()}`;
}

/** What `dlq discard` was asked to do. */
export interface DiscardRequest {
  selection: DeadLetterSelection;
  dryRun: boolean;
  /** `--yes`: the operator confirmed on the command line. */
  yes: boolean;
  json: boolean;
  actor: string;
  stdout: Writable;
  /** Where a confirmation is asked when neither --yes nor --dry-run is given. */
  confirmIo: ConfirmIo;
}

/** The first message ids of what a selection matches, for people (with "…" when there are more). */
function idList(ids: readonly string[], count: number): string {
  return ids.length === 0 ? '' : `: ${ids.join(' ')}${count > ids.length ? ' …' : ''}`;
}

/**
 * `dlq discard`: shows what the selection matches; with `--dry-run` stops there; otherwise
 * deletes only after `--yes`, or a "yes" typed on a terminal. Without a terminal and without
 * `--yes` it refuses (exit 2) and deletes nothing: a script must say yes explicitly.
 */
export async function runDiscard(store: DeadLetterStore, request: DiscardRequest): Promise<number> {
  const { selection, stdout } = request;
  const preview = await store.preview(selection, { limit: 20 });
  const ids = preview.deadLetters.map((d) => d.messageId);
  if (request.dryRun) {
    write(stdout, request.json ? jsonText({ count: preview.count, dryRun: true, messageIds: ids }) : `would discard ${preview.count} dead letter(s)${idList(ids, preview.count)}`);
    return 0;
  }
  if (preview.count === 0) {
    write(stdout, request.json ? jsonText({ count: 0, dryRun: false }) : 'discarded 0 dead letter(s): none matched');
    return 0;
  }
  if (!request.yes) {
    const what = `discard would delete ${preview.count} dead letter(s)${idList(ids, preview.count)}`;
    const answer = await confirmOnTerminal(request.confirmIo, `${esc(what)}. Delete them?`);
    if (answer === undefined) throw new UsageError(`${what}; add --yes to confirm (or --dry-run to see them). Nothing was deleted.`);
    if (!answer) {
      write(stdout, request.json ? jsonText({ count: 0, dryRun: false, declined: true }) : 'nothing discarded');
      return 1;
    }
  }
  const count = await store.discard({ ...selection, actor: request.actor });
  write(stdout, request.json ? jsonText({ count, dryRun: false }) : `discarded ${count} dead letter(s)`);
  return 0;
}
