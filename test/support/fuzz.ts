// The fuzz harness of the reliability suite (test/reliability-fuzz.test.ts): one mutator, the seed inputs and the
// in-process entry point of every parser of meshport that faces the network, and the worker that runs a campaign.
//
// This file is also the worker's script: `new Worker(__filename)` runs `workerMain` below, so that a campaign runs in
// a thread of its own, where a hang is cut off by the parent's watchdog and memory is bounded by resourceLimits.
//
// Every case is deterministic: case i of target t under seed s is made by an Rng seeded from (s, t, i) alone, so
// FUZZ_SEED and the case index replay it exactly (see caseInput).

import { EventEmitter } from 'node:events';
import { readdirSync, readFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { Duplex } from 'node:stream';
import { getHeapStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { setTimeout as sleep } from 'node:timers/promises';

// ---------------------------------------------------------------------------------------------------------------
// Randomness.

/** mulberry32: small, fast, and the same sequence on every machine. */
export class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0;
  }
  next(): number {
    this.s = (this.s + 0x6d2b79f5) >>> 0;
    let t = this.s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }
  /** 0 <= n < max */
  int(max: number): number {
    return max <= 0 ? 0 : this.next() % max;
  }
  chance(p: number): boolean {
    return this.next() / 0x1_0000_0000 < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }
  bytes(n: number): Buffer {
    const b = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) b[i] = this.next() & 0xff;
    return b;
  }
}

export function mixSeed(...parts: number[]): number {
  let h = 0x811c9dc5;
  for (const p of parts) {
    h = Math.imul(h ^ (p >>> 0), 0x01000193) >>> 0;
    h = Math.imul(h ^ (h >>> 13), 0x5bd1e995) >>> 0;
  }
  return h >>> 0;
}

export const DEFAULT_FUZZ_SEED = 0x6d657368; // "mesh"

/** FUZZ_SEED (decimal or 0x-hex), else the fixed default, so CI runs are reproducible and a rerun can vary. */
export function fuzzSeedFromEnv(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env.FUZZ_SEED;
  if (!raw) return DEFAULT_FUZZ_SEED;
  const n = raw.startsWith('0x') ? Number.parseInt(raw.slice(2), 16) : Number.parseInt(raw, 10);
  if (!Number.isFinite(n)) throw new Error(`FUZZ_SEED=${raw} is not a number`);
  return n >>> 0;
}

// ---------------------------------------------------------------------------------------------------------------
// The mutator.

const INTERESTING_BYTES = [
  0x00, 0x01, 0x02, 0x7f, 0x80, 0xff, 0xfe, 0xda, 0xbb, 0x0d, 0x0a, 0x2a, 0x24, 0x3a, 0x2d, 0x7b, 0x7d, 0x22, 0x2f,
  0x20,
];
/** Length-field values at the edges: 0, 1, -1, 2^31-1, -2^31, 2^15-1, 2^16-1, and off-by-one of the input size. */
function interestingLengths(total: number): number[] {
  return [
    0,
    1,
    -1,
    0x7fffffff,
    -0x80000000,
    0x7fff,
    0xffff,
    0x8000,
    total,
    total - 1,
    total + 1,
    total * 2,
    16 * 1024 * 1024 + 1,
  ];
}

/** One mutation of `b`. `corpus` is for splicing with another seed. */
function mutateOnce(b: Buffer, rng: Rng, corpus: readonly Buffer[]): Buffer {
  const at = (n = b.length) => rng.int(n + 1);
  switch (rng.int(11)) {
    case 0: {
      // bit flip
      if (b.length === 0) return rng.bytes(1);
      const c = Buffer.from(b);
      const i = rng.int(c.length);
      c[i]! ^= 1 << rng.int(8);
      return c;
    }
    case 1: {
      // a byte set to an interesting or random value
      if (b.length === 0) return Buffer.from([rng.pick(INTERESTING_BYTES)]);
      const c = Buffer.from(b);
      c[rng.int(c.length)] = rng.chance(0.5) ? rng.pick(INTERESTING_BYTES) : rng.int(256);
      return c;
    }
    case 2: {
      // insert 1..16 bytes
      const i = at();
      const ins = rng.chance(0.5)
        ? rng.bytes(1 + rng.int(16))
        : Buffer.alloc(1 + rng.int(4), rng.pick(INTERESTING_BYTES));
      return Buffer.concat([b.subarray(0, i), ins, b.subarray(i)]);
    }
    case 3: {
      // delete a range
      const i = at();
      const n = 1 + rng.int(Math.min(32, Math.max(1, b.length - i)));
      return Buffer.concat([b.subarray(0, i), b.subarray(i + n)]);
    }
    case 4:
    case 5: {
      // a 1, 2 or 4 byte big-endian (or little-endian) field set to an extreme length
      const size = rng.pick([1, 2, 4, 4, 4]);
      if (b.length < size) return Buffer.concat([b, rng.bytes(size)]);
      const c = Buffer.from(b);
      const i = rng.int(c.length - size + 1);
      const v = rng.pick(interestingLengths(c.length));
      if (size === 1) c[i] = v & 0xff;
      else if (size === 2) c.writeUInt16BE(v & 0xffff, i);
      else if (rng.chance(0.85)) c.writeInt32BE(v | 0, i);
      else c.writeInt32LE(v | 0, i);
      return c;
    }
    case 6: {
      // a decimal length in text protocols (RESP `$12`, HTTP `Content-Length: 12`) replaced by an extreme
      const text = b.toString('latin1');
      const m = [...text.matchAll(/-?\d+/g)];
      if (m.length === 0) return mutateOnce(b, rng, corpus);
      const hit = rng.pick(m);
      const v = rng.pick([
        '0',
        '-1',
        '-2',
        '2147483647',
        '2147483648',
        '9223372036854775807',
        '99999999999999999999',
        '1e3',
        ' 5',
        '00',
        String(Number(hit[0]) + 1),
        String(Number(hit[0]) - 1),
      ]);
      return Buffer.from(text.slice(0, hit.index) + v + text.slice(hit.index! + hit[0].length), 'latin1');
    }
    case 7: {
      // splice: a prefix of this input and a suffix of another seed
      const other = rng.pick(corpus);
      return Buffer.concat([b.subarray(0, at()), other.subarray(rng.int(other.length + 1))]);
    }
    case 8:
      // truncation
      return b.subarray(0, at(Math.max(0, b.length - 1)));
    case 9: {
      // a range duplicated (a repeated header, a frame sent twice)
      if (b.length === 0) return b;
      const i = rng.int(b.length);
      const n = 1 + rng.int(Math.min(64, b.length - i));
      const j = at();
      return Buffer.concat([b.subarray(0, j), b.subarray(i, i + n), b.subarray(j)]);
    }
    default: {
      // a run of random bytes overwritten
      if (b.length === 0) return rng.bytes(1 + rng.int(8));
      const c = Buffer.from(b);
      const i = rng.int(c.length);
      rng.bytes(Math.min(c.length - i, 1 + rng.int(8))).copy(c, i);
      return c;
    }
  }
}

