// The native codec held to @meshport/protocol (and the router's answers and route keys) on every frame we can find
// or make: fixtures, the protocol fuzz suite's seeds and cases, hand-built Hessian shapes, and seeded mutations.

import { strict as assert } from 'node:assert';
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import {
  FrameSplitter,
  ProtocolError,
  decodeFrame,
  encodeBoltErrorResponse,
  encodeBoltHeartbeat,
  encodeBoltHeartbeatAck,
  encodeDubboErrorResponse,
  encodeDubboHeartbeat,
  encodeDubboHeartbeatAck,
  frameLength,
  headerNeed,
  hessianString,
  peek,
  peekFrameIdentity,
  restoreRequestId,
  savedId,
  type FrameHeader,
  type FrameIdentity,
  boltBodyMethod,
  readTraceContext,
  type TraceContext,
} from '@meshport/protocol';
import { loadEngineAddon } from '../src/index';

// ---------------------------------------------------------------------------------------------------------------
// The binding under test

interface NativeHeader {
  protocol: 'bolt' | 'dubbo';
  kind: string;
  idHigh: number;
  idLow: number;
  timeoutMs: number;
  status: number;
  service: string | null;
  version: string | null;
  group: string | null;
  method: string | null;
  /** The reference's attachmentsError text, as codec.cc's attachmentsErrorText writes it. */
  attachmentsError: string | null;
  /** The static reason the engine's FrameHeader holds ('…' where the text has a value). */
  attachmentsReason: string | null;
  boltVersion: number;
  ver1: number;
  switchFlags: number;
  codec: number;
  expectsResponse: boolean;
}
type Failure =
  | 'no-route'
  | 'timeout'
  | 'busy'
  | 'unavailable'
  | 'upstream-closed'
  | 'bad-request'
  | 'draining'
  | 'denied';
interface NativeCodec {
  measure(buf: Uint8Array, maxFrame: number): { ok: true; length: number } | { ok: false; need: number };
  decode(buf: Uint8Array): NativeHeader;
  routeKey(buf: Uint8Array): string | null;
  setRequestId(buf: Uint8Array, high: number, low: number): void;
  errorResponse(buf: Uint8Array, failure: Failure, message: string): Buffer;
  heartbeatAck(buf: Uint8Array): Buffer;
  heartbeatRequest(protocol: 'bolt' | 'dubbo', id: number): Buffer;
  failureStatus(protocol: 'bolt' | 'dubbo', failure: Failure): number;
  crc32(buf: Uint8Array): number;
  peekIdentity(buf: Uint8Array): {
    protocol: string;
    kind: string;
    expectsResponse: boolean;
    idHigh: number;
    idLow: number;
    boltVersion: number;
    ver1: number;
    switchFlags: number;
    codec: number;
  } | null;
  peek(buf: Uint8Array): { kind: string | null; idHigh: number; idLow: number; status: number };
  // trace_context.cc (null where the reference says undefined; the method as UTF-8 bytes)
  bodyMethod(buf: Uint8Array): Buffer | null;
  traceContext(buf: Uint8Array): TraceContext | null;
  spanIds(ctx: TraceContext, side: 'outbound' | 'inbound'): SpanIdsOut | null;
  fnv1a64(s: string): string;
  traceSampled(traceId: string, everyN: number): boolean;
}
interface SpanIdsOut {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  sampledFlag: boolean;
}

// The router's own functions, loaded from its build at run time: @meshport/router depends on this package, so a
// compile-time import would make a cycle. These are what the native answers and keys must equal byte for byte.
interface RouterResponses {
  identityOf(header: FrameHeader, frame: Buffer): FrameIdentity;
  errorResponse(who: FrameIdentity, failure: Failure, message: string): Buffer;
  heartbeatAck(who: FrameIdentity): Buffer;
  failureStatus(protocol: 'bolt' | 'dubbo', failure: Failure): number;
}
const routerDir = path.dirname(require.resolve('@meshport/router/package.json'));
const responses = require(path.join(routerDir, 'dist', 'src', 'responses.js')) as RouterResponses;
const { routeKey } = require(path.join(routerDir, 'dist', 'src', 'router.js')) as {
  routeKey(h: FrameHeader): string | undefined;
};

// The protocol package's fuzz suite (its seeds, structured builders and mutators), from its test build.
interface FuzzRng {
  next(): number;
}
interface FuzzEngine {
  Rng: new (seed: number) => FuzzRng;
  buildCorpus(seed: number): { bolt: { bytes: Buffer }[]; dubbo: { bytes: Buffer }[] };
  generateCase(corpus: unknown, campaign: 'bolt' | 'dubbo' | 'random', rng: FuzzRng): Buffer;
}
// protocol/dist/src/index.js -> protocol/ (its package exports nothing else by name)
const protocolDir = path.resolve(path.dirname(require.resolve('@meshport/protocol')), '..', '..');
const fuzzEngine = require(path.join(protocolDir, 'dist', 'test', 'helpers', 'fuzz-engine.js')) as FuzzEngine;
// Peer-made requests carrying a body method and trace context, with the reference's expected reads.
const TRACEPARENT = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
const { traceFrames } = require(path.join(protocolDir, 'dist', 'test', 'helpers', 'trace-frames.js')) as {
  traceFrames(): { name: string; frame: Buffer; method: string | undefined; trace: TraceContext | undefined }[];
};
// The router's span-id derivation (trace-ids.ts), the reference trace_context.cc's deriveSpanIds is held to.
const traceIds = require(path.join(routerDir, 'dist', 'src', 'trace-ids.js')) as {
  fnv1a64(s: string): string;
  deriveSpanIds(ctx: TraceContext, side: 'outbound' | 'inbound'): SpanIdsOut | undefined;
  sampled(traceId: string, everyN: number): boolean;
};

interface HessianEncoder {
  write(v: unknown): void;
  writeString(s: string): void;
  get(): Buffer;
}
const hessian = require('hessian.js') as { EncoderV2: new (options?: { size: number }) => HessianEncoder };

const SEED = Number(process.env.MESHPORT_CODEC_SEED ?? 0x6d657368) >>> 0 || 1;
const MUTATIONS = Number(process.env.MESHPORT_CODEC_CASES ?? 30_000);
const MAX_FRAME = 16 * 1024 * 1024;
const FAILURES: Failure[] = [
  'no-route',
  'timeout',
  'busy',
  'unavailable',
  'upstream-closed',
  'bad-request',
  'draining',
  'denied',
];

// ---------------------------------------------------------------------------------------------------------------
// Randomness: mulberry32, reproducible from MESHPORT_CODEC_SEED

class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0;
  }
  next(): number {
    let t = (this.s = (this.s + 0x6d2b79f5) | 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }
  int(n: number): number {
    return Math.floor((this.next() / 0x100000000) * n);
  }
  bool(p = 0.5): boolean {
    return this.next() / 0x100000000 < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)];
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Inputs

function readHexFile(file: string): Buffer {
  const text = fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => !l.startsWith('#'))
    .join('')
    .replace(/\s+/g, '');
  return Buffer.from(text, 'hex');
}

