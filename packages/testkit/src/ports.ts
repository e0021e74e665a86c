// Ports for servers the kit cannot hand a bound socket (a JVM, redis-server, a sidecar child given its config): a
// port is seen free, released, and bound again by the server a moment later. Two things keep that moment safe. The
// ports come from below the kernel's ephemeral range, which is where every connect() without a bind takes its local
// port from: a port from listen(0) is in that range, and any client socket opened in the gap could take it. And a
// server that still finds its port taken (another test process picked the same one) is started again on new ports
// (`onFreePorts`).

import { readFileSync } from 'node:fs';
import net from 'node:net';

export const HOST = '127.0.0.1';

/** The lowest port picked; below are the well-known and common service ports. */
const LOWEST_PORT = 10_000;
const PICK_ATTEMPTS = 200;

/** The first port of the kernel's ephemeral range (Linux's default when it cannot be read). */
function ephemeralStart(): number {
  try {
    const [low] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    return Number.isInteger(low) ? low! : 32_768;
  } catch {
    return 32_768;
  }
}

function listen(server: net.Server, port: number, host: string): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const onError = (e: NodeJS.ErrnoException) =>
      e.code === 'EADDRINUSE' || e.code === 'EACCES' ? resolve(false) : reject(e);
    server.once('error', onError);
    server.listen({ port, host, exclusive: true }, () => {
      server.off('error', onError);
      resolve(true);
    });
  });
}

/**
 * Loopback ports that nothing listens on, all distinct and outside the ephemeral range: each is held open until all
 * are found, then released for the caller to give to a server. Also what a test wants for "a port that refuses".
 */
export async function freePorts(n: number, host = HOST): Promise<number[]> {
  const high = ephemeralStart();
  const servers: net.Server[] = [];
  try {
    for (let attempt = 0; servers.length < n; attempt++) {
      const server = net.createServer();
      // Below the ephemeral range when it leaves room for one; from listen(0) otherwise (a tuned kernel).
      const wide = high - LOWEST_PORT > 1_000 && attempt < PICK_ATTEMPTS;
      const port = wide ? LOWEST_PORT + Math.floor(Math.random() * (high - LOWEST_PORT)) : 0;
      if (await listen(server, port, host)) servers.push(server);
    }
    return servers.map((s) => (s.address() as net.AddressInfo).port);
  } finally {
    await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  }
}

export async function freePort(host = HOST): Promise<number> {
  return (await freePorts(1, host))[0]!;
}

/** True for the error of a server that found its port taken (EADDRINUSE, or the kit's PortTakenError). */
export function isPortTaken(err: unknown): boolean {
  return (err as NodeJS.ErrnoException | undefined)?.code === 'EADDRINUSE';
}

/**
 * `start(ports)` with `n` free ports; when it fails because a port was taken in the gap between the pick and the
 * server's bind, again with new ports (at most `attempts` times). Any other failure is thrown at once.
 */
export async function onFreePorts<T>(
  n: number,
  start: (ports: number[]) => Promise<T>,
  options: { host?: string; attempts?: number } = {},
): Promise<T> {
  const attempts = options.attempts ?? 5;
  for (let attempt = 1; ; attempt++) {
    try {
      return await start(await freePorts(n, options.host));
    } catch (e) {
      if (!isPortTaken(e) || attempt >= attempts) throw e;
    }
  }
}