/** 1..4 stacked mutations of a seed picked from `corpus` (never empty). */
export function mutate(rng: Rng, corpus: readonly Buffer[]): Buffer {
  let b = rng.pick(corpus);
  const n = 1 + (rng.chance(0.5) ? 0 : rng.int(4));
  for (let i = 0; i < n; i++) b = mutateOnce(b, rng, corpus);
  return b;
}

/** Random chunking: whole, a few random cuts, or (rarely, short inputs) byte by byte. */
export function chunkify(input: Buffer, rng: Rng): Buffer[] {
  const r = rng.int(10);
  if (r < 4 || input.length < 2) return [input];
  if (r === 9 && input.length <= 256) return [...input].map((x) => Buffer.from([x]));
  const cuts = new Set<number>();
  const n = 1 + rng.int(6);
  for (let i = 0; i < n; i++) cuts.add(1 + rng.int(input.length - 1));
  const points = [0, ...[...cuts].sort((a, b) => a - b), input.length];
  const out: Buffer[] = [];
  for (let i = 1; i < points.length; i++) out.push(input.subarray(points[i - 1]!, points[i]!));
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Targets: what each parser is fed and what counts as its clean refusal.

export const TARGETS = ['bolt', 'dubbo', 'zookeeper', 'resp', 'mesh-api'] as const;
export type Target = (typeof TARGETS)[number];

/** Root of the repository (test/dist/support -> three up). */
const ROOT = path.resolve(__dirname, '../../..');
export const CRASHERS_DIR = path.join(ROOT, 'test', 'fixtures', 'fuzz-crashers');

/** Reads the `.hex` files of a directory: lowercase hex, whitespace and `#` comment lines ignored. */
export function readHexDir(dir: string): { name: string; bytes: Buffer }[] {
  let names: string[];
  try {
    names = readdirSync(dir)
      .filter((n) => n.endsWith('.hex'))
      .sort();
  } catch {
    return [];
  }
  return names.map((name) => {
    const text = readFileSync(path.join(dir, name), 'utf8')
      .split('\n')
      .filter((l) => !l.trimStart().startsWith('#'))
      .join('')
      .replace(/\s+/g, '');
    return { name, bytes: Buffer.from(text, 'hex') };
  });
}

function int32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n, 0);
  return b;
}
function int64(n: bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigInt64BE(n, 0);
  return b;
}
function ustring(s: string | null): Buffer {
  if (s === null) return int32(-1);
  const b = Buffer.from(s);
  return Buffer.concat([int32(b.length), b]);
}
function lengthPrefixed(body: Buffer): Buffer {
  return Buffer.concat([int32(body.length), body]);
}
function zkRequest(xid: number, type: number, body: Buffer): Buffer {
  return lengthPrefixed(Buffer.concat([int32(xid), int32(type), body]));
}
const OPEN_ACL = Buffer.concat([int32(1), int32(31), ustring('world'), ustring('anyone')]);

const PROVIDER_NODE_NAME = encodeURIComponent(
  'bolt://10.1.2.3:12200/com.example.EchoService?version=1.0&interface=com.example.EchoService&weight=100',
);
const PROVIDERS_DIR = '/sofa-rpc/com.example.EchoService/providers';
const DUBBO_PROVIDER =
  'dubbo://10.1.2.3:20880/org.example.Greeter?interface=org.example.Greeter&version=2.0&side=provider';

