import { spawn, type ChildProcess } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import type { History } from './history.js';
import { classifyExit, lastLines } from './process-exit.js';

/** What the harness did to the current child: an exit it caused is no failure. */
interface ChildFacts {
  killed: boolean;
  terminated: boolean;
}

/** How one managed child process is started. */
export interface ProcessSpec {
  /** Name in the history: `relay-1`, `consumer-2`. */
  name: string;
  role: 'relay' | 'consumer';
  script: string;
  env: Record<string, string>;
}

/**
 * One relay or consumer slot: the supervisor keeps a process running in it, restarts it after a
 * crash (as an orchestrator would), and lets the nemesis kill, pause or arm crash points. Every
 * exit the harness did not cause (its SIGKILL, an armed crash point, its SIGTERM answered by a
 * clean exit) is recorded as an `unexpected-exit` with the code or signal and the last lines of
 * output: the run continues, and the checker counts it as a failure.
 */
export class ProcessSlot {
  readonly spec: ProcessSpec;
  #child: ChildProcess | undefined;
  #facts: ChildFacts = { killed: false, terminated: false };
  #paused = false;
  #stopping = false;
  #armed: string | undefined;
  #output = '';
  #restarting: Promise<void> | undefined;
  #exitWaiters: Array<() => void> = [];
  readonly #history: History;
  readonly #restartDelayMs: number;
  readonly #onLine: (slot: ProcessSlot, event: Record<string, unknown>) => void;
  /** Starts so far. */
  starts = 0;
  /** Exits by crash point. */
  crashes = 0;
  /** Exits the harness did not cause. */
  unexpectedExits = 0;

  constructor(spec: ProcessSpec, history: History, restartDelayMs: number, onLine: (slot: ProcessSlot, event: Record<string, unknown>) => void) {
    this.spec = spec;
    this.#history = history;
    this.#restartDelayMs = restartDelayMs;
    this.#onLine = onLine;
  }

  get name(): string {
    return this.spec.name;
  }

  get pid(): number | undefined {
    return this.#child?.pid;
  }

  get running(): boolean {
    return this.#child !== undefined && this.#child.exitCode === null && this.#child.signalCode === null;
  }

  get paused(): boolean {
    return this.#paused;
  }

  /** The last 20 kB of the output of all its processes, for a failed run's diagnosis. */
  output(): string {
    return this.#output;
  }