function hexFilesUnder(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  const out: string[] = [];
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...hexFilesUnder(full));
    else if (entry.name.endsWith('.hex')) out.push(full);
  }
  return out.sort();
}

const repoRoot = path.resolve(protocolDir, '..');
/** Every committed seed frame and fuzz regression input (and the shared seed frames when this machine has them). */
function fixtureFiles(): string[] {
  return [
    ...hexFilesUnder(path.join(protocolDir, 'test', 'fixtures')),
    ...hexFilesUnder(path.join(repoRoot, 'test', 'fixtures')), // fuzz-crashers of the in-process campaigns
    // shared/ lies beside the work tree on developers' machines and in CI, not inside it.
    ...new Set([
      ...hexFilesUnder('/work/shared/fixtures'),
      ...hexFilesUnder(path.resolve(repoRoot, '..', 'shared', 'fixtures')),
    ]),
  ];
}

/**
 * Directories of raw inputs named by MESHPORT_CODEC_CORPUS (colon-separated), e.g. a libFuzzer corpus that
 * `fuzz/run.sh --keep` left behind: inputs chosen for native coverage, checked here against the reference.
 */
function corpusFiles(): string[] {
  const dirs = (process.env.MESHPORT_CODEC_CORPUS ?? '').split(':').filter(Boolean);
  return dirs
    .flatMap((dir) => fs.readdirSync(dir).map((f) => path.join(dir, f)))
    .filter((f) => fs.statSync(f).isFile());
}

/** Binary regression inputs of the libFuzzer targets (fuzz/regressions), one input per file. */
function regressionFiles(): string[] {
  const dir = path.resolve(__dirname, '..', '..', 'fuzz', 'regressions');
  if (!fs.existsSync(dir)) return [];
  return fs
    .readdirSync(dir)
    .filter((f) => !f.endsWith('.md'))
    .map((f) => path.join(dir, f))
    .sort();
}

const SERVICE = 'org.apache.dubbo.demo.DemoService';

function dubboFrame(body: Buffer, flag = 0xc2, id = 7n): Buffer {
  const head = Buffer.alloc(16);
  head.writeUInt16BE(0xdabb, 0);
  head[2] = flag;
  head.writeBigInt64BE(id, 4);
  head.writeInt32BE(body.length, 12);
  return Buffer.concat([head, body]);
}

const h2 = (s: string) => hessianString(s);
const raw = (...b: number[]) => Buffer.from(b);
const leading = (version: Buffer = h2('1.0.0'), service: Buffer = h2(SERVICE)) =>
  Buffer.concat([h2('2.0.2'), service, version, h2('call')]);
const hmap = (...entries: Buffer[]) => Buffer.concat([raw(0x48), ...entries, raw(0x5a)]);
/** A string written as 'R' chunks of `size` units, then a final 'S' chunk (hessian.js never chunks short strings). */
function chunked(s: string, size: number): Buffer {
  const parts: Buffer[] = [];
  let i = 0;
  while (s.length - i > size) {
    const piece = Buffer.from(s.slice(i, i + size), 'utf8');
    parts.push(raw(0x52, 0, size), piece);
    i += size;
  }
  const tail = s.slice(i);
  parts.push(raw(0x53, 0, tail.length), Buffer.from(tail, 'utf8'));
  return Buffer.concat(parts);
}

/**
 * Dubbo request bodies in the shapes the skip-only scanner handles: what hessian.js writes for every kind of argument
 * and attachments map, and grammar forms it never writes (typed maps, class definitions before a value, chunked and
 * overlong keys, compact lists, chunked binary, references, deep nesting, disagreeing path/version).
 */