/** A ZooKeeper app connection as sofa-rpc-node / Dubbo drive it: ConnectRequest, then the requests the facade rewrites. */
export function zookeeperSeeds(): Buffer[] {
  const connect = (session: bigint) =>
    lengthPrefixed(
      Buffer.concat([int32(0), int64(0n), int32(30_000), int64(session), lengthPrefixed(Buffer.alloc(16, 7))]),
    );
  const nodePath = `${PROVIDERS_DIR}/${PROVIDER_NODE_NAME}`;
  const dubboNode = `/dubbo/org.example.Greeter/providers/${encodeURIComponent(DUBBO_PROVIDER)}`;
  const create = (xid: number, p: string, flags: number, type = 1) =>
    zkRequest(xid, type, Buffer.concat([ustring(p), lengthPrefixed(Buffer.from('x')), OPEN_ACL, int32(flags)]));
  const reqs = [
    create(1, nodePath, 1),
    create(2, dubboNode, 1, 15),
    create(3, '/sofa-rpc', 0),
    zkRequest(4, 8, Buffer.concat([ustring(PROVIDERS_DIR), Buffer.from([1])])),
    zkRequest(5, 12, Buffer.concat([ustring('/dubbo/org.example.Greeter/providers'), Buffer.from([0])])),
    zkRequest(6, 3, Buffer.concat([ustring(nodePath), Buffer.from([1])])),
    zkRequest(7, 4, Buffer.concat([ustring(nodePath), Buffer.from([0])])),
    zkRequest(8, 5, Buffer.concat([ustring(nodePath), lengthPrefixed(Buffer.from('y')), int32(-1)])),
    zkRequest(9, 2, Buffer.concat([ustring(nodePath), int32(-1)])),
    zkRequest(
      -8,
      101,
      Buffer.concat([int64(5n), int32(1), ustring(nodePath), int32(0), int32(1), ustring(PROVIDERS_DIR)]),
    ),
    zkRequest(
      10,
      21,
      Buffer.concat([ustring(nodePath), lengthPrefixed(Buffer.alloc(0)), OPEN_ACL, int32(1), int64(60_000n)]),
    ),
    zkRequest(-2, 11, Buffer.alloc(0)),
    zkRequest(11, -11, Buffer.alloc(0)),
  ];
  return [
    Buffer.concat([connect(0n), ...reqs]),
    Buffer.concat([connect(0x1234n), reqs[0]!, reqs[3]!, reqs[8]!]),
    Buffer.concat([connect(0n), reqs[1]!, reqs[4]!, reqs[9]!, reqs[12]!]),
    Buffer.concat([connect(0n), reqs[0]!, reqs[5]!, reqs[6]!, reqs[7]!, reqs[10]!, reqs[11]!]),
    connect(0n),
  ];
}

function bulk(s: string): string {
  return `$${Buffer.byteLength(s)}\r\n${s}\r\n`;
}
function command(...args: string[]): string {
  return `*${args.length}\r\n${args.map(bulk).join('')}`;
}

/** What Dubbo's Redis registry and redis-cli send (request mode), and what Redis answers (reply mode). */
export function respSeeds(): { requests: Buffer[]; replies: Buffer[] } {
  const key = '/dubbo/org.example.Greeter/providers';
  const requests = [
    command('HELLO', '3'),
    command('HSET', key, DUBBO_PROVIDER, String(Date.now() + 60_000)),
    command('PUBLISH', key, 'register'),
    command('HGETALL', key) + command('PSUBSCRIBE', '/dubbo/*'),
    command('MULTI') + command('HDEL', key, DUBBO_PROVIDER) + command('PUBLISH', key, 'unregister') + command('EXEC'),
    'PING\r\nECHO "hello world"\r\n',
    command('SET', 'k', 'v') + command('GET', 'k') + command('CLIENT', 'REPLY', 'OFF') + command('PING'),
  ].map((s) => Buffer.from(s));
  const replies = [
    '+OK\r\n',
    '-ERR unknown command\r\n',
    ':1\r\n$5\r\nhello\r\n$-1\r\n',
    `*2\r\n${bulk(DUBBO_PROVIDER)}${bulk('1700000000000')}`,
    `%2\r\n${bulk(DUBBO_PROVIDER)}${bulk('1')}+k\r\n:2\r\n`,
    `>4\r\n${bulk('pmessage')}${bulk('/dubbo/*')}${bulk(key)}${bulk('register')}`,
    '_\r\n,3.14\r\n#t\r\n(12345678901234567890\r\n!5\r\nERR x\r\n=8\r\ntxt:abcd\r\n~1\r\n:1\r\n|1\r\n+a\r\n+b\r\n*-1\r\n',
  ].map((s) => Buffer.from(s));
  return { requests, replies };
}

