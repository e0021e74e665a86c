// The forward suite's child processes: started, waited for, stopped by pid; and never left behind.

import { type ChildProcess, fork, type ForkOptions } from 'node:child_process';
import { rmSync } from 'node:fs';
import * as path from 'node:path';
import { createInterface } from 'node:readline';

/** dist/src/runners, next to this file's dist/src/forward. */
export const RUNNERS = path.resolve(__dirname, '../runners');

/** Every child still alive, so that an exit of the bench (error, signal) can stop them by their pid. */
const alive = new Set<ChildProcess>();
/** Temporary directories to remove if the bench exits before their owner does. */
const tempDirs = new Set<string>();
let hooked = false;

function hookExit(): void {
  if (hooked) return;
  hooked = true;
  process.on('exit', () => {
    for (const child of alive) if (child.pid !== undefined && child.exitCode === null) tryKill(child.pid, 'SIGKILL');
    for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
  });
}

/** Removes `dir` at exit unless `release` is called first (the owner removed it). */
export function trackTempDir(dir: string): { release(): void } {
  hookExit();
  tempDirs.add(dir);
  return { release: () => tempDirs.delete(dir) };
}

function tryKill(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}

/** Tracks a child started elsewhere (haproxy) so the exit hook stops it too. */
export function track(child: ChildProcess): void {
  hookExit();
  alive.add(child);
  child.once('exit', () => alive.delete(child));
}

export interface Started<T> {
  child: ChildProcess;
  pid: number;
  /** The ready line (stdout) or ready message (IPC) the child sent. */
  ready: T;
}

export interface StartOptions {
  args?: string[];
  env?: NodeJS.ProcessEnv;
  execArgv?: string[];
  serialization?: ForkOptions['serialization'];
  /** How the child says it is ready: a JSON line on stdout with a `ready` key, or an IPC message with one. */
  readyVia: 'stdout' | 'ipc';
  timeoutMs?: number;
}

/** Forks `runners/<script>` with an IPC channel and resolves with its ready announcement. */
export function startRunner<T extends { ready: string; pid: number }>(
  script: string,
  opts: StartOptions,
): Promise<Started<T>> {
  hookExit();
  const child = fork(path.join(RUNNERS, script), opts.args ?? [], {
    stdio: ['ignore', 'pipe', 'inherit', 'ipc'],
    env: opts.env ?? process.env,
    execArgv: opts.execArgv ?? [],
    serialization: opts.serialization ?? 'json',
  });
  track(child);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      stopChild(child);
      reject(new Error(`${script} did not start within ${opts.timeoutMs ?? 15000} ms`));
    }, opts.timeoutMs ?? 15000);
    const ok = (ready: T) => {
      clearTimeout(timer);
      child.off('exit', early);
      resolve({ child, pid: child.pid!, ready });
    };
    const early = (code: number | null, signal: string | null) => {
      clearTimeout(timer);
      reject(new Error(`${script} exited before it was ready (code ${code}, signal ${signal})`));
    };
    child.once('exit', early);
    const lines = createInterface({ input: child.stdout! });
    lines.on('line', (line) => {
      if (opts.readyVia === 'stdout' && line.startsWith('{')) {
        try {
          const msg = JSON.parse(line) as T;
          if (msg.ready) return ok(msg);
        } catch {
          // not ours
        }
      }
      process.stderr.write(`[${script}] ${line}\n`);
    });
    if (opts.readyVia === 'ipc') {
      const onMessage = (msg: T) => {
        if (msg && typeof msg === 'object' && 'ready' in msg) {
          child.off('message', onMessage);
          ok(msg);
        }
      };
      child.on('message', onMessage);
    }
  });
}

/** SIGTERM by pid, SIGKILL after `graceMs`; resolves once the child has exited. */
export function stopChild(child: ChildProcess, graceMs = 3000): Promise<void> {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  const pid = child.pid;
  return new Promise((resolve) => {
    const timer = setTimeout(() => tryKill(pid, 'SIGKILL'), graceMs);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    tryKill(pid, 'SIGTERM');
  });
}

/** Sends `msg` and resolves with the first message `pick` accepts. */
export function request<T>(
  child: ChildProcess,
  msg: object,
  pick: (reply: any) => T | undefined,
  timeoutMs = 60_000,
): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.off('message', onMessage);
      reject(new Error(`no answer to ${JSON.stringify(msg)} within ${timeoutMs} ms`));
    }, timeoutMs);
    const onMessage = (reply: any) => {
      if (reply && typeof reply === 'object' && 'error' in reply) {
        clearTimeout(timer);
        child.off('message', onMessage);
        reject(new Error(String(reply.error)));
        return;
      }
      const got = pick(reply);
      if (got === undefined) return;
      clearTimeout(timer);
      child.off('message', onMessage);
      resolve(got);
    };
    child.on('message', onMessage);
    child.send(msg);
  });
}
