// The demo's child processes (ZooKeeper, the two pods' sidecars, the provider and consumer apps): spawned in a process group of
// their own (a Ctrl-C in the terminal reaches only the demo, which then stops them in order), output kept as a
// tail for error messages, stopped with SIGTERM and, after a grace period, SIGKILL. Only these pids are signalled.

import { spawn, type ChildProcess } from 'node:child_process';

const TAIL_LINES = 40;
const live = new Set<DemoChild>();

export class DemoChild {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private readonly lines: string[] = [];
  private readonly lineListeners = new Set<(line: string) => void>();
  private partial = { stdout: '', stderr: '' };

  constructor(
    readonly name: string,
    command: string,
    args: string[],
    options: { cwd?: string; env?: NodeJS.ProcessEnv } = {},
  ) {
    this.child = spawn(command, args, {
      cwd: options.cwd,
      env: options.env ?? process.env,
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    this.pid = this.child.pid ?? -1;
    live.add(this);
    for (const stream of ['stdout', 'stderr'] as const) {
      this.child[stream]!.on('data', (d: Buffer) => this.collect(stream, d.toString('utf8')));
    }
    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code, signal) => {
        live.delete(this);
        resolve({ code, signal });
      });
      this.child.once('error', (err) => {
        this.lines.push(`cannot start ${command}: ${err.message}`);
        live.delete(this);
        resolve({ code: null, signal: null });
      });
    });
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null && live.has(this);
  }

  private collect(stream: 'stdout' | 'stderr', text: string): void {
    const parts = (this.partial[stream] + text).split('\n');
    this.partial[stream] = parts.pop() ?? '';
    for (const line of parts) {
      this.lines.push(line);
      for (const listener of this.lineListeners) listener(line);
    }
    if (this.lines.length > TAIL_LINES) this.lines.splice(0, this.lines.length - TAIL_LINES);
  }

  tail(): string {
    return [...this.lines, this.partial.stdout, this.partial.stderr].filter(Boolean).join('\n');
  }

  /** Resolves with the value `match` returns for the first line it accepts; rejects if the child exits first. */
  waitForLine<T>(
    what: string,
    match: (line: string) => T | undefined,
    timeoutMs: number,
    signal?: AbortSignal,
  ): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const done = (err: Error | undefined, value?: T) => {
        clearTimeout(timer);
        this.lineListeners.delete(onLine);
        signal?.removeEventListener('abort', onAbort);
        if (err) reject(err);
        else resolve(value as T);
      };
      const onLine = (line: string) => {
        const value = match(line);
        if (value !== undefined) done(undefined, value);
      };
      const onAbort = () => done(new Error('interrupted'));
      const timer = setTimeout(
        () => done(new Error(`${this.name}: no ${what} within ${timeoutMs} ms. Last output:\n${this.tail()}`)),
        timeoutMs,
      );
      this.lineListeners.add(onLine);
      signal?.addEventListener('abort', onAbort);
      void this.exited.then(({ code, signal: sig }) =>
        done(
          new Error(
            `${this.name} (pid ${this.pid}) exited (code ${code}, signal ${sig}) before ${what}. Last output:\n${this.tail()}`,
          ),
        ),
      );
    });
  }

  /** SIGTERM, SIGKILL after `graceMs`; resolves with how it ended. */
  async stop(graceMs = 5_000): Promise<{ code: number | null; signal: NodeJS.Signals | null; killed: boolean }> {
    let killed = false;
    if (this.running) {
      signalPid(this.pid, 'SIGTERM');
      const timer = setTimeout(() => {
        killed = true;
        signalPid(this.pid, 'SIGKILL');
      }, graceMs);
      await this.exited;
      clearTimeout(timer);
    }
    return { ...(await this.exited), killed };
  }
}

function signalPid(pid: number, signal: NodeJS.Signals): void {
  try {
    if (pid > 0) process.kill(pid, signal);
  } catch {
    // gone already
  }
}

/** The last resort (process exit, a second Ctrl-C): SIGKILL every child of the demo still running. */
export function killAllChildrenSync(): void {
  for (const c of live) if (c.running) signalPid(c.pid, 'SIGKILL');
  live.clear();
}