/** Raw HTTP/1.1 requests as sofa-rpc's MeshApiClient (java.net.HttpURLConnection) sends them, and a few others. */
export function meshApiSeeds(): Buffer[] {
  const post = (p: string, body: object | string, extra = '') => {
    const text = typeof body === 'string' ? body : JSON.stringify(body);
    return Buffer.from(
      `POST ${p} HTTP/1.1\r\nContent-Type: text/plain\r\nUser-Agent: Java/1.8.0_372\r\nHost: 127.0.0.1:13330\r\n` +
        `Accept: text/html, image/gif, image/jpeg, *; q=.2, */*; q=.2\r\n${extra}Content-Length: ${Buffer.byteLength(text)}\r\n\r\n${text}`,
    );
  };
  const service = 'com.example.EchoService:1.0';
  return [
    post('/configs/application', { appName: 'echo-app' }),
    post('/services/publish', {
      serviceName: service,
      protocolType: 'bolt',
      port: '12200',
      providerMetaInfo: {
        protocol: 'bolt',
        version: '4.0',
        serializeType: 'hessian2',
        appName: 'echo-app',
        properties: { weight: 100, startTime: '1' },
      },
    }),
    post('/services/subscribe', { serviceName: service }),
    post('/services/unsubscribe', { serviceName: service }),
    post('/services/unpublish', { serviceName: `${service}:uid` }),
    post('/services/publish', '{"serviceName":"a:1","providerMetaInfo":[1,2]}', 'Connection: keep-alive\r\n'),
    Buffer.from('GET /services/subscribe?x=1 HTTP/1.1\r\nHost: x\r\n\r\n'),
    Buffer.from(
      `POST /services/subscribe HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{"ser\r\n12\r\nviceName":"a:1.0"}\r\n0\r\n\r\n`,
    ),
  ];
}

export function boltDubboSeeds(protocol: 'bolt' | 'dubbo'): Buffer[] {
  const files = readHexDir(path.join(ROOT, 'protocol', 'test', 'fixtures')).filter((f) =>
    protocol === 'dubbo' ? f.name.includes('dubbo') : !f.name.includes('dubbo'),
  );
  const frames = files.map((f) => f.bytes);
  // Pipelines: two or three frames back to back, as a multiplexing caller writes them.
  const pipelines = frames.slice(0, 6).map((f, i) => Buffer.concat([f, frames[(i + 3) % frames.length]!, f]));
  return [...frames, ...pipelines];
}

export function seedsOf(target: Target): Buffer[] {
  switch (target) {
    case 'bolt':
    case 'dubbo':
      return boltDubboSeeds(target);
    case 'zookeeper':
      return zookeeperSeeds();
    case 'resp': {
      const { requests, replies } = respSeeds();
      return [...requests, ...replies];
    }
    case 'mesh-api':
      return meshApiSeeds();
  }
}

/** The input of case `index`: about 1 in 10 pure random bytes, the rest mutated seeds. Its chunking follows from `rng`. */
export function caseInput(
  seed: number,
  target: Target,
  index: number,
  corpus: readonly Buffer[],
): { input: Buffer; rng: Rng; random: boolean } {
  const rng = new Rng(mixSeed(seed, TARGETS.indexOf(target), index));
  const random = rng.int(10) === 0;
  const input = random ? rng.bytes(rng.int(rng.chance(0.9) ? 64 : 2048)) : mutate(rng, corpus);
  return { input, rng, random };
}

// ---------------------------------------------------------------------------------------------------------------
// Fake sockets: the parsers are driven through the very objects that own them in production (the router's caller
// connection, the ZooKeeper facade's connection), with an EventEmitter standing in for net.Socket.

class FakeSocket extends EventEmitter {
  destroyed = false;
  ended = false;
  paused = false;
  readonly remoteAddress = '127.0.0.1';
  readonly remotePort = 40000;
  readonly written: Buffer[] = [];
  constructor(private readonly onWrite?: (b: Buffer) => void) {
    super();
  }
  setNoDelay(): this {
    return this;
  }
  pause(): this {
    this.paused = true;
    return this;
  }
  resume(): this {
    this.paused = false;
    return this;
  }
  isPaused(): boolean {
    return this.paused;
  }
  cork(): void {}
  uncork(): void {}
  write(b: Buffer): boolean {
    if (this.destroyed) throw new Error('write after destroy');
    this.written.push(Buffer.from(b));
    this.onWrite?.(b);
    return true;
  }
  end(): this {
    this.ended = true;
    return this;
  }
  destroy(): this {
    if (!this.destroyed) {
      this.destroyed = true;
      this.emit('close');
    }
    return this;
  }
}

/** What one case did, summed into the campaign's figures. */
export interface Outcome {
  /** The parser's clean refusal (protocol error reply, connection closed, HTTP 4xx). */
  refused: boolean;
  /** Something got through (a frame routed, a request answered 2xx, a RESP value out). */
  accepted: number;
}

interface TargetImpl {
  run(input: Buffer, rng: Rng): Outcome | Promise<Outcome>;
  close?(): Promise<void> | void;
}

/** Throws the case's failure: the suite counts each throw out of run() as a crash. */
function check(ok: boolean, what: string): void {
  if (!ok) throw new Error(`property broken: ${what}`);
}

