// How the suites look at a server or a process from outside: a plain TCP exchange, ZooKeeper's four-letter words,
// a refused port, a live pid.

import net from 'node:net';
import { HOST } from './ports';

/** Sends `payload` over plain TCP and returns everything the server writes until it closes (or `until` matches). */
export function tcpExchange(
  port: number,
  payload: string,
  opts: { timeoutMs?: number; until?: (text: string) => boolean; host?: string } = {},
): Promise<string> {
  const host = opts.host ?? HOST;
  const timeoutMs = opts.timeoutMs ?? 2000;
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port });
    const chunks: Buffer[] = [];
    let settled = false;
    const finish = (err?: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      if (err) reject(err);
      else resolve(Buffer.concat(chunks).toString('utf8'));
    };
    const timer = setTimeout(
      () => finish(new Error(`no answer from ${host}:${port} within ${timeoutMs} ms`)),
      timeoutMs,
    );
    socket.on('connect', () => socket.write(payload));
    socket.on('data', (d) => {
      chunks.push(d);
      if (opts.until?.(Buffer.concat(chunks).toString('utf8'))) finish();
    });
    socket.on('end', () => finish());
    socket.on('close', () => finish());
    socket.on('error', (e) => finish(e));
  });
}

/** A ZooKeeper four-letter word (ruok, srvr, stat, mntr). */
export function fourLetterWord(port: number, word: string, timeoutMs = 2000, host = HOST): Promise<string> {
  return tcpExchange(port, word, { timeoutMs, host });
}

/** Resolves true when nothing accepts connections on the port (ECONNREFUSED). */
export function portRefuses(port: number, host = HOST): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', (e: NodeJS.ErrnoException) => resolve(e.code === 'ECONNREFUSED'));
  });
}

/** True when a process with this pid exists (signal 0 probe). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}
