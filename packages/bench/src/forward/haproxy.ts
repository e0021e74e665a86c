// haproxy as the L4 peer: two `mode tcp` hops in one haproxy process, started in the foreground, stopped by pid.
// With `tls` (issue 18's peer, haproxy-2hop-tls) the hop between the two speaks mutual TLS 1.3: the first hop
// originates it (`server ... ssl crt <client.pem> ca-file <ca.pem> verify required`), the second terminates it
// (`bind ... ssl crt <server.pem> ca-file <ca.pem> verify required`); the load generator and the echo server still
// speak plaintext to it, as an app and its provider do to their sidecars.

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { stopChild, track, trackTempDir } from './children';

export const HAPROXY = '/usr/sbin/haproxy';

export interface Haproxy {
  child: ChildProcess;
  pid: number;
  /** Where the first hop listens. */
  port: number;
  /** Where the second hop listens (with `tls`: a TLS listener that wants a client certificate). */
  hop2Port: number;
  version: string;
  stop(): Promise<void>;
}

/** A port free on 127.0.0.1 just now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** haproxy's thread count: its default (one per CPU) unless MESHPORT_BENCH_HAPROXY_NBTHREAD says otherwise. */
export function nbthreadOverride(): number | undefined {
  const n = Number(process.env.MESHPORT_BENCH_HAPROXY_NBTHREAD);
  return Number.isInteger(n) && n > 0 ? n : undefined;
}

/** PEM files for the TLS hop: each `crt` file holds a certificate and then its key, as haproxy reads them. */
export interface HaproxyTls {
  /** The first hop's client certificate + key. */
  clientPem: string;
  /** The second hop's server certificate + key. */
  serverPem: string;
  /** The CA both verify the other side against. */
  caFile: string;
}

export function haproxyConfig(hop1: number, hop2: number, target: number, tls?: HaproxyTls): string {
  const nbthread = nbthreadOverride();
  // TLS 1.3 only, no session reuse by the first hop (meshport's consumer router keeps no session cache either).
  const out = tls
    ? ` ssl crt ${tls.clientPem} ca-file ${tls.caFile} verify required ssl-min-ver TLSv1.3 no-ssl-reuse`
    : '';
  const inn = tls ? ` ssl crt ${tls.serverPem} ca-file ${tls.caFile} verify required ssl-min-ver TLSv1.3` : '';
  return [
    `# meshport bench (forward suite): two L4 hops, hop1 -> hop2 -> the echo server${tls ? ', mutual TLS 1.3 between the hops' : ''}. Made and removed by the bench.`,
    'global',
    '  maxconn 4096',
    ...(nbthread ? [`  nbthread ${nbthread}`] : []),
    '',
    'defaults',
    '  mode tcp',
    '  timeout connect 5s',
    '  timeout client 60s',
    '  timeout server 60s',
    '',
    'frontend hop1',
    `  bind 127.0.0.1:${hop1}`,
    '  default_backend to_hop2',
    '',
    'backend to_hop2',
    `  server hop2 127.0.0.1:${hop2}${out}`,
    '',
    'frontend hop2',
    `  bind 127.0.0.1:${hop2}${inn}`,
    '  default_backend to_echo',
    '',
    'backend to_echo',
    `  server echo 127.0.0.1:${target}`,
    '',
  ].join('\n');
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

export function haproxyVersion(): Promise<string> {
  return new Promise((resolve) => {
    const p = spawn(HAPROXY, ['-v'], { stdio: ['ignore', 'pipe', 'ignore'] });
    let out = '';
    p.stdout.on('data', (c: Buffer) => (out += c.toString()));
    p.on('error', () => resolve('unknown'));
    p.on('close', () => resolve(/version (\S+)/.exec(out)?.[1] ?? 'unknown'));
  });
}

/** PEM text of the TLS hop's credentials, written next to the config by startHaproxy. */
export interface HaproxyTlsMaterial {
  clientCert: string;
  clientKey: string;
  serverCert: string;
  serverKey: string;
  ca: string;
}

/** Writes the config to a fresh temp dir, runs `haproxy -f cfg -db`, waits until both hops accept. */
export async function startHaproxy(targetPort: number, material?: HaproxyTlsMaterial): Promise<Haproxy> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'meshport-bench-haproxy-'));
  const tracked = trackTempDir(dir);
  let child: ChildProcess | undefined;
  const cleanup = async () => {
    if (child) await stopChild(child);
    rmSync(dir, { recursive: true, force: true });
    tracked.release();
  };
  try {
    const hop1 = await freePort();
    let hop2 = await freePort();
    while (hop2 === hop1) hop2 = await freePort();
    let tls: HaproxyTls | undefined;
    if (material) {
      tls = {
        clientPem: path.join(dir, 'client.pem'),
        serverPem: path.join(dir, 'server.pem'),
        caFile: path.join(dir, 'ca.pem'),
      };
      const pem = (...parts: string[]) => parts.map((p) => `${p.trim()}\n`).join('');
      writeFileSync(tls.clientPem, pem(material.clientCert, material.clientKey), { mode: 0o600 });
      writeFileSync(tls.serverPem, pem(material.serverCert, material.serverKey), { mode: 0o600 });
      writeFileSync(tls.caFile, pem(material.ca));
    }
    const cfg = path.join(dir, 'haproxy.cfg');
    writeFileSync(cfg, haproxyConfig(hop1, hop2, targetPort, tls));
    const version = await haproxyVersion();
    const proc = spawn(HAPROXY, ['-f', cfg, '-db'], { stdio: ['ignore', 'pipe', 'pipe'] });
    child = proc;
    track(proc);
    let output = '';
    const keep = (c: Buffer) => {
      output = (output + c.toString()).slice(-4000);
    };
    proc.stdout!.on('data', keep);
    proc.stderr!.on('data', keep);
    let spawnError: Error | undefined;
    proc.once('error', (err) => (spawnError = err));
    const until = Date.now() + 5000;
    for (;;) {
      if (spawnError)
        throw new Error(`could not run ${HAPROXY}: ${spawnError.message} (npm run bootstrap installs it)`);
      if (proc.exitCode !== null) throw new Error(`haproxy exited with code ${proc.exitCode}: ${output.trim()}`);
      if ((await canConnect(hop1)) && (await canConnect(hop2))) break;
      if (Date.now() > until)
        throw new Error(`haproxy did not listen on ${hop1} and ${hop2} within 5 s: ${output.trim()}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    return { child: proc, pid: proc.pid!, port: hop1, hop2Port: hop2, version, stop: cleanup };
  } catch (err) {
    await cleanup();
    throw err;
  }
}