/** Bolt and Dubbo share the target (the router sniffs the protocol); the corpus makes the difference. */
async function makeRouterTarget(): Promise<TargetImpl> {
  const [{ Router, MemoryRouteTable }, protocolLib, { default: pino }] = await Promise.all([
    import('@meshport/router'),
    import('@meshport/protocol'),
    import('pino'),
  ]);
  // No route at all: every request is answered by the router itself (no-route error response), synchronously, so
  // the whole caller path (splitter, header decode, route key, identity, error encoder) runs per case without I/O.
  const router = new Router({
    routeTable: new MemoryRouteTable(),
    outbound: false,
    inbound: false,
    admin: false,
    logger: pino({ level: 'silent' }),
  });
  let badFrames = 0;
  const badFrame = router.badFrame.bind(router);
  router.badFrame = (caller, error) => {
    badFrames++;
    badFrame(caller, error);
  };
  const { FrameSplitter, decodeFrame, ProtocolError } = protocolLib;
  return {
    run(input, rng) {
      badFrames = 0;
      const socket = new FakeSocket();
      router.adopt(rng.chance(0.5) ? 'outbound' : 'inbound', socket as never);
      let ended = false;
      try {
        // Anything thrown out of a 'data' handler would kill the sidecar: that is the crash this looks for.
        for (const chunk of chunkify(input, rng)) {
          if (socket.paused || socket.ended) break;
          socket.emit('data', chunk);
        }
        ended = socket.ended;
      } finally {
        socket.destroy();
      }
      // Everything the router wrote back is whole, well-formed frames of the caller's protocol.
      const out = Buffer.concat(socket.written);
      let frames = 0;
      const splitter = new FrameSplitter((f) => {
        decodeFrame(f);
        frames++;
      });
      try {
        splitter.write(out);
      } catch (e) {
        throw new Error(
          `the router wrote a malformed answer (${e instanceof ProtocolError ? e.code : String(e)}): ${out.toString('hex').slice(0, 200)}`,
        );
      }
      check(splitter.buffered === 0, `the router wrote a partial frame (${splitter.buffered} bytes left over)`);
      // A bad frame closes the connection (once nothing is in flight, which is always here).
      if (badFrames > 0) check(ended, 'a bad frame left the connection open');
      return { refused: badFrames > 0, accepted: frames };
    },
  };
}

async function makeZooKeeperTarget(): Promise<TargetImpl> {
  const { ZooKeeperFacade } = await import('@meshport/registry-zookeeper');
  const { RewriteOnlyTakeover } = await import('@meshport/registry-core');
  const facade = new ZooKeeperFacade({
    upstream: '127.0.0.1:1',
    takeover: new RewriteOnlyTakeover({ host: '10.0.0.9', port: 12201 }, { host: '127.0.0.1', port: 12220 }),
    logger: { warn: () => {} },
    emptyHoldMs: 10,
    // The splitter allocates a claimed packet once its length is checked (up to this cap): at the default 1 MiB the
    // campaign spends most of its time collecting those buffers. The code path is the same with a smaller cap, and
    // the cap boundary is reached more often; the wire campaign runs the default.
    maxPacketBytes: 64 * 1024,
  });
  // The facade's per-connection class is internal; one accepted (fake) connection hands over its constructor, and its
  // dial to port 1 fails and closes that first connection. Every case then builds a FacadeConnection with fake sockets.
  const internals = facade as unknown as {
    accept(s: unknown): void;
    connections: Set<{ constructor: new (ctx: unknown, app: unknown) => unknown }>;
    context: { sessions: Map<string, unknown>; endSession(s: unknown): void };
  };
  internals.accept(new FakeSocket());
  const Connection = [...internals.connections][0]!.constructor;
  const context = internals.context;
  let sessionCounter = 0n;
  return {
    run(input, rng) {
      const app = new FakeSocket();
      const replies: Buffer[] = [];
      let sawConnect = false;
      // A stand-in ZooKeeper: answers the ConnectRequest, then every request with err 0 and the body its type needs,
      // so the reply-side rewriting runs on the replies of fuzzed requests too.
      const upstream = new FakeSocket((frame) => {
        check(
          frame.length >= 4 && frame.readInt32BE(0) === frame.length - 4,
          'a frame sent upstream is not one whole length-prefixed packet',
        );
        if (!sawConnect) {
          sawConnect = true;
          const session = ++sessionCounter;
          replies.push(
            lengthPrefixed(Buffer.concat([int32(0), int32(4000), int64(session), lengthPrefixed(Buffer.alloc(16, 1))])),
          );
          return;
        }
        if (frame.length < 12) return;
        const xid = frame.readInt32BE(4);
        const type = frame.readInt32BE(8);
        const head = Buffer.concat([int32(xid), int64(7n), int32(0)]);
        const pathLen = frame.length >= 16 ? frame.readInt32BE(12) : -1;
        const reqPath = pathLen >= 0 && 16 + pathLen <= frame.length ? frame.toString('utf8', 16, 16 + pathLen) : '/';
        let body: Buffer = Buffer.alloc(0);
        if (type === 8 || type === 12) {
          const children = Buffer.concat([int32(2), ustring(PROVIDER_NODE_NAME), ustring('not%a%url')]);
          body = type === 12 ? Buffer.concat([children, Buffer.alloc(68)]) : children;
        } else if (type === 1 || type === 15 || type === 19 || type === 21) {
          body = type === 1 ? ustring(reqPath) : Buffer.concat([ustring(reqPath), Buffer.alloc(68)]);
        }
        replies.push(lengthPrefixed(Buffer.concat([head, body])));
        if (rng.chance(0.05))
          replies.push(
            lengthPrefixed(Buffer.concat([int32(-1), int64(-1n), int32(0), int32(2), int32(3), ustring(reqPath)])),
          );
      });
      const connection = new Connection(context, app) as {
        attach(u: unknown): void;
        destroy(): void;
        destroyed: boolean;
      };
      connection.attach(upstream);
      let refused = false;
      try {
        for (const chunk of chunkify(input, rng)) {
          if (connection.destroyed) break;
          app.emit('data', chunk);
          // Replies after the chunk, not inside the write: no reentrancy a real socket would not have.
          while (replies.length > 0 && !connection.destroyed) upstream.emit('data', replies.shift()!);
        }
      } finally {
        refused = connection.destroyed;
        connection.destroy();
        // Sessions the stand-in keyed would otherwise wait out their orphan timers in the map.
        for (const s of [...context.sessions.values()]) context.endSession(s);
      }
      return { refused, accepted: upstream.written.length };
    },
    close: () => facade.close(),
  };
}