function handBuiltDubbo(): Buffer[] {
  const frames: Buffer[] = [];
  const tail = (args: unknown[], desc: string, attachments: unknown) => {
    const e = new hessian.EncoderV2({ size: 256 });
    e.writeString(desc);
    for (const a of args) e.write(a);
    if (attachments !== undefined) e.write(attachments);
    return Buffer.from(e.get());
  };
  const groups = ['g1', '', '分组', 'a'.repeat(40), 'x'.repeat(1500), '😀g'];
  const args: [unknown[], string][] = [
    [[], ''],
    [['hello'], 'Ljava/lang/String;'],
    [[1, 2.5, true, null], 'IDZLjava/lang/Object;'],
    [[[1, 'two', [3]], { k: 'v', n: { deep: [1, 2] } }], 'Ljava/util/List;Ljava/util/Map;'],
    [
      [
        {
          $class: 'org.example.Pojo',
          $: { a: 1, b: 'x', c: { $class: 'org.example.Pojo', $: { a: 2, b: 'y', c: null } } },
        },
      ],
      'Lorg/example/Pojo;',
    ],
    [[Buffer.alloc(3000, 7), new Date(1700000000000), { $class: 'long', $: 2 ** 40 }], '[BLjava/util/Date;J'],
    [['é'.repeat(70000)], 'Ljava/lang/String;'],
  ];
  for (const g of groups) {
    for (const [a, desc] of args) {
      frames.push(
        dubboFrame(
          Buffer.concat([
            leading(),
            tail(a, desc, { group: g, interface: SERVICE, path: SERVICE, version: '1.0.0', timeout: 3000 }),
          ]),
        ),
      );
    }
  }
  // Attachments that disagree with the leading strings, or are not strings, or end the body early.
  const body = (...rest: Buffer[]) => dubboFrame(Buffer.concat([leading(), ...rest]));
  frames.push(body(h2(''), hmap(h2('path'), h2('org.Other'))));
  frames.push(body(h2(''), hmap(h2('version'), h2('2.0.0'))));
  frames.push(body(h2(''), hmap(h2('version'), h2('1.0.0'), h2('group'), h2('g'))));
  frames.push(dubboFrame(Buffer.concat([leading(raw(0x4e)), h2(''), hmap(h2('version'), h2('1.0.0'))])));
  frames.push(dubboFrame(Buffer.concat([leading(raw(0x4e)), h2(''), hmap(h2('group'), h2('g'))])));
  frames.push(body(h2(''), hmap(h2('group'), raw(0x4e))));
  frames.push(body(h2(''), hmap(h2('group'), raw(0x91))));
  frames.push(body(h2(''), hmap(h2('group'), h2('a'), h2('group'), h2('b'))));
  frames.push(body(h2(''), raw(0x4e)));
  frames.push(body());
  frames.push(body(h2('I'), raw(0x91)));
  frames.push(body(h2('I')));
  frames.push(body(raw(0x4e)));
  frames.push(body(h2('Lbad name;')));
  frames.push(body(h2('[[')));
  frames.push(body(h2(''), hmap(chunked('group', 2), chunked('chunked-group', 3))));
  frames.push(
    body(h2(''), hmap(raw(0x02, 0xc1, 0xa7, 0x72, 0x6f, 0x75, 0x70).subarray(0, 1), raw(0xc1, 0xa7), h2('roup'))),
  );
  frames.push(body(h2(''), hmap(raw(0x05, 0xc1, 0xa7, 0x72, 0x6f, 0x75, 0x70), h2('overlong-key'))));
  frames.push(body(h2(''), raw(0x4d), h2('java.util.HashMap'), h2('group'), h2('typed'), raw(0x5a)));
  frames.push(
    body(h2(''), raw(0x43), h2('org.example.C'), raw(0x92), h2('a'), h2('b'), hmap(h2('group'), h2('after-class-def'))),
  );
  frames.push(
    body(
      h2('Ljava/lang/Object;'),
      raw(0x43),
      h2('C'),
      raw(0x91),
      h2('f'),
      raw(0x60, 0x91),
      hmap(h2('group'), h2('obj')),
    ),
  );
  frames.push(body(h2('Ljava/lang/Object;'), raw(0x60), hmap()));
  frames.push(body(h2('Ljava/util/List;'), raw(0x7a, 0x91, 0x92), hmap(h2('group'), raw(0x51, 0x90))));
  frames.push(body(h2('Ljava/util/List;'), raw(0x57, 0x91, 0x5a), hmap(h2('group'), raw(0x51, 0x95))));
  frames.push(body(h2('[B'), raw(0x41, 0x00, 0x02, 1, 2, 0x22, 3, 4), hmap(h2('group'), h2('bin'))));
  frames.push(body(h2('[B'), raw(0x41, 0x00, 0x02, 1, 2, 0x91), hmap()));
  frames.push(body(h2('Ljava/util/List;'), raw(0x58, 0xd7, 0xff, 0xff), hmap()));
  frames.push(body(h2('Ljava/util/List;'), raw(0x58, 0x8f), hmap()));
  frames.push(body(h2('Ljava/util/List;'), raw(0x56, 0x91), hmap()));
  frames.push(body(h2('Ljava/util/List;'), raw(0x55), h2('[int'), raw(0x91, 0x5a), raw(0x73, 0x90, 0x5a), hmap()));
  const nest = (n: number) => Buffer.concat([Buffer.alloc(n, 0x57), Buffer.alloc(n, 0x5a)]);
  frames.push(body(h2('Ljava/util/List;'), nest(64), hmap(h2('group'), h2('deep'))));
  frames.push(body(h2('Ljava/util/List;'), nest(65), hmap(h2('group'), h2('deeper'))));
  frames.push(
    body(
      h2('Ljava/lang/String;'),
      raw(0xf0, 0x9f, 0x98, 0x80).subarray(0, 0),
      raw(0x02, 0xf0, 0x9f, 0x98, 0x80),
      hmap(h2('group'), raw(0x02, 0xf0, 0x9f, 0x98, 0x80)),
    ),
  );
  frames.push(body(h2(''), hmap(h2('group'), raw(0x01, 0xed, 0xa0, 0x80))));
  frames.push(body(h2(''), hmap(h2('group'), raw(0x02, 0xed, 0xa0, 0x80, 0xed, 0xb0, 0x80))));
  frames.push(body(h2(''), hmap(h2('group'), raw(0x01, 0xc0, 0x80))));
  frames.push(body(h2(''), hmap(h2('group'), raw(0x01, 0x80))));
  frames.push(body(h2(''), hmap(h2('group'), raw(0x31, 0x00, 0x61))));
  // Leading strings in every form: medium, chunked, null version, CESU-8 surrogates, broken ones.
  frames.push(dubboFrame(Buffer.concat([h2('2.0.2'), chunked(SERVICE, 5), chunked('1.0.0', 2), h2('m')])));
  frames.push(dubboFrame(Buffer.concat([h2('2.0.2'), raw(0x30, 0x03), Buffer.from('abc'), raw(0x4e), h2('m')])));
  frames.push(
    dubboFrame(
      Buffer.concat([h2('2.0.2'), raw(0x02, 0xed, 0xa0, 0xbd, 0xed, 0xb8, 0x80), raw(0x01, 0xed, 0xa0, 0xbd), h2('m')]),
    ),
  );
  frames.push(
    dubboFrame(
      Buffer.concat([h2('2.0.2'), raw(0x52, 0, 1, 0xed, 0xa0, 0xbd, 0x53, 0, 1, 0xed, 0xb8, 0x80), h2('1'), h2('m')]),
    ),
  );
  frames.push(dubboFrame(Buffer.concat([h2('2.0.2'), raw(0x01, 0xf7, 0xbf, 0xbf, 0xbf), h2('1'), h2('m')])));
  frames.push(dubboFrame(Buffer.concat([h2('2.0.2'), raw(0x01, 0xf0, 0x80, 0x80, 0x80), h2('1'), h2('m')])));
  frames.push(dubboFrame(Buffer.concat([h2('2.0.2'), raw(0x01, 0xc3)])));
  frames.push(dubboFrame(Buffer.concat([h2('2.0.2'), raw(0x01, 0x80), h2('1'), h2('m')])));
  frames.push(dubboFrame(Buffer.concat([h2('2.0.2'), raw(0x91)])));
  frames.push(dubboFrame(Buffer.concat([h2('2.0.2'), raw(0x52, 0)])));
  frames.push(dubboFrame(Buffer.concat([h2('2.0.2'), raw(0x31)])));
  frames.push(dubboFrame(Buffer.concat([h2('2.0.2'), h2(SERVICE)])));
  frames.push(dubboFrame(Buffer.concat([h2('2.0.2'), h2(SERVICE), h2('1.0.0'), h2('m')]), 0x82)); // oneway
  frames.push(dubboFrame(Buffer.concat([h2('2.0.2'), h2(SERVICE), h2('1.0.0'), h2('m')]), 0xc6)); // not hessian2
  frames.push(dubboFrame(raw(0x4e), 0xe2, -1n)); // heartbeat, id -1
  frames.push(dubboFrame(hessianString('failed'), 0x02, 2n ** 62n));
  return frames;
}

/** Bolt frames the encoders make, in every version/ver1/switch/codec combination, plus header maps by hand. */
function builtBolt(rng: Rng): Buffer[] {
  const frames: Buffer[] = [];
  const variants = [
    { protocolVersion: 1 as const },
    { protocolVersion: 2 as const, ver1: 1 as const, switchFlags: 0 },
    { protocolVersion: 2 as const, ver1: 1 as const, switchFlags: 1 },
    { protocolVersion: 2 as const, ver1: 2 as const, switchFlags: 0 },
    { protocolVersion: 2 as const, ver1: 2 as const, switchFlags: 1 },
    { protocolVersion: 2 as const, ver1: 2 as const, switchFlags: 0xff },
  ];
  for (const v of variants) {
    for (const codec of [1, 11, 0]) {
      const id = rng.next() | 0;
      frames.push(encodeBoltHeartbeat(id, { ...v, codec }), encodeBoltHeartbeatAck(id, { ...v, codec }));
      frames.push(encodeBoltErrorResponse({ ...v, codec, requestId: id, status: 6, message: 'no provider: 服务 😀' }));
    }
    // Requests with header maps: the routing keys in every arrangement the scan handles.
    const maps: [string, string | null][][] = [
      [
        ['service', 'com.example.EchoService:1.0'],
        ['sofa_head_method_name', 'echo'],
      ],
      [['sofa_head_target_service', 'com.example.Target:1.0']],
      [
        ['sofa_head_target_service', 'com.example.Target:1.0'],
        ['service', 'com.example.Wins:1.0'],
      ],
      [
        ['service', 'first'],
        ['service', 'second'],
        ['service', null],
      ],
      [
        ['service', ''],
        ['sofa_head_method_name', ''],
      ],
      [
        ['service', 'com.例子.回声😀:1.0'],
        ['sofa_head_method_name', '回显'],
      ],
      [
        ['', 'empty key'],
        ['service', 'x:1.0'],
      ],
    ];
    for (const entries of maps)
      frames.push(
        boltRequest(
          v.protocolVersion,
          ('ver1' in v ? v.ver1 : undefined) ?? 1,
          ('switchFlags' in v ? v.switchFlags : undefined) ?? 0,
          entries,
          rng,
        ),
      );
  }
  // Header values that are not UTF-8: the reference decodes them with U+FFFD replacements.
  for (const bad of [
    [0xff],
    [0xc3],
    [0xe2, 0x82],
    [0xed, 0xa0, 0x80],
    [0xf0, 0x9f, 0x98],
    [0xf4, 0x90, 0x80, 0x80],
    [0xc0, 0xaf],
    [0x61, 0x80, 0x62],
  ]) {
    frames.push(boltRequest(1, 1, 0, [['service', Buffer.from(bad)]], rng));
  }
  return frames;
}

