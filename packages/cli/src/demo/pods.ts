// A pod's sidecar for the demo: `meshport sidecar --config FILE` in a child process, taking over ZooKeeper through
// its facade, every listener on a free loopback port. Its addresses come from its own log lines.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DemoChild } from './children';

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

export function podConfig(zookeeper: string): string {
  return [
    '# A demo pod: registry takeover over ZooKeeper, every port picked free on loopback.',
    'node: { ip: 127.0.0.1 }',
    'listeners: { outbound: "127.0.0.1:0", inbound: "127.0.0.1:0" }',
    'admin: "127.0.0.1:0"',
    'log: { level: info }',
    'registries:',
    `  - { name: main, type: zookeeper, upstream: "${zookeeper}", facade: "127.0.0.1:0" }`,
    '',
  ].join('\n');
}

export async function startPod(name: string, zookeeper: string, signal?: AbortSignal): Promise<Pod> {
  const dir = mkdtempSync(path.join(os.tmpdir(), `meshport-demo-${name}-`));
  const file = path.join(dir, 'meshport.yaml');
  writeFileSync(file, podConfig(zookeeper));
  const env = { ...process.env };
  delete env.MESHPORT_LOG_LEVEL;
  const child = new DemoChild(`the ${name} sidecar`, process.execPath, [BIN, 'sidecar', '--config', file], { cwd: dir, env });
  try {
    const [facade, running] = await Promise.all([
      child.waitForLine('"registry ready" log line', (line) => {
        const o = logLine(line);
        return o?.msg === 'registry ready' && o.registry === 'main' ? toHostPort(o.facade) : undefined;
      }, 30_000, signal),
      child.waitForLine('"meshport sidecar running" log line', (line) => {
        const o = logLine(line);
        if (o?.msg !== 'meshport sidecar running') return undefined;
        const [inbound, outbound, admin] = [toHostPort(o.inbound), toHostPort(o.outbound), toHostPort(o.admin)];
        return inbound && outbound && admin ? { inbound, outbound, admin } : undefined;
      }, 30_000, signal),
    ]);
    return {
      name,
      pid: child.pid,
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