async function makeRespTarget(): Promise<TargetImpl> {
  const { RespParser } = await import('@meshport/registry-redis');
  const { RegistryError } = await import('@meshport/registry-core');
  /** Parses `chunks`; returns the raw bytes of every value in order, and the error if any. */
  const parse = (mode: 'request' | 'reply', chunks: Buffer[]) => {
    const raws: Buffer[] = [];
    let error: unknown;
    let errors = 0;
    let afterError = 0;
    const parser = new RespParser({
      mode,
      maxBulkBytes: 1024 * 1024,
      onValue: (_v, raw) => {
        if (errors > 0) afterError++;
        raws.push(Buffer.from(raw));
      },
      onError: (e) => {
        errors++;
        error = e;
      },
    });
    for (const c of chunks) parser.write(c);
    check(errors <= 1, `onError called ${errors} times`);
    check(afterError === 0, 'a value came out after the protocol error');
    check(
      error === undefined || error instanceof RegistryError,
      `onError got something other than a RegistryError: ${String(error)}`,
    );
    return { raws, error: error as InstanceType<typeof RegistryError> | undefined, buffered: parser.bufferedBytes };
  };
  return {
    run(input, rng) {
      const mode = rng.chance(0.6) ? 'request' : 'reply';
      const chunked = parse(mode, chunkify(input, rng));
      const whole = parse(mode, [input]);
      // Each value comes out with exactly the bytes it was read from, in order: the raws are a prefix of the input.
      const joined = Buffer.concat(chunked.raws);
      check(input.subarray(0, joined.length).equals(joined), 'the raw bytes of the values are not the input');
      // Chunking changes nothing: same values, same error (a parser that depends on where TCP cut is a bug).
      check(
        chunked.raws.length === whole.raws.length,
        `chunked ${chunked.raws.length} values, whole ${whole.raws.length}`,
      );
      check(
        (chunked.error === undefined) === (whole.error === undefined),
        `error chunked ${chunked.error?.message}, whole ${whole.error?.message}`,
      );
      // What it holds is exactly the bytes received and not yet a value.
      const pending = input.length - joined.length;
      check(
        chunked.error !== undefined || chunked.buffered === pending,
        `holds ${chunked.buffered} bytes for ${pending} not yet a value`,
      );
      return { refused: whole.error !== undefined, accepted: whole.raws.length };
    },
  };
}

/** A Duplex standing in for a TCP connection: the test pushes what the server reads; what it writes is collected. */
class FakeConnection extends Duplex {
  readonly out: Buffer[] = [];
  remoteAddress = '127.0.0.1';
  remotePort = 40001;
  constructor() {
    super({ allowHalfOpen: true });
  }
  override _read(): void {}
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (e?: Error | null) => void): void {
    this.out.push(chunk);
    cb();
  }
  setNoDelay(): void {}
  setKeepAlive(): void {}
  setTimeout(): this {
    return this;
  }
  /**
   * net.Socket's: node:http calls it after an answer with `Connection: close` it writes itself (a request without a
   * Host header gets 400 that way). Without it that case threw inside node:http and the case never ended (found by
   * the first 10^7 run as a "hang" that TCP does not have: there the 400 arrives and the connection closes).
   */
  destroySoon(): void {
    if (this.writable) this.end();
    if (this.writableFinished) this.destroy();
    else this.once('finish', () => this.destroy());
  }
}