function boltRequest(
  version: 1 | 2,
  ver1: number,
  switchFlags: number,
  entries: [string, string | Buffer | null][],
  rng: Rng,
): Buffer {
  const parts: Buffer[] = [];
  for (const [k, val] of entries) {
    const key = Buffer.from(k);
    const kl = Buffer.alloc(4);
    kl.writeInt32BE(key.length);
    parts.push(kl, key);
    const vl = Buffer.alloc(4);
    if (val === null) {
      vl.writeInt32BE(-1);
      parts.push(vl);
    } else {
      const v = typeof val === 'string' ? Buffer.from(val) : val;
      vl.writeInt32BE(v.length);
      parts.push(vl, v);
    }
  }
  const header = Buffer.concat(parts);
  const className = Buffer.from('com.alipay.sofa.rpc.core.request.SofaRequest');
  const content = Buffer.from([0x4f, 0x90]);
  const v2 = version === 2;
  const fixed = v2 ? 24 : 22;
  const crc = v2 && ver1 === 2 && (switchFlags & 1) === 1;
  const f = Buffer.alloc(fixed + className.length + header.length + content.length + (crc ? 4 : 0));
  const s = v2 ? 1 : 0;
  f[0] = version;
  if (v2) {
    f[1] = ver1;
    f[11] = switchFlags;
  }
  f[1 + s] = 1;
  f.writeUInt16BE(1, 2 + s);
  f[4 + s] = 1;
  f.writeInt32BE(rng.next() | 0, 5 + s);
  f[9 + s] = 1;
  f.writeInt32BE(3000, 10 + 2 * s);
  f.writeInt16BE(className.length, 14 + 2 * s);
  f.writeInt16BE(header.length, 16 + 2 * s);
  f.writeInt32BE(content.length, 18 + 2 * s);
  Buffer.concat([className, header, content]).copy(f, fixed);
  if (crc) f.writeInt32BE(zlib.crc32(f.subarray(0, f.length - 4)) | 0, f.length - 4);
  return f;
}

/** Byte-level mutations of our own: truncations, flips, length fields of Bolt and Dubbo set to edge values. */
function mutate(input: Buffer, rng: Rng): Buffer {
  let b = Buffer.from(input);
  const times = 1 + rng.int(3);
  for (let t = 0; t < times; t++) {
    const n = b.length;
    switch (rng.int(7)) {
      case 0:
        b = b.subarray(0, rng.int(n + 1));
        break;
      case 1:
        if (n > 0) b[rng.int(n)] ^= 1 << rng.int(8);
        break;
      case 2:
        if (n > 0)
          b[rng.int(Math.min(n, 32))] = rng.pick([
            0, 1, 2, 0x7f, 0x80, 0xff, 0xda, 0xbb, 0x4e, 0x48, 0x5a, 0x43, 0x52, 0x53,
          ]);
        break;
      case 3: {
        // A length field: Bolt class/header/content, Dubbo body, or anywhere.
        const v2 = b[0] === 2;
        const resp = b[v2 ? 2 : 1] === 0;
        const at =
          b[0] === 0xda
            ? 12
            : rng.pick(resp ? [12, 14, 16].map((x) => x + (v2 ? 2 : 0)) : [14, 16, 18].map((x) => x + (v2 ? 2 : 0)));
        const size = b[0] === 0xda || at === (resp ? 16 : 18) + (v2 ? 2 : 0) ? 4 : 2;
        if (at + size <= n) {
          const v = rng.pick([0, 1, -1, 0x7fff, 0x8000, 0x7fffffff, -0x80000000, n, n - 1, n + 1, rng.int(64)]);
          if (size === 2) b.writeUInt16BE(v & 0xffff, at);
          else b.writeUInt32BE(v >>> 0, at);
        }
        break;
      }
      case 4:
        b = Buffer.concat([b, Buffer.from(Array.from({ length: 1 + rng.int(16) }, () => rng.int(256)))]);
        break;
      case 5: {
        // A Dubbo body length that follows the mutations, so the body itself is read.
        if (b[0] === 0xda && n >= 16) b.writeInt32BE(n - 16, 12);
        break;
      }
      default:
        if (n > 1) {
          const at = rng.int(n);
          b = Buffer.concat([b.subarray(0, at), b.subarray(at + 1 + rng.int(Math.min(8, n - at)))]);
        }
    }
  }
  return b;
}

// ---------------------------------------------------------------------------------------------------------------
// The reference's answers, in the binding's shape

type Outcome<T> = { ok: true; value: T } | { ok: false; code: string; offset: number; message: string };

function attempt<T>(f: () => T): Outcome<T> {
  try {
    return { ok: true, value: f() };
  } catch (err) {
    const e = err as { code?: unknown; offset?: unknown; message: string };
    if (typeof e.code !== 'string' || !e.code.startsWith('MESHPORT_')) throw err;
    return { ok: false, code: e.code, offset: Number(e.offset), message: e.message };
  }
}

/** A request id as the two words the codec keeps: Bolt's int32 is the low word, Dubbo's int64 (a string) both. */
function words(id: string | number | bigint): { idHigh: number; idLow: number } {
  if (typeof id === 'number') return { idHigh: 0, idLow: id >>> 0 };
  const u = BigInt.asUintN(64, BigInt(id));
  return { idHigh: Number(u >> 32n), idLow: Number(u & 0xffffffffn) };
}