  /** Starts the process and waits until it reports `ready` (or `timeoutMs` passes). */
  async start(timeoutMs = 20_000): Promise<boolean> {
    const crashPoints = this.#armed;
    this.#armed = undefined;
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith('MAILROOM_')) env[k] = v;
    Object.assign(env, this.spec.env);
    if (crashPoints !== undefined) env.MAILROOM_CRASH_POINTS = crashPoints;
    const child = spawn(process.execPath, [this.spec.script], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    const facts: ChildFacts = { killed: false, terminated: false };
    this.#child = child;
    this.#facts = facts;
    let own = '';
    const keep = (text: string): void => {
      own = (own + text).slice(-8000);
      this.#keep(text);
    };
    this.#paused = false;
    this.starts += 1;
    let ready = false;
    let readyResolve!: (value: boolean) => void;
    const readyPromise = new Promise<boolean>((resolve) => (readyResolve = resolve));
    let buffer = '';
    child.stdout.on('data', (d: Buffer) => {
      buffer += d.toString();
      let nl: number;
      while ((nl = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        keep(`${line}\n`);
        let event: Record<string, unknown> | undefined;
        try {
          event = JSON.parse(line) as Record<string, unknown>;
        } catch {
          event = undefined;
        }
        if (event === undefined) continue;
        if (event.event === 'ready') {
          ready = true;
          readyResolve(true);
        } else this.#onLine(this, event);
      }
    });
    let sawCrashPoint = false;
    child.stderr.on('data', (d: Buffer) => {
      const text = d.toString();
      if (text.includes('mailroom: crash point')) sawCrashPoint = true;
      keep(text);
    });
    // 'close', not 'exit': by then the output is complete (the crash point's line included).
    child.once('close', (code: number | null, signal: NodeJS.Signals | null) => {
      readyResolve(false);
      const cause = classifyExit({
        code,
        signal,
        killedByHarness: facts.killed,
        terminatedByHarness: facts.terminated,
        crashPointsArmed: crashPoints !== undefined,
        sawCrashPoint,
      });
      if (cause === 'crash-point') this.crashes += 1;
      this.#history.add('info', this.name, 'exit', { pid: child.pid, code, signal, cause, crashPoint: cause === 'crash-point' ? crashPoints : undefined });
      if (cause === 'unexpected') {
        this.unexpectedExits += 1;
        this.#history.add('info', this.name, 'unexpected-exit', { pid: child.pid, code, signal, ready, lastLines: lastLines(own, 60) });
      }
      for (const w of this.#exitWaiters.splice(0)) w();
      if (!this.#stopping && this.#child === child) this.#scheduleRestart();
    });
    this.#history.add('info', this.name, 'start', { pid: child.pid, crashPoints });
    // Unref'd: a race's losing timer must not keep the harness's process alive.
    const timer = sleep(timeoutMs, undefined, { ref: false }).then(() => false);
    const ok = await Promise.race([readyPromise, timer]);
    return ok || ready;
  }

  #keep(text: string): void {
    this.#output = (this.#output + text).slice(-20_000);
  }

  #scheduleRestart(): void {
    if (this.#restarting !== undefined) return;
    this.#restarting = (async () => {
      await sleep(this.#restartDelayMs);
      this.#restarting = undefined;
      if (!this.#stopping && !this.running) await this.start();
    })();
  }

  /** Sends a signal to the running process; false when none runs. Its exit by SIGKILL or SIGTERM is then no failure. */
  signal(signal: NodeJS.Signals): boolean {
    if (!this.running || this.#child === undefined) return false;
    if (signal === 'SIGKILL') this.#facts.killed = true;
    if (signal === 'SIGTERM') this.#facts.terminated = true;
    if (signal === 'SIGSTOP') this.#paused = true;
    if (signal === 'SIGCONT') this.#paused = false;
    return this.#child.kill(signal);
  }

  /** Resumes a paused process. */
  resume(): void {
    if (this.#paused) this.signal('SIGCONT');
    this.#paused = false;
  }

  /**
   * Arms crash points for the next start and restarts the process gracefully (SIGTERM, SIGKILL
   * after 3 s) so they take effect.
   */
  async armAndRestart(crashPoints: string): Promise<void> {
    this.#armed = crashPoints;
    this.resume();
    await this.#terminate(3000);
    if (!this.#stopping && !this.running && this.#restarting === undefined) await this.start();
  }

  /** Waits until the process exits or `ms` pass. */
  async #waitExit(ms: number): Promise<void> {
    if (!this.running) return;
    await Promise.race([new Promise<void>((resolve) => this.#exitWaiters.push(resolve)), sleep(ms, undefined, { ref: false })]);
  }

  async #terminate(graceMs: number): Promise<void> {
    if (!this.running) return;
    this.signal('SIGTERM');
    await this.#waitExit(graceMs);
    if (this.running) {
      this.signal('SIGKILL');
      await this.#waitExit(5000);
    }
  }

  /** Makes sure a process runs (after the heal), without crash points armed. */
  async ensureRunning(): Promise<void> {
    this.#armed = undefined;
    this.resume();
    if (this.#restarting !== undefined) await this.#restarting;
    if (!this.running) await this.start();
  }

  /** Stops for good: SIGTERM, then SIGKILL after `graceMs`. */
  async stop(graceMs = 5000): Promise<void> {
    this.#stopping = true;
    this.resume();
    await this.#terminate(graceMs);
  }
}
