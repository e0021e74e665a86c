// Pods in network namespaces for the end-to-end suites that need a real wire between two sidecars (issue 18): each
// pod is a namespace, its sidecar a `meshport sidecar --config` child run inside it (`ip netns exec`), its apps
// children there too. The test process reaches into a pod only through Unix sockets (they are not
// network-namespaced): a relay child in the pod listens on a socket path and connects to an address inside the pod
// (its admin port, or another pod's address across the veth), and one on the host carries the pods' ZooKeeper
// traffic to a ZooKeeper on the host's loopback. Nothing is added to the host's own network.
//
// Also: a tcpdump capture on a veth and the TCP byte streams read back out of it, and a TLS record walker, so a suite
// can say what crossed the wire.

import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { spawnInNetns } from '@meshport/hijack';
import { JsonLinesChild, type Json } from '@meshport/testkit';
import { BIN } from './wire';

/**
 * A byte relay: `node -e RELAY listen>target ...`, one listener per pair. Each accepted connection gets its own
 * connection to its target, bytes piped both ways; either end's close or error closes the other. An endpoint is
 * `host:port` or a Unix socket path. Prints `ready` once every listener is bound.
 */
const RELAY = `
const net = require('node:net');
const fs = require('node:fs');
const ep = (e) => (e.startsWith('/') ? { path: e } : { host: e.slice(0, e.lastIndexOf(':')), port: Number(e.slice(e.lastIndexOf(':') + 1)) });
let waiting = 0;
for (const pair of process.argv.slice(1)) {
  const [listen, target] = pair.split('>');
  const srv = net.createServer((a) => {
    const t = ep(target);
    const b = t.path ? net.connect(t.path) : net.connect(t.port, t.host);
    a.setNoDelay(true); b.setNoDelay(true);
    a.pipe(b); b.pipe(a);
    const down = () => { a.destroy(); b.destroy(); };
    a.on('error', down); b.on('error', down); a.on('close', down); b.on('close', down);
  });
  const l = ep(listen);
  if (l.path) { try { fs.unlinkSync(l.path); } catch {} }
  waiting++;
  const done = () => { if (--waiting === 0) console.log('ready'); };
  srv.on('error', (e) => { console.error(listen + ': ' + e.message); process.exit(1); });
  l.path ? srv.listen(l.path, done) : srv.listen(l.port, l.host, done);
}`;

export interface Relay {
  child: ChildProcess;
  stop(): Promise<void>;
}

/** A relay child for `pairs` ([listen, target]), inside `netns` or (undefined) on the host; resolves once bound. */
export async function startRelay(netns: string | undefined, pairs: [string, string][]): Promise<Relay> {
  const args = ['-e', RELAY, ...pairs.map(([l, t]) => `${l}>${t}`)];
  const child = netns
    ? spawnInNetns(netns, process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    : spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let text = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`relay in ${netns ?? 'the host'} not ready in 10 s: ${text}`)),
      10_000,
    );
    child.stdout!.on('data', (c: Buffer) => {
      text += c;
      if (text.includes('ready')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.stderr!.on('data', (c: Buffer) => (text += c));
    void exited.then(() => {
      clearTimeout(timer);
      reject(new Error(`relay in ${netns ?? 'the host'} exited: ${text}`));
    });
  });
  return {
    child,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    },
  };
}

/** A sidecar child in a pod: everything it logged (pino JSON lines) is kept, for the log assertions. */
export interface PodSidecar {
  name: string;
  netns: string;
  json: JsonLinesChild;
  /** The outbound listener's port as the sidecar logged it (on the pod's loopback). */
  outboundPort: number;
  /** SIGTERM, SIGKILL after `graceMs`; by this child's own pid. */
  stop(graceMs?: number): Promise<void>;
}

/** `meshport sidecar --config FILE` inside `netns`; resolves once it logs `meshport sidecar running`. */
export async function startPodSidecar(name: string, netns: string, configFile: string): Promise<PodSidecar> {
  const env = { ...process.env };
  delete env.MESHPORT_LOG_LEVEL;
  const child = spawnInNetns(netns, process.execPath, [BIN, 'sidecar', '--config', configFile], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env,
  });
  const json = new JsonLinesChild(`the ${name} sidecar`, child);
  const stop = async (graceMs = 5000) => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await json.exited;
      clearTimeout(timer);
    }
  };
  try {
    const running = await json.waitFor(
      (m) => m.msg === 'meshport sidecar running',
      '"meshport sidecar running"',
      30_000,
    );
    return { name, netns, json, outboundPort: Number(running.outbound?.port), stop };
  } catch (error) {
    await stop(1000);
    throw error;
  }
}

/** The log lines (parsed) of a pod sidecar whose text matches `pattern`. */
export function logLines(sidecar: PodSidecar, pattern: RegExp): Json[] {
  return sidecar.json.lines.filter((l) => pattern.test(JSON.stringify(l)));
}