function expectedHeader(h: FrameHeader, frame: Buffer): Omit<NativeHeader, 'attachmentsReason'> {
  if (h.protocol === 'bolt') {
    const v2 = h.protocolVersion === 2;
    return {
      protocol: 'bolt',
      kind: h.kind,
      idHigh: 0,
      idLow: h.requestId >>> 0,
      timeoutMs: (h.timeoutMs ?? 0) >>> 0,
      status: h.status ?? 0,
      service: h.service ?? null,
      version: null,
      group: null,
      method: h.method ?? null,
      attachmentsError: null,
      boltVersion: h.protocolVersion,
      ver1: v2 ? frame[1] : 0,
      switchFlags: v2 ? frame[11] : 0,
      codec: h.codec,
      expectsResponse: h.kind === 'request' || h.kind === 'heartbeat',
    };
  }
  return {
    protocol: 'dubbo',
    kind: h.kind,
    ...words(h.requestId),
    timeoutMs: 0,
    status: h.status ?? 0,
    service: h.service ?? null,
    version: h.version ?? null,
    group: h.group ?? null,
    method: h.method ?? null,
    attachmentsError: h.attachmentsError ?? null,
    boltVersion: 0,
    ver1: 0,
    switchFlags: 0,
    codec: h.serializationId,
    expectsResponse: h.kind === 'request' || h.kind === 'heartbeat',
  };
}

/**
 * The native attachmentsError is a static reason: the reference's reason with each interpolated value written as
 * '…'. The reference's message is that reason, filled in, and for scan failures where it lies.
 */
function reasonMatches(native: string, reference: string): boolean {
  const pattern = native
    .split('…')
    .map((p) => p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))
    .join('[\\s\\S]*?');
  return new RegExp(
    `^${pattern}(, in (the parameter-types descriptor|argument \\d+ of \\d+|the attachments) \\(at byte \\d+\\))?$`,
  ).test(reference);
}

// ---------------------------------------------------------------------------------------------------------------
// One input, every check

const native = (() => {
  const addon = loadEngineAddon();
  if (!addon.loaded) throw new Error(addon.reason);
  return addon.native.codec as NativeCodec;
})();

interface Tally {
  cases: number;
  accepted: number;
  refused: Record<string, number>;
  routed: number;
  attachmentsErrors: number;
}
const tally: Tally = { cases: 0, accepted: 0, refused: {}, routed: 0, attachmentsErrors: 0 };

const hexOf = (b: Buffer) =>
  b.length > 512 ? `${b.subarray(0, 512).toString('hex')}… (${b.length} bytes)` : b.toString('hex');

function checkInput(input: Buffer, rng: Rng, what: string): void {
  tally.cases++;
  const ctx = () => `${what} (seed 0x${SEED.toString(16)}): ${hexOf(input)}`;
  try {
    checkMeasure(input, rng.bool(0.2) ? rng.int(input.length + 8) : MAX_FRAME);
    const ref = attempt(() => decodeFrame(input, { crc: 'reject' }));
    const got = attempt(() => native.decode(input));
    if (!ref.ok) {
      assert.equal(got.ok, false, `native accepted what the reference refuses (${ref.ok ? '' : ref.code})`);
      if (!got.ok)
        assert.deepEqual(
          { code: got.code, offset: got.offset, message: got.message },
          { code: ref.code, offset: ref.offset, message: ref.message },
        );
      tally.refused[ref.code] = (tally.refused[ref.code] ?? 0) + 1;
      assert.throws(
        () => native.routeKey(input),
        (e: { code?: string }) => e.code === ref.code,
      );
    } else {
      if (!got.ok)
        assert.fail(`native refused (${got.code} at ${got.offset}: ${got.message}) what the reference accepts`);
      tally.accepted++;
      const want = expectedHeader(ref.value, input);
      const { attachmentsReason, ...rest } = got.value;
      assert.deepEqual(rest, want);
      if (want.attachmentsError === null) assert.equal(attachmentsReason, null);
      else {
        tally.attachmentsErrors++;
        assert.ok(
          attachmentsReason !== null && reasonMatches(attachmentsReason, want.attachmentsError),
          `attachmentsReason ${JSON.stringify(attachmentsReason)} for ${JSON.stringify(want.attachmentsError)}`,
        );
      }
      const key = routeKey(ref.value);
      // The engine compares keys as UTF-8 bytes: what Buffer.from(key) makes of the reference's string.
      assert.equal(
        native.routeKey(input),
        key === undefined ? null : Buffer.from(key, 'utf8').toString('utf8'),
        'routeKey',
      );
      if (key !== undefined) tally.routed++;
    }
    checkAnswers(input, ref.ok ? ref.value : undefined, rng);
    checkPeeks(input);
  } catch (err) {
    (err as Error).message = `${(err as Error).message}\n  input: ${ctx()}`;
    throw err;
  }
}

function checkMeasure(input: Buffer, maxFrame: number): void {
  const got = attempt(() => native.measure(input, maxFrame));
  // The reference framer: headerNeed, then frameLength and the cap, exactly as FrameSplitter measures.
  const ref = attempt(() => {
    const need = headerNeed(input, 0, input.length);
    if (input.length < need) return { ok: false as const, need };
    const length = frameLength(input, 0);
    if (length > maxFrame) {
      throw new ProtocolError(
        'MESHPORT_FRAME_OVERSIZE',
        `frame declares ${length} bytes, more than the ${maxFrame}-byte maximum`,
        0,
      );
    }
    return { ok: true as const, length };
  });
  assert.deepEqual(got, ref, 'measure');
  // And the splitter itself: the first frame it hands out, or the error it throws, from the same bytes.
  const frames: Buffer[] = [];
  const split = attempt(() => new FrameSplitter((f) => frames.push(f), { maxFrameSize: maxFrame }).write(input));
  if (!got.ok) {
    assert.ok(
      !split.ok && split.code === got.code && split.offset === got.offset,
      'splitter refuses the first frame alike',
    );
  } else if (got.value.ok && got.value.length <= input.length) {
    assert.equal(frames[0]?.length, got.value.length, 'splitter frame length');
  } else {
    assert.equal(frames.length, 0, 'splitter waits for more');
  }
}

function checkAnswers(input: Buffer, header: FrameHeader | undefined, rng: Rng): void {
  const who = header !== undefined ? responses.identityOf(header, input) : peekFrameIdentity(input);
  const failure = rng.pick(FAILURES);
  const message = rng.pick([
    'meshport: no route for service x',
    '',
    '服务异常 😀',
    'lone \ud800 surrogate',
    'é'.repeat(1100),
    'x'.repeat(70000),
  ]);
  if (who === undefined) {
    assert.throws(
      () => native.errorResponse(input, failure, message),
      (e: { code?: string }) => typeof e.code === 'string',
    );
    return;
  }
  assert.deepEqual(
    native.errorResponse(input, failure, message),
    responses.errorResponse(who, failure, message),
    `errorResponse ${failure}`,
  );
  assert.deepEqual(native.heartbeatAck(input), responses.heartbeatAck(who), 'heartbeatAck');
}

