// A pod's sidecar for the demo: `meshport sidecar --config FILE` in a child process, taking over ZooKeeper through
// its facade: every listener on a free loopback port, or (a netns pod) run with `ip netns exec` in the pod's network
// namespace, node.ip and the facade on the pod's address, inbound on 0.0.0.0, admin and outbound on the pod's
// loopback. Its addresses come from its own log lines.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DemoChild } from './children';
import { tlsConfigLines, type PodTls } from './identities';

const BIN = path.resolve(__dirname, '../../../bin/meshport.js');

export interface HostPort {
  host: string;
  port: number;
}

export interface Pod {
  name: string;
  pid: number;
  inbound: HostPort;
  outbound: HostPort;
  admin: HostPort;
  facade: HostPort;
  child: DemoChild;
  /** Set for a netns pod: its namespace (the admin port is on the pod's loopback). */
  netns?: string;
  /** SIGTERM (the sidecar drains and exits 0), SIGKILL after 10 s; the config dir goes. Resolves with the exit code. */
  stop(): Promise<number | string>;
}

export const hostPort = (a: HostPort) => `${a.host}:${a.port}`;

/** pino logs `{host, port}` for our own addresses and `{address, port}` for a server's AddressInfo. */
function toHostPort(value: unknown): HostPort | undefined {
  const v = value as { host?: string; address?: string; port?: number } | undefined;
  if (!v || typeof v.port !== 'number') return undefined;
  return { host: v.host ?? v.address ?? '127.0.0.1', port: v.port };
}

function logLine(line: string): Record<string, unknown> | undefined {
  if (!line.startsWith('{')) return undefined;
  try {
    return JSON.parse(line) as Record<string, unknown>;
  } catch {
    return undefined;
  }
}

/**
 * `podIp`: the pod's own address in its network namespace (netns pods); loopback-port pods without it. `tls`: the
 * pod's certificate files (mutual TLS, strict) and whom it lets call its services.
 */
export function podConfig(zookeeper: string, podIp?: string, tls?: PodTls): string {
  const security = tls ? [...tlsConfigLines(tls), ''] : [];
  if (podIp) {
    return [
      '# A demo pod in its own network namespace: registry takeover over ZooKeeper, inbound on every address.',
      `node: { ip: ${podIp} }`,
      'listeners: { outbound: "127.0.0.1:0", inbound: "0.0.0.0:0" }',
      'admin: "127.0.0.1:0" # loopback only: read from inside the pod',
      'log: { level: info }',
      'registries:',
      // The demo itself reads the consumer pod's facade from the host (198.18.12.1) to show what the app was handed;
      // a facade bound wider than loopback refuses other hosts unless allowRemote names them.
      `  - { name: main, type: zookeeper, upstream: "${zookeeper}", facade: "${podIp}:0", allowRemote: [198.18.12.1/32] }`,
      '',
      ...security,
    ].join('\n');
  }
  return [
    '# A demo pod: registry takeover over ZooKeeper, every port picked free on loopback.',
    'node: { ip: 127.0.0.1 }',
    'listeners: { outbound: "127.0.0.1:0", inbound: "127.0.0.1:0" }',
    'admin: "127.0.0.1:0"',
    'log: { level: info }',
    'registries:',
    `  - { name: main, type: zookeeper, upstream: "${zookeeper}", facade: "127.0.0.1:0" }`,
    '',
    ...security,
  ].join('\n');
}

/** Where the pod runs: `netns` and `ip` (its address there) for a netns pod. */
export interface PodPlace {
  netns: string;
  ip: string;
}

/** A command run inside the pod's namespace (`ip netns exec NS ...`), or as is. */
export function inPod(place: PodPlace | undefined, command: string, args: string[]): [string, string[]] {
  return place ? ['ip', ['netns', 'exec', place.netns, command, ...args]] : [command, args];
}

export async function startPod(
  name: string,
  zookeeper: string,
  signal?: AbortSignal,
  place?: PodPlace,
  tls?: PodTls,
): Promise<Pod> {
  const dir = mkdtempSync(path.join(os.tmpdir(), `meshport-demo-${name}-`));
  const file = path.join(dir, 'meshport.yaml');
  writeFileSync(file, podConfig(zookeeper, place?.ip, tls));
  const env = { ...process.env };
  delete env.MESHPORT_LOG_LEVEL;
  const [command, args] = inPod(place, process.execPath, [BIN, 'sidecar', '--config', file]);
  const child = new DemoChild(`the ${name} sidecar`, command, args, { cwd: dir, env });
  // A listener on every address is reached at the pod's own address.
  const reach = (a: HostPort): HostPort => (place && a.host === '0.0.0.0' ? { host: place.ip, port: a.port } : a);
  try {
    const [facade, running] = await Promise.all([
      child.waitForLine(
        '"registry ready" log line',
        (line) => {
          const o = logLine(line);
          const facade = o?.msg === 'registry ready' && o.registry === 'main' ? toHostPort(o.facade) : undefined;
          return facade && reach(facade);
        },
        30_000,
        signal,
      ),
      child.waitForLine(
        '"meshport sidecar running" log line',
        (line) => {
          const o = logLine(line);
          if (o?.msg !== 'meshport sidecar running') return undefined;
          const [inbound, outbound, admin] = [toHostPort(o.inbound), toHostPort(o.outbound), toHostPort(o.admin)];
          return inbound && outbound && admin
            ? { inbound: reach(inbound), outbound: reach(outbound), admin: reach(admin) }
            : undefined;
        },
        30_000,
        signal,
      ),
    ]);
    return {
      name,
      pid: child.pid,
      netns: place?.netns,
      facade,
      ...running,
      child,
      async stop() {
        const { code, signal: sig, killed } = await child.stop(10_000);
        rmSync(dir, { recursive: true, force: true });
        return killed ? 'SIGKILL after 10 s' : (code ?? sig ?? 'unknown');
      },
    };
  } catch (err) {
    await child.stop(1000);
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}
