import { spawn, type ChildProcess } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import type { History } from './history.js';

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
 * crash (as an orchestrator would), and lets the nemesis kill, pause or arm crash points.
 */
export class ProcessSlot {
  readonly spec: ProcessSpec;
  #child: ChildProcess | undefined;
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
    this.#child = child;
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
        this.#keep(`${line}\n`);
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
      this.#keep(text);
    });
    child.once('exit', (code, signal) => {
      readyResolve(false);
      const crashed = sawCrashPoint && signal === 'SIGKILL' && crashPoints !== undefined;
      if (crashed) this.crashes += 1;
      this.#history.add('info', this.name, 'exit', { pid: child.pid, code, signal, crashPoint: crashed ? crashPoints : undefined });
      for (const w of this.#exitWaiters.splice(0)) w();
      if (!this.#stopping && this.#child === child) this.#scheduleRestart();
    });
    this.#history.add('info', this.name, 'start', { pid: child.pid, crashPoints });
    const timer = sleep(timeoutMs).then(() => false);
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

  /** Sends a signal to the running process; false when none runs. */
  signal(signal: NodeJS.Signals): boolean {
    if (!this.running || this.#child === undefined) return false;
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
    await Promise.race([new Promise<void>((resolve) => this.#exitWaiters.push(resolve)), sleep(ms)]);
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