function checkPeeks(input: Buffer): void {
  for (const len of [0, 1, 2, 3, 9, 10, 11, 12, 13, 16, 24, input.length]) {
    if (len > input.length) continue;
    const head = input.subarray(0, len);
    const ref = peekFrameIdentity(head);
    const got = native.peekIdentity(head);
    if (ref === undefined) {
      assert.equal(got, null, `peekIdentity of ${len} bytes`);
      continue;
    }
    assert.ok(got !== null, `peekIdentity of ${len} bytes`);
    assert.deepEqual(
      { protocol: got.protocol, expectsResponse: got.expectsResponse, ...{ idHigh: got.idHigh, idLow: got.idLow } },
      { protocol: ref.protocol, expectsResponse: ref.expectsResponse, ...words(ref.requestId) },
      `peekIdentity of ${len} bytes`,
    );
    if (ref.protocol === 'bolt') {
      assert.deepEqual(
        [got.boltVersion, got.ver1, got.switchFlags, got.codec],
        [ref.boltVersion, ref.ver1 ?? 0, ref.switchFlags ?? 0, ref.codec],
        `peekIdentity (Bolt fields) of ${len} bytes`,
      );
    }
  }
  const m = attempt(() => native.measure(input, MAX_FRAME));
  if (!m.ok || !m.value.ok || m.value.length > input.length) {
    assert.throws(
      () => native.peek(input),
      (e: { code?: string }) => typeof e.code === 'string',
    );
    return;
  }
  const frame = input.subarray(0, m.value.length);
  assert.deepEqual(
    native.peek(frame),
    {
      kind: peek.kind(frame) ?? null,
      idHigh: savedId.high(frame) >>> 0,
      idLow: savedId.low(frame) >>> 0,
      status: peek.status(frame),
    },
    'peek',
  );
  // setRequestId: the same bytes as the reference's two-word rewrite (a v2 CRC recomputed).
  const high = (input.length * 2654435761) >>> 0;
  const low = (input.length * 40503 + 17) >>> 0;
  const a = Buffer.from(frame);
  const b = Buffer.from(frame);
  const ref = attempt(() => restoreRequestId(a, high | 0, low | 0));
  if (ref.ok) {
    native.setRequestId(b, high, low);
    assert.deepEqual(b, a, 'setRequestId');
  }
}

// ---------------------------------------------------------------------------------------------------------------

describe('native codec (packages/engine/native/codec.cc) against @meshport/protocol', function () {
  this.timeout(600_000);

  after(() => {
    const refused = Object.entries(tally.refused)
      .map(([c, n]) => `${c} ${n}`)
      .join(', ');
    console.log(
      `      ${tally.cases} inputs: ${tally.accepted} decoded (${tally.routed} routed, ${tally.attachmentsErrors} attachmentsError), refused: ${refused}`,
    );
  });

  it('agrees on every fixture, fuzz crasher and regression input, whole, truncated at every byte and extended', () => {
    const files = [...fixtureFiles(), ...regressionFiles()];
    assert.ok(files.length >= 25, `expected the committed fixtures, found ${files.length} files`);
    const rng = new Rng(SEED);
    for (const file of files) {
      const bytes = file.endsWith('.hex') ? readHexFile(file) : fs.readFileSync(file);
      const name = path.relative(repoRoot, file);
      checkInput(bytes, rng, name);
      for (let cut = 0; cut < bytes.length; cut += bytes.length > 400 ? 7 : 1)
        checkInput(bytes.subarray(0, cut), rng, `${name} cut at ${cut}`);
      checkInput(Buffer.concat([bytes, bytes]), rng, `${name} twice`);
    }
  });

  it('agrees on the inputs of MESHPORT_CODEC_CORPUS (a kept libFuzzer corpus), when given', function () {
    const files = corpusFiles();
    if (files.length === 0) this.skip();
    const rng = new Rng(SEED ^ 0xf022);
    for (const file of files) {
      const bytes = fs.readFileSync(file);
      // fuzz_stream inputs start with 5 bytes of framing parameters: checked both with and without them.
      checkInput(bytes, rng, file);
      if (bytes.length > 5) checkInput(bytes.subarray(5), rng, `${file} after 5 bytes`);
    }
  });

  it('agrees on frames the encoders and hessian.js make, and on hand-built Hessian shapes', () => {
    const rng = new Rng(SEED ^ 0x1234);
    const frames = [...builtBolt(rng), ...handBuiltDubbo()];
    for (const [i, f] of frames.entries()) {
      checkInput(f, rng, `built frame ${i}`);
      for (let k = 0; k < 20; k++) checkInput(mutate(f, rng), rng, `built frame ${i}, mutation ${k}`);
    }
    assert.ok(tally.attachmentsErrors > 10, 'the hand-built bodies include unreadable attachments');
  });

  it("agrees on the protocol fuzz suite's seeds and on seeded random cases built and mutated from them", () => {
    const corpus = fuzzEngine.buildCorpus(SEED);
    const rng = new Rng(SEED ^ 0xc0dec);
    for (const s of [...corpus.bolt, ...corpus.dubbo]) checkInput(s.bytes, rng, 'protocol fuzz seed');
    const fuzzRng = new fuzzEngine.Rng(SEED);
    for (let i = 0; i < MUTATIONS; i++) {
      const campaign = (['bolt', 'dubbo', 'random'] as const)[i % 3];
      const input = fuzzEngine.generateCase(corpus, campaign, fuzzRng);
      checkInput(rng.bool(0.3) ? mutate(input, rng) : input, rng, `${campaign} case ${i}`);
    }
  });

  it('frames a stream in any chunking exactly as FrameSplitter does', () => {
    const corpus = fuzzEngine.buildCorpus(SEED);
    const rng = new Rng(SEED ^ 0x5);
    const all = [...corpus.bolt, ...corpus.dubbo].map((s) => s.bytes).filter((b) => b.length < 100_000);
    for (let round = 0; round < 300; round++) {
      const parts = Array.from({ length: 1 + rng.int(6) }, () =>
        rng.bool(0.15) ? mutate(rng.pick(all), rng) : rng.pick(all),
      );
      const stream = Buffer.concat(parts);
      const max = rng.bool(0.2) ? rng.int(2000) : MAX_FRAME;
      const want: Buffer[] = [];
      const splitter = new FrameSplitter((f) => want.push(Buffer.from(f)), { maxFrameSize: max });
      // A framer on the native measure: buffer, measure, cut.
      const got: Buffer[] = [];
      let held = Buffer.alloc(0);
      let nativeError: string | undefined;
      let refError: string | undefined;
      for (let off = 0; off < stream.length; ) {
        const n = 1 + rng.int(rng.bool(0.5) ? 8 : 600);
        const chunk = stream.subarray(off, off + n);
        off += n;
        if (refError === undefined) {
          try {
            splitter.write(chunk);
          } catch (e) {
            refError = (e as ProtocolError).code;
          }
        }
        if (nativeError !== undefined) continue;
        held = Buffer.concat([held, chunk]);
        for (;;) {
          let m;
          try {
            m = native.measure(held, max);
          } catch (e) {
            nativeError = (e as ProtocolError).code;
            break;
          }
          if (!m.ok || m.length > held.length) break;
          got.push(held.subarray(0, m.length));
          held = held.subarray(m.length);
        }
      }
      assert.deepEqual(got, want, `frames of stream ${round}`);
      assert.equal(nativeError, refError, `error of stream ${round}`);
    }
  });

  it("makes the router's heartbeats and failure statuses, and zlib's CRC32", () => {
    const rng = new Rng(SEED ^ 0x77);
    for (const id of [0, 1, 7, 0x7fffffff, 0x80000000, 0xffffffff, rng.next(), rng.next()]) {
      assert.deepEqual(native.heartbeatRequest('bolt', id), encodeBoltHeartbeat(id | 0));
      assert.deepEqual(native.heartbeatRequest('dubbo', id), encodeDubboHeartbeat(id));
      // And what the binding answers to them is what the reference encoders answer.
      assert.deepEqual(native.heartbeatAck(encodeBoltHeartbeat(id | 0)), encodeBoltHeartbeatAck(id | 0));
      assert.deepEqual(native.heartbeatAck(encodeDubboHeartbeat(id)), encodeDubboHeartbeatAck(id));
      assert.deepEqual(
        native.errorResponse(encodeDubboHeartbeat(id), 'timeout', 'late'),
        encodeDubboErrorResponse({ requestId: id, status: 31, message: 'late' }),
      );
    }
    for (const p of ['bolt', 'dubbo'] as const)
      for (const f of FAILURES) assert.equal(native.failureStatus(p, f), responses.failureStatus(p, f), `${p} ${f}`);
    for (let i = 0; i < 200; i++) {
      const b = Buffer.from(Array.from({ length: rng.int(300) }, () => rng.int(256)));
      assert.equal(native.crc32(b), zlib.crc32(b));
    }
  });

  it("validates its arguments and throws the reference's errors with code and offset", () => {
    assert.throws(
      () => native.decode('not bytes' as unknown as Buffer),
      (e: Error) => e instanceof TypeError && /buf/.test(e.message),
    );
    assert.throws(
      () => native.measure(Buffer.alloc(1), -1),
      (e: Error) => e instanceof TypeError && /maxFrame/.test(e.message),
    );
    assert.throws(
      () => native.setRequestId(Buffer.alloc(22), 1.5, 0),
      (e: Error) => e instanceof TypeError && /high/.test(e.message),
    );
    assert.throws(
      () => native.errorResponse(Buffer.alloc(22), 'nope' as Failure, ''),
      (e: Error) => e instanceof TypeError && /failure/.test(e.message),
    );
    assert.throws(
      () => native.heartbeatRequest('http' as 'bolt', 1),
      (e: Error) => e instanceof TypeError && /protocol/.test(e.message),
    );
    assert.throws(
      () => native.decode(Buffer.from([0x07])),
      (e: ProtocolError) => e.code === 'MESHPORT_BAD_MAGIC' && e.offset === 0,
    );
    assert.throws(
      () => native.measure(encodeBoltHeartbeat(1), 10),
      (e: ProtocolError) =>
        e.code === 'MESHPORT_FRAME_OVERSIZE' &&
        e.message === 'frame declares 22 bytes, more than the 10-byte maximum (at byte 0)',
    );
    // A frame cut short cannot have its id rewritten: the binding says so instead of writing half a frame.
    const cut = encodeBoltErrorResponse({
      protocolVersion: 2,
      ver1: 2,
      switchFlags: 1,
      requestId: 5,
      status: 6,
      message: 'x',
    }).subarray(0, 30);
    assert.throws(
      () => native.setRequestId(cut, 0, 9),
      (e: ProtocolError) => e.code === 'MESHPORT_FRAME_TRUNCATED',
    );
  });
});

