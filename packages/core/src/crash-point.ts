/**
 * Named crash points for crash-safety tests and the chaos harness. A process started with
 * `MAILROOM_CRASH_POINTS=relay.after-confirm-before-commit` kills itself with SIGKILL the first
 * time it reaches that point; `name#3` crashes on the third hit, `name@0.05` on each hit with
 * probability 0.05. Without the variable a crash point costs one Map lookup.
 */
interface Trigger {
  nth?: number;
  probability?: number;
  hits: number;
}

const triggers = parseCrashPoints(process.env.MAILROOM_CRASH_POINTS ?? '');

function parseCrashPoints(spec: string): Map<string, Trigger> {
  const map = new Map<string, Trigger>();
  for (const part of spec.split(',').map((s) => s.trim()).filter(Boolean)) {
    const nth = /^(.+)#(\d+)$/.exec(part);
    const prob = /^(.+)@(0(?:\.\d+)?|1(?:\.0+)?)$/.exec(part);
    if (nth?.[1] !== undefined) map.set(nth[1], { nth: Number(nth[2]), hits: 0 });
    else if (prob?.[1] !== undefined) map.set(prob[1], { probability: Number(prob[2]), hits: 0 });
    else map.set(part, { nth: 1, hits: 0 });
  }
  return map;
}

/** Kills this process with SIGKILL if the crash point `name` is armed and due. */
export function crashPoint(name: string): void {
  if (triggers.size === 0) return;
  const trigger = triggers.get(name);
  if (trigger === undefined) return;
  trigger.hits += 1;
  const due = trigger.probability !== undefined ? Math.random() < trigger.probability : trigger.hits === trigger.nth;
  if (due) {
    process.stderr.write(`mailroom: crash point ${name} reached, SIGKILL\n`);
    process.kill(process.pid, 'SIGKILL');
  }
}
