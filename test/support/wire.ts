// What the overload and security suites share: a multiplexing client, and a `meshport sidecar` child process whose
// memory is its own (/proc/<pid>/status). Request frames and the echo provider are the kit's.

import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { FrameSplitter, decodeFrame, type FrameHeader } from '@meshport/protocol';
import { PortTakenError, onFreePorts } from '@meshport/testkit';

export const BIN = path.resolve(__dirname, '../../../packages/cli/bin/meshport.js');

export interface Answer {
  header: FrameHeader;
  frame: Buffer;
  at: number;
}

/** One connection; requests by id, each answer matched to its request; duplicates and strays are counted. */
export class RpcClient {
  readonly pending = new Map<string, { sentAt: number; resolve: (a: Answer & { latencyMs: number }) => void }>();
  duplicates = 0;
  strays = 0;
  closed = false;
  private readonly answered = new Set<string>();

  private constructor(readonly socket: net.Socket) {
    socket.setNoDelay(true);
    const splitter = new FrameSplitter((frame) => {
      const header = decodeFrame(frame);
      const id = String(header.requestId);
      const waiter = this.pending.get(id);
      if (!waiter) {
        if (this.answered.has(id)) this.duplicates++;
        else this.strays++;
        return;
      }
      this.pending.delete(id);
      this.answered.add(id);
      const at = performance.now();
      waiter.resolve({ header, frame: Buffer.from(frame), at, latencyMs: at - waiter.sentAt });
    });
    socket.on('data', (c) => splitter.write(c));
    socket.on('close', () => (this.closed = true));
    socket.on('error', () => {});
  }

  /** `from`: the local address to connect from (any of 127.0.0.0/8 on Linux acts as another loopback host). */
  static async connect(port: number, host = '127.0.0.1', from?: string): Promise<RpcClient> {
    const socket = net.connect({ port, host, localAddress: from });
    await once(socket, 'connect');
    return new RpcClient(socket);
  }

  /** Sends a request frame whose id is `id`; resolves with its answer. */
  call(id: number | bigint, frame: Buffer): Promise<Answer & { latencyMs: number }> {
    return new Promise((resolve) => {
      this.pending.set(String(id), { sentAt: performance.now(), resolve });
      this.socket.write(frame);
    });
  }

  close(): void {
    this.socket.destroy();
  }
}

export function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

/** VmRSS and VmHWM (peak RSS) of a process, in KiB. */
export function memoryOf(pid: number): { rssKb: number; hwmKb: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  return { rssKb: field('VmRSS'), hwmKb: field('VmHWM') };
}

export interface SidecarChild {
  pid: number;
  ports: { outbound: number; inbound: number; admin: number };
  dir: string;
  child: ChildProcess;
  output(): string;
  /** The admin /routes page. */
  routes(): Promise<{
    clusters: { listener: string; name: string; active: number; pending: number }[];
    inflight: number;
    partialFrames: number;
  }>;
  stats(): Promise<string>;
  stop(): Promise<void>;
}

/**
 * `meshport sidecar --config FILE` as a child process with a file registry: `routes` maps service keys to provider
 * URLs; `extra` is YAML appended to the config (a `router:` block, say). Every port is picked free beforehand.
 */
export async function startSidecarChild(
  routes: Record<string, string[]>,
  extra = '',
  options: { nodeArgs?: string[]; env?: NodeJS.ProcessEnv } = {},
): Promise<SidecarChild> {
  // A port taken between the pick and the sidecar's bind: the child exits with EADDRINUSE and starts again on new ones.
  return onFreePorts(3, ([outbound, inbound, admin]) =>
    startSidecarChildOn({ outbound: outbound!, inbound: inbound!, admin: admin! }, routes, extra, options),
  );
}

async function startSidecarChildOn(
  { outbound, inbound, admin }: SidecarChild['ports'],
  routes: Record<string, string[]>,
  extra: string,
  options: { nodeArgs?: string[]; env?: NodeJS.ProcessEnv },
): Promise<SidecarChild> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'meshport-child-'));
  writeFileSync(path.join(dir, 'registry.json'), JSON.stringify({ services: routes }));
  const yaml = [
    'node: { ip: 127.0.0.1 }',
    `listeners: { outbound: "127.0.0.1:${outbound}", inbound: "127.0.0.1:${inbound}" }`,
    `admin: "127.0.0.1:${admin}"`,
    'log: { level: warn }',
    'registries:',
    '  - { name: file, type: file, upstream: registry.json }',
    extra,
  ].join('\n');
  writeFileSync(path.join(dir, 'meshport.yaml'), yaml);
  const child = spawn(
    process.execPath,
    [...(options.nodeArgs ?? []), BIN, 'sidecar', '--config', path.join(dir, 'meshport.yaml')],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: options.env ?? process.env,
    },
  );
  let text = '';
  child.stdout!.setEncoding('utf8').on('data', (c: string) => (text += c));
  child.stderr!.setEncoding('utf8').on('data', (c: string) => (text += c));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const base = `http://127.0.0.1:${admin}`;
  const handle: SidecarChild = {
    pid: child.pid!,
    ports: { outbound, inbound, admin },
    dir,
    child,
    output: () => text,
    routes: async () => (await (await fetch(`${base}/routes`)).json()) as Awaited<ReturnType<SidecarChild['routes']>>,
    stats: async () => (await fetch(`${base}/stats`)).text(),
    stop: async () => {
      // Only this child, by its own pid.
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
  const until = Date.now() + 20_000;
  for (;;) {
    if (child.exitCode !== null) {
      rmSync(dir, { recursive: true, force: true });
      const message = `meshport sidecar exited (${child.exitCode}):\n${text}`;
      throw /EADDRINUSE/.test(text) ? new PortTakenError(message) : new Error(message);
    }
    const ready = await fetch(`${base}/routes`)
      .then(
        async (r) =>
          r.ok && ((await r.json()) as { clusters: unknown[] }).clusters.length >= Object.keys(routes).length,
      )
      .catch(() => false);
    if (ready) return handle;
    if (Date.now() > until) {
      await handle.stop();
      throw new Error(`meshport sidecar did not come up:\n${text}`);
    }
    await sleep(50);
  }
}

/** A sum over every sample of a Prometheus counter whose labels contain all of `labels`. */
export function counterValue(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (!Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) continue;
    sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}