// ---------------------------------------------------------------------------------------------------------------
// trace_context.cc: the body method, the trace context and the span ids

const traceTally = { inputs: 0, methods: 0, contexts: 0 };

/** The native reads of one input equal the reference's: method (as UTF-8), trace context. */
function checkTrace(input: Buffer, what: string): void {
  traceTally.inputs++;
  const method = boltBodyMethod(input);
  const nativeMethod = native.bodyMethod(input);
  assert.deepEqual(
    nativeMethod === null ? null : nativeMethod.toString('hex'),
    method === undefined ? null : Buffer.from(method).toString('hex'),
    `${what}: body method (${hexOf(input)})`,
  );
  const trace = readTraceContext(input);
  assert.deepEqual(native.traceContext(input), trace ?? null, `${what}: trace context (${hexOf(input)})`);
  if (method !== undefined) traceTally.methods++;
  if (trace !== undefined) {
    traceTally.contexts++;
    for (const side of ['outbound', 'inbound'] as const)
      assert.deepEqual(
        native.spanIds(trace, side),
        traceIds.deriveSpanIds(trace, side) ?? null,
        `${what}: ${side} ids`,
      );
  }
}

/** Mutations aimed at the body: bytes flipped or set to draft-grammar codes past the header, values cut out. */
function mutateBody(input: Buffer, rng: Rng): Buffer {
  const b = Buffer.from(input);
  const from = Math.min(b.length, 40);
  const times = 1 + rng.int(3);
  for (let t = 0; t < times && b.length > from; t++) {
    const at = from + rng.int(b.length - from);
    b[at] = rng.bool()
      ? rng.pick([
          0x4f, 0x6f, 0x4d, 0x48, 0x56, 0x76, 0x7a, 0x53, 0x73, 0x4e, 0x90, 0xbc, 0x49, 0x74, 0x6e, 0x6c, 0x1f, 0xff,
        ])
      : b[at] ^ (1 << rng.int(8));
  }
  return b;
}