async function makeMeshApiTarget(): Promise<TargetImpl> {
  const { SofaMeshApiFacade } = await import('@meshport/registry-sofa');
  const { MemoryRegistry, MemoryRegistryStore, RewriteOnlyTakeover } = await import('@meshport/registry-core');
  let facade: InstanceType<typeof SofaMeshApiFacade>;
  let server: http.Server;
  let internalErrors: string[] = [];
  let casesOnFacade = 0;
  const fresh = async () => {
    if (facade) await facade.close();
    facade = new SofaMeshApiFacade({
      via: new MemoryRegistry(new MemoryRegistryStore()),
      takeover: new RewriteOnlyTakeover({ host: '10.0.0.7', port: 12201 }, { host: '127.0.0.1', port: 12220 }),
      listen: { host: '127.0.0.1', port: 0 },
      logger: {
        warn: (detail, message) =>
          void (message === 'request failed' && internalErrors.push(String((detail as { error?: unknown }).error))),
      },
    });
    // The facade's own request handler behind a real node:http server (llhttp parses the bytes), fed through a
    // stream instead of TCP: the same parsing and handling as on the wire, without a socket per case.
    const internals = facade as unknown as { onRequest(req: http.IncomingMessage, res: http.ServerResponse): void };
    server = http.createServer((req, res) => internals.onRequest(req, res));
    casesOnFacade = 0;
  };
  await fresh();
  return {
    async run(input, rng) {
      // A new facade now and then: publications of fuzzed service names would otherwise pile up in one registry.
      if (++casesOnFacade > 2000) await fresh();
      internalErrors = [];
      const conn = new FakeConnection();
      const exchanges: { req: http.IncomingMessage; res: http.ServerResponse }[] = [];
      const onRequest = (req: http.IncomingMessage, res: http.ServerResponse) => void exchanges.push({ req, res });
      server.on('request', onRequest);
      const closed = new Promise<void>((resolve) => {
        conn.once('finish', resolve);
        conn.once('close', resolve);
      });
      server.emit('connection', conn);
      for (const c of chunkify(input, rng)) conn.push(c);
      const turn = () => new Promise<void>((r) => setImmediate(r));
      await turn();
      // Every request that arrived whole must be answered while the connection is still open (a peer that closes
      // right after sending gets nothing, by HTTP's rules): wait for those answers, then the end of the input.
      // A request still missing body bytes waits for bytes that never come; the end of the input cuts it short.
      while (exchanges.some((e) => e.req.complete && !e.res.writableFinished && !conn.destroyed)) await turn();
      server.off('request', onRequest);
      conn.push(null);
      await closed;
      const text = Buffer.concat(conn.out).toString('latin1');
      const statuses = [...text.matchAll(/^HTTP\/1\.1 (\d{3}) /gm)].map((m) => Number(m[1]));
      // A 500 is the facade's own handler failing on a request (an exception it did not expect), unless the request
      // was cut short by the end of the input (the body read fails then, as the peer is gone).
      const internal = internalErrors.filter((e) => !/aborted|ECONNRESET|premature/i.test(e));
      check(internal.length === 0, `the handler failed: ${internal.join('; ')}`);
      for (const e of exchanges) {
        if (e.req.complete)
          check(
            e.res.writableFinished || conn.destroyed,
            `${e.req.method} ${e.req.url}: a whole request left unanswered`,
          );
      }
      check(!statuses.includes(500), `answered 500: ${text.slice(0, 300)}`);
      return {
        refused: statuses.some((s) => s >= 400) || statuses.length === 0,
        accepted: statuses.filter((s) => s < 300).length,
      };
    },
    close: async () => {
      await facade.close();
      server.close();
    },
  };
}

export async function makeTarget(target: Target): Promise<TargetImpl> {
  switch (target) {
    case 'bolt':
    case 'dubbo':
      return makeRouterTarget();
    case 'zookeeper':
      return makeZooKeeperTarget();
    case 'resp':
      return makeRespTarget();
    case 'mesh-api':
      return makeMeshApiTarget();
  }
}

// ---------------------------------------------------------------------------------------------------------------
// The worker.

export interface CampaignTask {
  target: Target;
  seed: number;
  cases: number;
  /** Inputs replayed before the campaign (the regression fixtures), hex. */
  replay: { name: string; hex: string }[];
  /** Int32 [case index, phase (0 setup, 1 replay, 2 campaign, 3 done)]; the parent's watchdog reads it. */
  progress: SharedArrayBuffer;
}

export interface Finding {
  /** Case index, or -1 for a replayed fixture. */
  index: number;
  fixture?: string;
  inputHex: string;
  error: string;
}

export interface CampaignResult {
  target: Target;
  cases: number;
  replayed: number;
  findings: Finding[];
  refused: number;
  accepted: number;
  random: number;
  elapsedMs: number;
  slowestCaseMs: number;
  heapGrowthBytes: number;
}

function describeError(e: unknown): string {
  if (e instanceof Error)
    return `${e.name}${(e as { code?: string }).code ? ` ${(e as { code?: string }).code}` : ''}: ${e.message}\n${e.stack?.split('\n').slice(1, 6).join('\n') ?? ''}`;
  return String(e);
}

function gcNow(): void {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  gc();
  gc();
}

/**
 * Bytes of ArrayBuffer memory (V8's external memory, which every Buffer's backing store is counted in). Read twice a
 * case: process.memoryUsage() costs 9 us a call here (it reads the RSS from /proc), this 0.4 us.
 */
function bufferBytes(): number {
  return getHeapStatistics().external_memory;
}

/** Buffers one case may leave behind (garbage not yet collected included): the largest frame caps are 16 MiB. */
const MAX_CASE_BUFFER_GROWTH = 64 * 1024 * 1024;

