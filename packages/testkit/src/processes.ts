// The servers the kit starts (ZooKeeper, redis-server): spawned in process groups of their own, output kept as a tail
// for error messages, stopped SIGTERM-then-SIGKILL by their own pid. Every child and temp dir is tracked so that
// nothing outlives the process that started it: an exit hook kills what is left (test suites also get a root `after`
// hook and signal handlers from ./cleanup, which the demo does not load: it stops its children in its own order).

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

/** How long a server has between SIGTERM and SIGKILL. */
export const STOP_GRACE_MS = 5_000;
const OUTPUT_LINES = 60;

const liveChildren = new Set<ChildProcess>();
const liveDirs = new Set<string>();

/** Synchronously SIGKILLs every server still running and removes every temp dir (safe to call repeatedly). */
export function killAllServersSync(): void {
  for (const child of liveChildren) {
    if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
      try {
        process.kill(child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }
  liveChildren.clear();
  for (const dir of liveDirs) rmSync(dir, { recursive: true, force: true });
  liveDirs.clear();
}

/** Gracefully stops every server still running, then removes what is left. */
export async function stopAllServers(): Promise<void> {
  await Promise.all([...liveChildren].map((child) => terminate(child)));
  killAllServersSync();
}

process.on('exit', killAllServersSync);

export function makeTempDir(prefix: string): string {
  const dir = mkdtempSync(path.join(tmpdir(), prefix));
  liveDirs.add(dir);
  return dir;
}

export function removeTempDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
  liveDirs.delete(dir);
}

/** A spawned server with the tail of its output kept for error messages. */
export interface Spawned {
  child: ChildProcess;
  pid: number;
  tail(): string;
  exited: Promise<void>;
}

/**
 * Detached (a process group of its own): a Ctrl-C in the terminal reaches only the process that started the server,
 * which then stops it in its own order (the demo stops ZooKeeper after the sidecars that use it).
 */
export function spawnServer(command: string, args: string[], cwd: string): Spawned {
  const child = spawn(command, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  liveChildren.add(child);
  const lines: string[] = [];
  let partial = '';
  const collect = (d: Buffer) => {
    const parts = (partial + d.toString('utf8')).split('\n');
    partial = parts.pop() ?? '';
    lines.push(...parts);
    if (lines.length > OUTPUT_LINES) lines.splice(0, lines.length - OUTPUT_LINES);
  };
  child.stdout!.on('data', collect);
  child.stderr!.on('data', collect);
  const exited = new Promise<void>((resolve) => {
    child.once('exit', () => {
      liveChildren.delete(child);
      resolve();
    });
    child.once('error', (e) => {
      lines.push(`spawn error: ${e.message}`);
      liveChildren.delete(child);
      resolve();
    });
  });
  return { child, pid: child.pid ?? -1, tail: () => [...lines, partial].filter(Boolean).join('\n'), exited };
}

/** SIGTERM, then SIGKILL after the grace period; resolves once the child has exited. Only this child's pid. */
export async function terminate(child: ChildProcess, graceMs = STOP_GRACE_MS): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  try {
    process.kill(child.pid, 'SIGTERM');
  } catch {
    return;
  }
  const timer = setTimeout(() => {
    try {
      if (child.pid !== undefined) process.kill(child.pid, 'SIGKILL');
    } catch {
      // gone meanwhile
    }
  }, graceMs);
  await exited;
  clearTimeout(timer);
  liveChildren.delete(child);
}

/** Why a server could not take its port: another socket bound it after the kit saw it free (see ./ports). */
export class PortTakenError extends Error {
  readonly code = 'EADDRINUSE';
}

/** What a server prints when its listening port is taken: redis-server, and ZooKeeper's java.net.BindException. */
const ADDRESS_IN_USE = /Address already in use|EADDRINUSE|BindException/;

/** True when a server's output says that one of its ports was taken. */
export function saysPortTaken(output: string): boolean {
  return ADDRESS_IN_USE.test(output);
}

/**
 * Polls `probe` until it returns true. Fails with the server's output tail when it exits (a PortTakenError when the
 * output says its port was taken), when `signal` aborts, or when the time runs out; the server is stopped then.
 */
export async function waitUntilReady(
  what: string,
  spawned: Spawned,
  probe: () => Promise<boolean>,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let exited = false;
  void spawned.exited.then(() => (exited = true));
  let lastError = '';
  while (Date.now() < deadline) {
    if (exited) {
      const message =
        `${what}: process ${spawned.pid} exited before it was ready ` +
        `(code ${spawned.child.exitCode}, signal ${spawned.child.signalCode}). Last output:\n${spawned.tail()}`;
      throw ADDRESS_IN_USE.test(spawned.tail()) ? new PortTakenError(message) : new Error(message);
    }
    if (signal?.aborted) {
      await terminate(spawned.child, 1000);
      throw new Error('interrupted');
    }
    try {
      if (await probe()) return;
    } catch (e) {
      lastError = (e as Error).message;
    }
    await sleep(100);
  }
  await terminate(spawned.child, 1000);
  throw new Error(
    `${what}: not ready within ${timeoutMs} ms${lastError ? ` (last probe: ${lastError})` : ''}. ` +
      `Last output:\n${spawned.tail()}`,
  );
}

export interface RestartOptions {
  /** How long the server stays down between its exit and the new start. @default 0 */
  downMs?: number;
  /** Called once the old process has exited (when the outage starts). */
  onStopped?: () => void;
}

/** A server that can be stopped (its temp dir removed) or restarted in place (same dir, same port). */
export interface Restartable {
  /** The current process's pid (changes on restart). */
  pid: number;
  /** Kills the server (SIGTERM, then SIGKILL) and removes its temp dir. */
  stop(): Promise<void>;
  /** Stops the server and starts it again on the same port with the same dir, after `downMs`. */
  restart(options?: RestartOptions): Promise<void>;
}

/** Starts a server child; a failed first start stops it and removes the temp dir. */
export async function startRestartable(spec: {
  what: string;
  dir: string;
  spawn: () => Spawned;
  ready: () => Promise<boolean>;
  startTimeoutMs: number;
  goneOnStop: string;
  signal?: AbortSignal;
}): Promise<Restartable> {
  let current: Spawned | undefined;
  let stopped = false;
  const launch = async () => {
    current = spec.spawn();
    await waitUntilReady(spec.what, current, spec.ready, spec.startTimeoutMs, spec.signal);
    life.pid = current.pid;
  };
  const life: Restartable = {
    pid: 0,
    async stop() {
      stopped = true;
      if (current) await terminate(current.child);
      removeTempDir(spec.dir);
    },
    async restart(options: RestartOptions = {}) {
      if (stopped) throw new Error(spec.goneOnStop);
      if (current) await terminate(current.child);
      options.onStopped?.();
      if (options.downMs) await sleep(options.downMs);
      if (stopped) throw new Error(spec.goneOnStop);
      await launch();
    },
  };
  try {
    await launch();
  } catch (e) {
    if (current) await terminate(current.child, 1000);
    removeTempDir(spec.dir);
    throw e;
  }
  return life;
}