describe('native trace context (packages/engine/native/trace_context.cc) against @meshport/protocol and trace-ids.ts', function () {
  this.timeout(600_000);

  after(() => {
    console.log(
      `      ${traceTally.inputs} inputs: ${traceTally.methods} with a body method, ${traceTally.contexts} with trace context`,
    );
  });

  it('reads the same method and context from the peer-made trace frames, whole, cut at every byte and mutated', () => {
    const rng = new Rng(SEED ^ 0x7ace);
    for (const f of traceFrames()) {
      // The expected reads first: the comparison below must not pass by both sides finding nothing.
      assert.deepEqual(native.traceContext(f.frame), f.trace ?? null, f.name);
      assert.equal(native.bodyMethod(f.frame)?.toString() ?? undefined, f.method, f.name);
      checkTrace(f.frame, f.name);
      for (let cut = 0; cut < f.frame.length; cut++) checkTrace(f.frame.subarray(0, cut), `${f.name} cut at ${cut}`);
      for (let k = 0; k < 3000; k++) {
        const m = rng.bool(0.7) ? mutateBody(f.frame, rng) : mutate(f.frame, rng);
        checkTrace(m, `${f.name}, mutation ${k}`);
      }
    }
    assert.ok(traceTally.contexts > 5000 && traceTally.methods > 5000, JSON.stringify(traceTally));
  });

  it('reads the same from every fixture, regression input, kept corpus and protocol fuzz case', () => {
    const files = [...fixtureFiles(), ...regressionFiles(), ...corpusFiles()];
    for (const file of files) checkTrace(file.endsWith('.hex') ? readHexFile(file) : fs.readFileSync(file), file);
    const corpus = fuzzEngine.buildCorpus(SEED);
    for (const s of [...corpus.bolt, ...corpus.dubbo]) checkTrace(s.bytes, 'protocol fuzz seed');
    const fuzzRng = new fuzzEngine.Rng(SEED ^ 0x7ace);
    for (let i = 0; i < MUTATIONS / 3; i++) {
      const campaign = (['bolt', 'dubbo', 'random'] as const)[i % 3];
      checkTrace(fuzzEngine.generateCase(corpus, campaign, fuzzRng), `${campaign} case ${i}`);
    }
  });

  it("derives the specification's span ids, the same in both (hex padded, others hashed, parents chained)", () => {
    const both = (ctx: TraceContext, side: 'outbound' | 'inbound') => {
      const ts = traceIds.deriveSpanIds(ctx, side) ?? null;
      assert.deepEqual(native.spanIds(ctx, side), ts, JSON.stringify(ctx));
      return ts;
    };
    const fnv = traceIds.fnv1a64;
    // FNV-1a 64 of the published test vectors; 16 digits, lowercase.
    assert.equal(fnv(''), 'cbf29ce484222325');
    assert.equal(fnv('a'), 'af63dc4c8601ec8c');
    assert.equal(fnv('foobar'), '85944171f73967e8');
    for (const s of ['', 'a', 'foobar', '问候😀', 'x'.repeat(1000)]) assert.equal(native.fnv1a64(s), fnv(s));

    // A hex sofaTraceId is the trace id, lowercased and padded; the parent is fnv(traceId/rpcId).
    const hex = both({ sofaTraceId: 'ABC123', sofaRpcId: '0.1' }, 'outbound');
    assert.equal(hex?.traceId, '00000000000000000000000000abc123');
    assert.equal(hex?.parentSpanId, fnv('00000000000000000000000000abc123/0.1'));
    assert.equal(hex?.spanId, fnv(`00000000000000000000000000abc123/${hex?.parentSpanId}/out`));
    assert.equal(hex?.sampledFlag, true);
    // No rpc id: "0".
    assert.equal(both({ sofaTraceId: 'abc123' }, 'outbound')?.parentSpanId, fnv('00000000000000000000000000abc123/0'));
    // A sofaTraceId that is not 1..32 hex digits: two hashes.
    const java = 'ac1a2b3c1765045800123100112345x';
    assert.equal(both({ sofaTraceId: java }, 'inbound')?.traceId, fnv(java) + fnv(`meshport/${java}`));
    assert.equal(
      both({ sofaTraceId: 'f'.repeat(33) }, 'inbound')?.traceId,
      fnv('f'.repeat(33)) + fnv(`meshport/${'f'.repeat(33)}`),
    );
    // The provider's sidecar's span is a child of the consumer's: same trace, parent = the outbound span id.
    for (const ctx of [
      { sofaTraceId: 'abc123', sofaRpcId: '0.1.1' },
      { sofaTraceId: java },
      { traceparent: TRACEPARENT },
    ]) {
      const out = both(ctx, 'outbound');
      const inb = both(ctx, 'inbound');
      assert.equal(inb?.traceId, out?.traceId);
      assert.equal(inb?.parentSpanId, out?.spanId);
      assert.notEqual(inb?.spanId, out?.spanId);
    }
    // W3C: trace id and parent passed through; flags bit 0 clear: not sampled; a traceparent wins over SOFA ids.
    const w3c = both({ traceparent: TRACEPARENT, sofaTraceId: 'abc123' }, 'outbound');
    assert.equal(w3c?.traceId, '4bf92f3577b34da6a3ce929d0e0e4736');
    assert.equal(w3c?.parentSpanId, '00f067aa0ba902b7');
    assert.equal(w3c?.sampledFlag, true);
    assert.equal(both({ traceparent: TRACEPARENT.replace(/-01$/, '-00') }, 'outbound')?.sampledFlag, false);
    // An invalid traceparent is ignored: the SOFA ids, else nothing.
    for (const bad of [
      TRACEPARENT.toUpperCase(),
      TRACEPARENT.replace(/^00/, 'ff'),
      `${TRACEPARENT}-extra`,
      `00-${'0'.repeat(32)}-00f067aa0ba902b7-01`,
      `00-4bf92f3577b34da6a3ce929d0e0e4736-${'0'.repeat(16)}-01`,
      TRACEPARENT.slice(0, -1),
    ]) {
      assert.equal(both({ traceparent: bad }, 'outbound'), null, bad);
      assert.equal(both({ traceparent: bad, sofaTraceId: 'abc' }, 'outbound')?.traceId, `${'0'.repeat(29)}abc`);
    }
    // A future version may carry more fields.
    assert.equal(
      both({ traceparent: `01${TRACEPARENT.slice(2)}-more` }, 'inbound')?.traceId,
      '4bf92f3577b34da6a3ce929d0e0e4736',
    );
    assert.equal(both({}, 'outbound'), null);
    // An all-zero sofaTraceId would be an invalid W3C id: hashed.
    assert.equal(both({ sofaTraceId: '000' }, 'outbound')?.traceId, fnv('000') + fnv('meshport/000'));

    // Sampling: the low 64 bits, unsigned, a multiple of everyN.
    for (const [id, n, yes] of [
      ['00000000000000000000000000000003', 3, true],
      ['00000000000000000000000000000004', 3, false],
      ['ffffffffffffffff0000000000000000', 7, true],
      ['0000000000000000ffffffffffffffff', 5, true], // 2^64 - 1 = 3 * 5 * 17 * 257 * 641 * 65537 * 6700417
      ['0000000000000000ffffffffffffffff', 2, false],
      ['00000000000000000000000000000001', 1, true],
      ['00000000000000000000000000000000', 0, false],
    ] as const) {
      assert.equal(traceIds.sampled(id, n), yes, `${id} % ${n}`);
      assert.equal(native.traceSampled(id, n), yes, `native ${id} % ${n}`);
    }
  });

  it('derives the same ids from random contexts (printable ASCII, traceparents near valid)', () => {
    const rng = new Rng(SEED ^ 0x1d5);
    const printable = (n: number) => String.fromCharCode(...Array.from({ length: n }, () => 0x20 + rng.int(95)));
    const hexs = (n: number) => Array.from({ length: n }, () => '0123456789abcdefABCDEF'[rng.int(22)]).join('');
    for (let i = 0; i < 20_000; i++) {
      const ctx: TraceContext = {};
      if (rng.bool(0.5)) {
        let tp = `${hexs(2)}-${hexs(32)}-${hexs(16)}-${hexs(2)}${rng.bool(0.2) ? `-${printable(rng.int(5))}` : ''}`;
        if (rng.bool(0.5)) tp = tp.toLowerCase();
        if (rng.bool(0.2)) tp = `00${tp.slice(2)}`;
        if (rng.bool(0.1)) tp = tp.slice(0, rng.int(tp.length));
        ctx.traceparent = tp;
      }
      if (rng.bool(0.7)) ctx.sofaTraceId = rng.bool(0.5) ? hexs(1 + rng.int(34)) : printable(1 + rng.int(40));
      if (rng.bool(0.5)) ctx.sofaRpcId = printable(rng.int(8));
      for (const side of ['outbound', 'inbound'] as const)
        assert.deepEqual(native.spanIds(ctx, side), traceIds.deriveSpanIds(ctx, side) ?? null, JSON.stringify(ctx));
      const id = hexs(32).toLowerCase();
      const n = 1 + rng.int(1000);
      assert.equal(native.traceSampled(id, n), traceIds.sampled(id, n), `${id} % ${n}`);
    }
  });
});