async function workerMain(task: CampaignTask): Promise<CampaignResult> {
  const progress = new Int32Array(task.progress);
  const findings: Finding[] = [];
  let current: { index: number; input: Buffer; fixture?: string } = { index: -1, input: Buffer.alloc(0) };
  // An exception thrown from a timer or a promise nobody awaits is as much a crash as one out of the parser.
  const stray = (e: unknown) =>
    findings.push({
      index: current.index,
      fixture: current.fixture,
      inputHex: current.input.toString('hex'),
      error: `escaped asynchronously: ${describeError(e)}`,
    });
  process.on('uncaughtException', stray);
  process.on('unhandledRejection', stray);
  const impl = await makeTarget(task.target);
  const corpus = seedsOf(task.target);
  const runOne = async (input: Buffer, rng: Rng) => impl.run(input, rng);
  let refused = 0;
  let accepted = 0;
  let random = 0;
  let slowest = 0;

  Atomics.store(progress, 1, 1);
  for (const [i, fx] of task.replay.entries()) {
    const input = Buffer.from(fx.hex, 'hex');
    current = { index: -1, input, fixture: fx.name };
    Atomics.store(progress, 0, i);
    try {
      // Replayed whole and under a few chunkings.
      for (let k = 0; k < 8; k++) {
        const buffers0 = bufferBytes();
        await runOne(input, new Rng(mixSeed(k, i)));
        const grown = bufferBytes() - buffers0;
        if (grown > MAX_CASE_BUFFER_GROWTH)
          throw new Error(`unbounded memory: ${(grown / 1048576).toFixed(0)} MiB of buffers`);
      }
    } catch (e) {
      findings.push({ index: -1, fixture: fx.name, inputHex: fx.hex, error: describeError(e) });
    }
  }

  gcNow();
  const heapBefore = process.memoryUsage().heapUsed;
  Atomics.store(progress, 1, 2);
  const started = Date.now();
  for (let i = 0; i < task.cases; i++) {
    Atomics.store(progress, 0, i);
    // Back to the event loop now and then: awaiting case after case never leaves the microtask queue, so the
    // process.nextTick callbacks the cases schedule (the router's write flushes) would pile up, each holding its
    // case's connection, until the worker ran out of heap (at about 430,000 cases; found by the first 10^7 run).
    if ((i & 63) === 63) await new Promise<void>((resolve) => setImmediate(resolve));
    const c = caseInput(task.seed, task.target, i, corpus);
    if (c.random) random++;
    current = { index: i, input: c.input };
    const t0 = performance.now();
    const buffers0 = bufferBytes();
    try {
      const o = await runOne(c.input, c.rng);
      if (o.refused) refused++;
      accepted += o.accepted;
      // Memory out of proportion to the input: what a length field claims must not be allocated before it is checked
      // (a real allocation of that size may succeed, lazily, and still cost the process its memory budget).
      const grown = bufferBytes() - buffers0;
      if (grown > MAX_CASE_BUFFER_GROWTH)
        throw new Error(
          `unbounded memory: a ${c.input.length}-byte input made ${(grown / 1048576).toFixed(0)} MiB of buffers`,
        );
    } catch (e) {
      if (findings.length < 20) findings.push({ index: i, inputHex: c.input.toString('hex'), error: describeError(e) });
    }
    const dt = performance.now() - t0;
    if (dt > slowest) slowest = dt;
  }
  const elapsedMs = Date.now() - started;
  await impl.close?.();
  // Let timers the cases armed (handshake, drain, hold) fire or be cleared before memory is measured.
  await sleep(50);
  gcNow();
  const heapGrowthBytes = process.memoryUsage().heapUsed - heapBefore;
  Atomics.store(progress, 1, 3);
  return {
    target: task.target,
    cases: task.cases,
    replayed: task.replay.length,
    findings,
    refused,
    accepted,
    random,
    elapsedMs,
    slowestCaseMs: Math.round(slowest),
    heapGrowthBytes,
  };
}

if (!isMainThread && (workerData as { fuzzCampaign?: CampaignTask } | undefined)?.fuzzCampaign) {
  const task = (workerData as { fuzzCampaign: CampaignTask }).fuzzCampaign;
  workerMain(task).then(
    (result) => parentPort!.postMessage({ type: 'done', result }),
    (e: unknown) => parentPort!.postMessage({ type: 'error', message: describeError(e) }),
  );
}

// ---------------------------------------------------------------------------------------------------------------
// The parent side.

export type CampaignOutcome =
  | { kind: 'done'; result: CampaignResult; wallMs: number }
  | { kind: 'hang' | 'crash' | 'error'; error: string; caseIndex: number; phase: number; wallMs: number };

/**
 * Runs a campaign in a worker and resolves (never rejects) with what happened. No progress for `hangMs` is a hang:
 * terminate() interrupts even a tight synchronous loop. The heap cap turns unbounded memory into a crash.
 */
export function runCampaign(
  task: Omit<CampaignTask, 'progress'>,
  hangMs = 15_000,
  heapMb = 384,
): Promise<CampaignOutcome> {
  const progress = new SharedArrayBuffer(8);
  const view = new Int32Array(progress);
  const started = Date.now();
  return new Promise((resolve) => {
    const worker = new Worker(__filename, {
      workerData: { fuzzCampaign: { ...task, progress } },
      resourceLimits: { maxOldGenerationSizeMb: heapMb },
      stdout: false,
    });
    let settled = false;
    let last = '';
    let lastMove = Date.now();
    const where = () => ({
      caseIndex: Atomics.load(view, 0),
      phase: Atomics.load(view, 1),
      wallMs: Date.now() - started,
    });
    const settle = (o: CampaignOutcome) => {
      if (settled) return;
      settled = true;
      clearInterval(watchdog);
      resolve(o);
    };
    const watchdog = setInterval(() => {
      const now = `${Atomics.load(view, 0)}/${Atomics.load(view, 1)}`;
      if (now !== last) {
        last = now;
        lastMove = Date.now();
      } else if (Date.now() - lastMove > hangMs) {
        const w = where();
        void worker.terminate();
        settle({ kind: 'hang', error: `no progress for ${hangMs} ms`, ...w });
      }
    }, 250);
    worker.on('message', (m: { type: 'done'; result: CampaignResult } | { type: 'error'; message: string }) => {
      if (m.type === 'done') settle({ kind: 'done', result: m.result, wallMs: Date.now() - started });
      else settle({ kind: 'error', error: m.message, ...where() });
    });
    worker.on('error', (e) => settle({ kind: 'crash', error: describeError(e), ...where() }));
    worker.on('exit', (code) =>
      settle({ kind: 'crash', error: `worker exited with code ${code} before answering`, ...where() }),
    );
  });
}