/** GET `path` over a Unix socket (an admin port reached through a relay); the body as text. */
export function getOverSocket(socketPath: string, urlPath: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ socketPath, path: urlPath, timeout: 5000 }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${urlPath} over ${socketPath}: timed out`)));
    req.on('error', reject);
  });
}

// --- a capture on a veth ----------------------------------------------------------------------------------------

export interface Capture {
  file: string;
  /** Stops tcpdump (SIGTERM, by its pid) and waits for it to write out the file. */
  stop(): Promise<void>;
}

/**
 * `tcpdump -i DEV -w FILE -U --immediate-mode -s 0 tcp` (every packet written as it comes) inside `netns`; resolves
 * once it is listening.
 */
export async function startCapture(netns: string, dev: string, file: string): Promise<Capture> {
  const child = spawnInNetns(
    netns,
    'tcpdump',
    ['-i', dev, '-w', file, '-U', '--immediate-mode', '-s', '0', '-n', 'tcp'],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let text = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`tcpdump not listening in 10 s: ${text}`)), 10_000);
    child.stderr!.on('data', (c: Buffer) => {
      text += c;
      if (/listening on/.test(text)) {
        clearTimeout(timer);
        resolve();
      }
    });
    void exited.then(() => {
      clearTimeout(timer);
      reject(new Error(`tcpdump exited: ${text}`));
    });
  });
  return {
    file,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

/** One direction of one TCP connection: its payload bytes in sequence order. */
export interface TcpStream {
  /** `src:port>dst:port` */
  key: string;
  srcPort: number;
  dstPort: number;
  /** The connection's SYN is in the capture: `bytes` are the stream from its first byte. */
  synSeen: boolean;
  bytes: Buffer;
}

/**
 * The TCP streams in a pcap file (Ethernet link type, IPv4), each direction reassembled by sequence number
 * (retransmitted bytes once). Streams whose SYN was not captured start at their lowest sequence number.
 */
export function readPcapStreams(file: string): TcpStream[] {
  const data = readFileSync(file);
  if (data.length < 24) return [];
  const magic = data.readUInt32LE(0);
  const le = magic === 0xa1b2c3d4 || magic === 0xa1b23c4d;
  const u32 = (at: number) => (le ? data.readUInt32LE(at) : data.readUInt32BE(at));
  const linkType = u32(20);
  if (linkType !== 1) throw new Error(`pcap link type ${linkType}, expected Ethernet (1)`);
  const flows = new Map<string, { srcPort: number; dstPort: number; isn?: number; segs: Map<number, Buffer> }>();
  let at = 24;
  while (at + 16 <= data.length) {
    const incl = u32(at + 8);
    const pkt = data.subarray(at + 16, at + 16 + incl);
    at += 16 + incl;
    if (pkt.length < 14 + 20 || pkt.readUInt16BE(12) !== 0x0800) continue;
    const ip = pkt.subarray(14);
    const ihl = (ip[0]! & 0x0f) * 4;
    if (ip[9] !== 6) continue;
    const total = ip.readUInt16BE(2);
    const src = `${ip[12]}.${ip[13]}.${ip[14]}.${ip[15]}`;
    const dst = `${ip[16]}.${ip[17]}.${ip[18]}.${ip[19]}`;
    const tcp = ip.subarray(ihl, total);
    if (tcp.length < 20) continue;
    const srcPort = tcp.readUInt16BE(0);
    const dstPort = tcp.readUInt16BE(2);
    const seq = tcp.readUInt32BE(4);
    const off = (tcp[12]! >> 4) * 4;
    const syn = (tcp[13]! & 0x02) !== 0;
    const key = `${src}:${srcPort}>${dst}:${dstPort}`;
    let flow = flows.get(key);
    if (!flow) {
      flow = { srcPort, dstPort, segs: new Map() };
      flows.set(key, flow);
    }
    if (syn) flow.isn = (seq + 1) >>> 0;
    const payload = tcp.subarray(off);
    if (payload.length > 0 && !flow.segs.has(seq)) flow.segs.set(seq, Buffer.from(payload));
  }
  const out: TcpStream[] = [];
  for (const [key, flow] of flows) {
    if (flow.segs.size === 0) continue;
    const base = flow.isn ?? Math.min(...flow.segs.keys());
    const rel = [...flow.segs].map(([s, b]) => [(s - base) >>> 0, b] as const).sort((x, y) => x[0] - y[0]);
    const parts: Buffer[] = [];
    let next = 0;
    for (const [s, b] of rel) {
      if (s + b.length <= next) continue;
      if (s > next) break; // a gap: the capture missed bytes; stop where the stream is still whole
      parts.push(b.subarray(next - s));
      next = s + b.length;
    }
    out.push({
      key,
      srcPort: flow.srcPort,
      dstPort: flow.dstPort,
      synSeen: flow.isn !== undefined,
      bytes: Buffer.concat(parts),
    });
  }
  return out;
}

export interface TlsWalk {
  /** Every byte of the stream is in a well-formed TLS record (the last one may be cut by the capture's end). */
  wellFormed: boolean;
  /** Records by content type (20 change_cipher_spec, 21 alert, 22 handshake, 23 application_data). */
  byType: Record<number, number>;
  /** Record-layer versions seen, e.g. 0x0303. */
  versions: Set<number>;
  /** Where the walk stopped when not well formed. */
  badAt?: number;
}

/** Walks `bytes` as a sequence of TLS records (type, version 0x0301..0x0303, length). */
export function walkTlsRecords(bytes: Buffer): TlsWalk {
  const walk: TlsWalk = { wellFormed: true, byType: {}, versions: new Set() };
  let pos = 0;
  while (pos + 5 <= bytes.length) {
    const type = bytes[pos]!;
    const version = bytes.readUInt16BE(pos + 1);
    const length = bytes.readUInt16BE(pos + 3);
    if (type < 20 || type > 23 || version < 0x0301 || version > 0x0303 || length > 16384 + 256) {
      walk.wellFormed = false;
      walk.badAt = pos;
      return walk;
    }
    walk.byType[type] = (walk.byType[type] ?? 0) + 1;
    walk.versions.add(version);
    pos += 5 + length;
  }
  return walk;
}
