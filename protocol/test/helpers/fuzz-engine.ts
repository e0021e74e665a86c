// Seeds, mutations and oracles of the protocol fuzz suite, shared by test/fuzz.test.ts and its worker threads.
//
// The oracles are written from docs/protocols.md, not from protocol/src: a reference framer and a reference
// header decoder predict, for any input, the exact outcome (fields, or error code and offset) that decodeFrame and
// FrameSplitter must produce. Where the wire facts leave a choice open (which check comes first, what offset an
// error names, how lenient the CESU-8 reader is) the reference follows the codec's documented behaviour.

import {
  BoltStatus,
  DubboStatus,
  FrameSplitter,
  PROTOCOL_ERROR_CODES,
  ProtocolError,
  SOFA_REQUEST_CLASS,
  SOFA_RESPONSE_CLASS,
  decodeFrame,
  detectProtocol,
  encodeBoltErrorResponse,
  encodeBoltHeartbeat,
  encodeBoltHeartbeatAck,
  encodeDubboErrorResponse,
  encodeDubboHeartbeat,
  encodeDubboHeartbeatAck,
  setRequestId,
} from '../../src/index';
import type { CrcPolicy, FrameHeader, ProtocolErrorCode } from '../../src/index';
import * as dubboPeer from 'dubbo-remoting/lib/protocol';
import * as dubboUtils from 'dubbo-remoting/lib/utils';
import * as hessian from 'hessian.js';

// ---------------------------------------------------------------------------------------------------------------
// Deterministic randomness

/** mulberry32: 32-bit state, good enough spread for fuzzing, and trivially reproducible from one number. */
export class Rng {
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

  /** Uniform in [0, n). */
  int(n: number): number {
    return Math.floor((this.next() / 0x100000000) * n);
  }

  /** Uniform in [lo, hi]. */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }

  bool(p = 0.5): boolean {
    return this.next() / 0x100000000 < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)];
  }

  bytes(n: number): Buffer {
    const b = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) b[i] = this.next() & 0xff;
    return b;
  }

  /** Small sizes often, large ones rarely: 0..max with a roughly logarithmic spread. */
  size(max: number): number {
    const bits = this.int(Math.ceil(Math.log2(max + 1)) + 1);
    return Math.min(max, this.int(2 ** bits));
  }

  u64(): bigint {
    return (BigInt(this.next()) << 32n) | BigInt(this.next());
  }
}

/** Combines numbers into one 32-bit seed (murmur3 finalizer over a running FNV-style mix). */
export function mixSeed(...parts: number[]): number {
  let h = 0x9e3779b9;
  for (const p of parts) {
    h = Math.imul(h ^ (p >>> 0), 0x85ebca6b);
    h ^= h >>> 13;
    h = Math.imul(h, 0xc2b2ae35);
    h ^= h >>> 16;
  }
  return h >>> 0;
}

export const DEFAULT_SEED = 0x6d657368; // "mesh"

/** FUZZ_SEED as decimal or 0x-hex; the default keeps CI deterministic. */
export function seedFromEnv(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env.FUZZ_SEED?.trim();
  if (!raw) return DEFAULT_SEED;
  const n = raw.toLowerCase().startsWith('0x') ? Number.parseInt(raw.slice(2), 16) : Number.parseInt(raw, 10);
  if (!Number.isFinite(n)) throw new Error(`FUZZ_SEED must be an integer, got ${JSON.stringify(raw)}`);
  return n >>> 0;
}

export function casesFromEnv(env: NodeJS.ProcessEnv = process.env, fallback = 100_000): number {
  const raw = env.FUZZ_CASES?.trim();
  if (!raw) return fallback;
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < 1)
    throw new Error(`FUZZ_CASES must be a positive integer, got ${JSON.stringify(raw)}`);
  return n;
}

export const CAMPAIGNS = ['bolt', 'dubbo', 'random'] as const;
export type Campaign = (typeof CAMPAIGNS)[number];

export function caseSeed(seed: number, campaign: Campaign, index: number): number {
  return mixSeed(seed, CAMPAIGNS.indexOf(campaign) + 1, index);
}

// ---------------------------------------------------------------------------------------------------------------
// Independent encoders (CRC32, CESU-8, hessian2 strings, Bolt and Dubbo frames)

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** java.util.zip.CRC32 / zlib crc32, unsigned. */
export function crc32(buf: Buffer, start = 0, end = buf.length): number {
  let c = 0xffffffff;
  for (let i = start; i < end; i++) c = CRC_TABLE[(c ^ buf[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** Java's modified UTF-8 without the NUL rule: each UTF-16 unit (surrogates included) as 1, 2 or 3 bytes. */
export function toCesu8(s: string): Buffer {
  const out: number[] = [];
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) out.push(c);
    else if (c < 0x800) out.push(0xc0 | (c >> 6), 0x80 | (c & 0x3f));
    else out.push(0xe0 | (c >> 12), 0x80 | ((c >> 6) & 0x3f), 0x80 | (c & 0x3f));
  }
  return Buffer.from(out);
}

export type H2Form = 'compact' | 'long' | 'chunked' | 'utf8';

/**
 * A Hessian 2.0 string as Dubbo writes it. `compact`: short (< 32 units) / medium (< 1024) / `S`; `long`: always `S`
 * chunks; `chunked`: `R` chunks of random sizes then a final chunk; `utf8`: compact framing but supplementary
 * characters as 4-byte UTF-8 (two units), which hessian.js accepts and the codec tolerates.
 */
export function h2String(s: string, form: H2Form = 'compact', rng?: Rng): Buffer {
  const parts: Buffer[] = [];
  const finalChunk = (bytes: Buffer, units: number) => {
    if (form !== 'long' && units < 32) parts.push(Buffer.from([units]), bytes);
    else if (form !== 'long' && units < 1024) parts.push(Buffer.from([0x30 + (units >> 8), units & 0xff]), bytes);
    else parts.push(Buffer.from([0x53, units >> 8, units & 0xff]), bytes);
  };
  if (form === 'utf8') {
    const bytes = Buffer.from(s, 'utf8');
    if (s.length <= 0xffff) {
      finalChunk(bytes, s.length);
      return Buffer.concat(parts);
    }
  }
  let i = 0;
  if (form === 'chunked') {
    while (s.length - i > 1 && rng && rng.bool(0.6)) {
      const n = Math.min(rng.range(0, Math.min(0xffff, s.length - i)), 0xffff);
      const piece = s.slice(i, i + n);
      parts.push(Buffer.from([0x52, n >> 8, n & 0xff]), toCesu8(piece));
      i += n;
    }
  }
  // Whatever is left: non-final chunks of 0xffff units, then the final one.
  while (s.length - i > 0xffff) {
    parts.push(Buffer.from([0x52, 0xff, 0xff]), toCesu8(s.slice(i, i + 0xffff)));
    i += 0xffff;
  }
  const rest = s.slice(i);
  finalChunk(toCesu8(rest), rest.length);
  return Buffer.concat(parts);
}

interface BoltLayoutRef {
  /** -1 for requests. */
  status: number;
  timeout: number;
  classLen: number;
  headerLen: number;
  contentLen: number;
  fixed: number;
}

/** Field offsets from the docs/protocols.md table; v2 adds ver1 at 1 and a switch byte at 11. */
export function boltLayoutRef(v2: boolean, isResponse: boolean): BoltLayoutRef {
  const s = v2 ? 1 : 0;
  const tail = 10 + 2 * s;
  return isResponse
    ? { status: tail, timeout: -1, classLen: tail + 2, headerLen: tail + 4, contentLen: tail + 6, fixed: tail + 10 }
    : { status: -1, timeout: tail, classLen: tail + 4, headerLen: tail + 6, contentLen: tail + 8, fixed: tail + 12 };
}

export type HeaderEntry = [string | null, string | null];

/** `[i32 keyLen][key][i32 valLen][val]...`, -1 = null. Returns the bytes and where each length field sits. */
export function encodeHeaderMap(entries: readonly HeaderEntry[]): { bytes: Buffer; lengthAt: number[] } {
  const parts: Buffer[] = [];
  const lengthAt: number[] = [];
  let at = 0;
  for (const [k, v] of entries) {
    for (const s of [k, v]) {
      const body = s === null ? Buffer.alloc(0) : Buffer.from(s, 'utf8');
      const len = Buffer.alloc(4);
      len.writeInt32BE(s === null ? -1 : body.length);
      lengthAt.push(at);
      parts.push(len, body);
      at += 4 + body.length;
    }
  }
  return { bytes: Buffer.concat(parts), lengthAt };
}

export interface BoltSpec {
  version: 1 | 2;
  ver1?: number;
  switchFlags?: number;
  type: number;
  cmd: number;
  ver2?: number;
  requestId: number;
  codec?: number;
  /** Timeout for requests, status for responses. */
  timeoutOrStatus: number;
  className?: Buffer;
  header?: Buffer;
  content?: Buffer;
  /** `auto` appends the right CRC when ver1 == 2 and switch bit 0 is set; `bad` appends a wrong one then. */
  crc?: 'auto' | 'bad';
}

export interface Built {
  bytes: Buffer;
  /** Offsets (and widths) of length fields, where targeted mutations write huge or negative values. */
  lengthAt: Array<{ at: number; size: 2 | 4 }>;
}

export function boltHasCrc(version: number, ver1: number | undefined, switchFlags: number | undefined): boolean {
  return version === 2 && ver1 === 2 && ((switchFlags ?? 0) & 1) === 1;
}

export function buildBolt(spec: BoltSpec, headerLengthAt: number[] = []): Built {
  const v2 = spec.version === 2;
  const s = v2 ? 1 : 0;
  const l = boltLayoutRef(v2, spec.type === 0);
  const className = spec.className ?? Buffer.alloc(0);
  const header = spec.header ?? Buffer.alloc(0);
  const content = spec.content ?? Buffer.alloc(0);
  const withCrc = boltHasCrc(spec.version, spec.ver1, spec.switchFlags);
  const bodyEnd = l.fixed + className.length + header.length + content.length;
  const b = Buffer.alloc(bodyEnd + (withCrc ? 4 : 0));
  b[0] = spec.version;
  if (v2) {
    b[1] = spec.ver1 ?? 1;
    b[11] = spec.switchFlags ?? 0;
  }
  b[1 + s] = spec.type;
  b.writeUInt16BE(spec.cmd & 0xffff, 2 + s);
  b[4 + s] = spec.ver2 ?? 1;
  b.writeInt32BE(spec.requestId | 0, 5 + s);
  b[9 + s] = spec.codec ?? 1;
  if (l.status >= 0) b.writeUInt16BE(spec.timeoutOrStatus & 0xffff, l.status);
  else b.writeInt32BE(spec.timeoutOrStatus | 0, l.timeout);
  b.writeInt16BE(className.length, l.classLen);
  b.writeInt16BE(header.length, l.headerLen);
  b.writeInt32BE(content.length, l.contentLen);
  className.copy(b, l.fixed);
  header.copy(b, l.fixed + className.length);
  content.copy(b, l.fixed + className.length + header.length);
  if (withCrc) {
    const crc = crc32(b, 0, bodyEnd);
    b.writeUInt32BE(spec.crc === 'bad' ? (crc ^ 0x00010000) >>> 0 : crc, bodyEnd);
  }
  const lengthAt: Built['lengthAt'] = [
    { at: l.classLen, size: 2 },
    { at: l.headerLen, size: 2 },
    { at: l.contentLen, size: 4 },
    ...headerLengthAt.map((at) => ({ at: l.fixed + className.length + at, size: 4 as const })),
  ];
  return { bytes: b, lengthAt };
}

export function buildDubbo(flag: number, status: number, id: bigint, body: Buffer, bodyLength = body.length): Buffer {
  const b = Buffer.alloc(16 + body.length);
  b.writeUInt16BE(0xdabb, 0);
  b[2] = flag;
  b[3] = status;
  b.writeBigUInt64BE(BigInt.asUintN(64, id), 4);
  b.writeInt32BE(bodyLength | 0, 12);
  body.copy(b, 16);
  return b;
}

export interface DubboRequestSpec {
  dubboVersion: string | null;
  service: string | null;
  version: string | null;
  method: string | null;
  paramTypes: string;
  args: string[];
  attachments: Array<[string, string]>;
}

/** A hessian2 request body; returns where each leading string starts (for targeted mutations). */
export function dubboRequestBody(
  spec: DubboRequestSpec,
  rng?: Rng,
  form?: H2Form,
): { body: Buffer; stringAt: number[] } {
  const parts: Buffer[] = [];
  const stringAt: number[] = [];
  let at = 0;
  const put = (b: Buffer) => {
    parts.push(b);
    at += b.length;
  };
  const str = (s: string | null) => {
    stringAt.push(at);
    put(s === null ? Buffer.from([0x4e]) : h2String(s, form ?? (rng ? rng.pick(H2_FORMS) : 'compact'), rng));
  };
  str(spec.dubboVersion);
  str(spec.service);
  str(spec.version);
  str(spec.method);
  str(spec.paramTypes);
  for (const a of spec.args) str(a);
  put(Buffer.from([0x48])); // 'H' untyped map
  for (const [k, v] of spec.attachments) {
    str(k);
    str(v);
  }
  put(Buffer.from([0x5a])); // 'Z'
  return { body: Buffer.concat(parts), stringAt };
}

const H2_FORMS: readonly H2Form[] = ['compact', 'compact', 'long', 'chunked', 'utf8'];

export function dubboSpec(
  dubboVersion: string | null,
  service: string | null,
  version: string | null,
  method: string | null,
  paramTypes = '',
  args: string[] = [],
  attachments: Array<[string, string]> = [],
): DubboRequestSpec {
  return { dubboVersion, service, version, method, paramTypes, args, attachments };
}

/**
 * A random Dubbo argument for hessian.js to write: every kind of Hessian 2.0 value, nested, with classes that repeat
 * (class definitions reused by index) and objects that recur (references). `pool` collects what may recur.
 */
export function randomHessianValue(rng: Rng, depth: number, pool: object[]): unknown {
  switch (rng.int(depth >= 4 ? 8 : 12)) {
    case 0:
      return (
        rng.pick([0, -16, 47, 48, -2048, 2047, 2048, 262143, -262144, 262144, 2 ** 31 - 1, -(2 ** 31)]) +
        (rng.bool(0.3) ? rng.int(5) : 0)
      );
    case 1:
      // Whole numbers go out as ints unless typed as doubles: that is how the short double forms get written.
      return rng.bool(0.5)
        ? rng.pick([1.5, 99.5, 0.001, 1e300, -0.25, Math.E])
        : { $class: 'double', $: rng.pick([0, 1, -128, 127, 128, 32767, -32768, 40000, 2 ** 40]) };
    case 2:
      return {
        $class: 'long',
        $: rng.pick([0, 15, -8, 2047, 262143, 2 ** 31 - 1, 2 ** 40, '9007199254740993', '-9223372036854775808']),
      };
    case 3:
      return randomArgText(rng);
    case 4:
      return rng.bytes(rng.pick([0, 1, 15, 16, 255, 1023, 1024, 5000]));
    case 5:
      return new Date(rng.bool(0.5) ? rng.int(2 ** 31) * 60000 : rng.int(2 ** 40));
    case 6:
      return rng.pick([null, true, false]);
    case 7:
      return pool.length > 0 ? rng.pick(pool) : 'nothing to refer to yet';
    case 8: {
      const a = Array.from({ length: rng.size(9) }, () => randomHessianValue(rng, depth + 1, pool));
      pool.push(a);
      return a;
    }
    case 9: {
      const m: Record<string, unknown> = {};
      for (let i = rng.size(5); i > 0; i--)
        m[rng.pick(['group', 'interface', 'k', 'path', randomArgText(rng)])] = randomHessianValue(rng, depth + 1, pool);
      pool.push(m);
      return m;
    }
    default: {
      const cls = rng.int(4);
      const fields = ['a', 'b', 'c'].slice(0, cls);
      const o = {
        $class: `org.example.Gen${cls}`,
        $: Object.fromEntries(fields.map((f) => [f, randomHessianValue(rng, depth + 1, pool)])),
      };
      pool.push(o);
      return o;
    }
  }
}

/** Argument strings: every length class of the string forms (short, medium, S, R chunks), ASCII or not. */
export function randomArgText(rng: Rng): string {
  const bits = ['a', 'é', '中', '😀', '\u0800', '\uffff', 'Z', 'N', 'H'];
  const len = rng.pick([0, 1, 5, 31, 32, 100, 1023, 1024, 0x8000 + 3]);
  let s = '';
  while (s.length < len) s += rng.bool(0.8) ? String.fromCharCode(rng.range(0x20, 0x7e)) : rng.pick(bits);
  return s;
}

/**
 * The part of a Dubbo hessian2 request body after its leading strings, written by hessian.js EncoderV2 (one encoder,
 * so class definitions, types and references span all of it): descriptor, arguments, then `attachments` unless it
 * is undefined (a body that ends after the arguments).
 */
export function hessianRequestTail(
  args: unknown[],
  attachments: unknown,
  desc = dubboUtils.getJavaArgsDesc(args),
): Buffer {
  const e = new hessian.EncoderV2({ size: 256 });
  e.writeString(desc);
  for (const a of args) e.write(a);
  if (attachments !== undefined) e.write(attachments);
  return Buffer.from(e.get());
}

// ---------------------------------------------------------------------------------------------------------------
// Reference framer and decoder

export type RefError = { code: ProtocolErrorCode; offset: number };
type Measure = { need: true } | { error: RefError } | { len: number };

const MIB = 1024 * 1024;
export const DEFAULT_MAX_FRAME = 16 * MIB;

/** The length of the frame at `off` from the bytes a framer has (`avail`), or why it cannot be known. */
export function refMeasure(buf: Buffer, off: number, avail: number): Measure {
  const b = buf[off];
  if (b === 0x01 || b === 0x02) {
    const v2 = b === 0x02;
    const typeAt = v2 ? 2 : 1;
    if (avail <= typeAt) return { need: true };
    if (v2 && buf[off + 1] !== 1 && buf[off + 1] !== 2)
      return { error: { code: 'MESHPORT_BOLT_BAD_VERSION', offset: off + 1 } };
    const type = buf[off + typeAt];
    if (type > 2) return { error: { code: 'MESHPORT_BOLT_BAD_TYPE', offset: off + typeAt } };
    const l = boltLayoutRef(v2, type === 0);
    if (avail < l.fixed) return { need: true };
    const cl = buf.readInt16BE(off + l.classLen);
    const hl = buf.readInt16BE(off + l.headerLen);
    const ct = buf.readInt32BE(off + l.contentLen);
    const bad = cl < 0 ? l.classLen : hl < 0 ? l.headerLen : ct < 0 ? l.contentLen : -1;
    if (bad >= 0) return { error: { code: 'MESHPORT_BOLT_BAD_LENGTH', offset: off + bad } };
    const crc = v2 && buf[off + 1] === 2 && (buf[off + 11] & 1) === 1 ? 4 : 0;
    return { len: l.fixed + cl + hl + ct + crc };
  }
  if (b === 0xda) {
    if (avail < 16) return { need: true };
    if (buf[off + 1] !== 0xbb) return { error: { code: 'MESHPORT_BAD_MAGIC', offset: off + 1 } };
    const bodyLen = buf.readInt32BE(off + 12);
    if (bodyLen < 0) return { error: { code: 'MESHPORT_DUBBO_BAD_LENGTH', offset: off + 12 } };
    return { len: 16 + bodyLen };
  }
  return { error: { code: 'MESHPORT_BAD_MAGIC', offset: off } };
}

export interface RefSplit {
  frames: number[];
  error?: RefError;
}

/** What a FrameSplitter with `cap` must do with `input` followed by end(). */
export function refSplit(input: Buffer, cap: number): RefSplit {
  const frames: number[] = [];
  const n = input.length;
  let off = 0;
  while (off < n) {
    const m = refMeasure(input, off, n - off);
    if ('need' in m) return { frames, error: { code: 'MESHPORT_FRAME_TRUNCATED', offset: n } };
    if ('error' in m) return { frames, error: m.error };
    if (m.len > cap) return { frames, error: { code: 'MESHPORT_FRAME_OVERSIZE', offset: off } };
    if (off + m.len > n) return { frames, error: { code: 'MESHPORT_FRAME_TRUNCATED', offset: n } };
    frames.push(m.len);
    off += m.len;
  }
  return { frames };
}

/** The fields decodeFrame must report; `undefined` means the property must be undefined. */
export interface RefHeader {
  protocol: 'bolt' | 'dubbo';
  kind: string;
  requestId: number | string;
  frameLength: number;
  bodyOffset: number;
  bodyLength: number;
  service: string | undefined;
  method: string | undefined;
  status: number | undefined;
  // Bolt
  protocolVersion?: 1 | 2;
  codec?: number;
  timeoutMs?: number | undefined;
  className?: string;
  crc?: 'ok' | 'bad' | undefined;
  // Dubbo
  serializationId?: number;
  dubboVersion?: string | null | undefined;
  version?: string | null | undefined;
  group?: string | undefined;
  interfaceName?: string | undefined;
  /** Hessian2 requests: whether the body past the leading strings is unreadable (attachmentsError set). */
  attachmentsUnreadable?: boolean;
  /** Hessian2 requests: whether the path or version attachment names another service (attachmentsError set). */
  attachmentsDisagree?: boolean;
  /** Hessian2 requests: where the leading strings end; an attachmentsError names an offset from there on. */
  attachmentsStart?: number;
}

export type RefDecode = { ok: true; h: RefHeader } | { ok: false; error: RefError };

const KEY_SERVICE = Buffer.from('service');
const KEY_TARGET = Buffer.from('sofa_head_target_service');
const KEY_METHOD = Buffer.from('sofa_head_method_name');

function refBoltKind(type: number, cmd: number): string | undefined {
  if (cmd === 0 && type === 1) return 'heartbeat';
  if (cmd === 0 && type === 0) return 'heartbeat-ack';
  if (cmd === 1 && type === 1) return 'request';
  if (cmd === 1 && type === 2) return 'oneway';
  if (cmd === 2 && type === 0) return 'response';
  return undefined;
}

function refDecodeBolt(f: Buffer, crcPolicy: CrcPolicy): RefDecode {
  const n = f.length;
  const err = (code: ProtocolErrorCode, offset: number): RefDecode => ({ ok: false, error: { code, offset } });
  const m = refMeasure(f, 0, n);
  const v2 = f[0] === 2;
  const s = v2 ? 1 : 0;
  if ('error' in m) {
    // Version and type problems are found before anything else; a bad length only after the cmdcode is known fine.
    if (m.error.code !== 'MESHPORT_BOLT_BAD_LENGTH') return { ok: false, error: m.error };
  } else if ('need' in m) {
    return err('MESHPORT_FRAME_TRUNCATED', n);
  }
  const type = f[1 + s];
  const cmd = f.readUInt16BE(2 + s);
  const kind = refBoltKind(type, cmd);
  if (kind === undefined) return err('MESHPORT_BOLT_BAD_CMDCODE', 2 + s);
  if ('error' in m) return { ok: false, error: m.error };
  const len = (m as { len: number }).len;
  if (n < len) return err('MESHPORT_FRAME_TRUNCATED', n);
  const l = boltLayoutRef(v2, type === 0);
  const cl = f.readInt16BE(l.classLen);
  const hl = f.readInt16BE(l.headerLen);
  const headerStart = l.fixed + cl;
  const headerEnd = headerStart + hl;
  let service: string | undefined;
  let target: string | undefined;
  let method: string | undefined;
  let p = headerStart;
  const readLen = (): number | RefError => {
    if (p + 4 > headerEnd) return { code: 'MESHPORT_BOLT_BAD_HEADER_MAP', offset: p };
    const v = f.readInt32BE(p);
    if (v < -1 || p + 4 + v > headerEnd) return { code: 'MESHPORT_BOLT_BAD_HEADER_MAP', offset: p };
    return v;
  };
  while (p < headerEnd) {
    const kl = readLen();
    if (typeof kl !== 'number') return { ok: false, error: kl };
    const keyStart = p + 4;
    p = keyStart + Math.max(kl, 0);
    const vl = readLen();
    if (typeof vl !== 'number') return { ok: false, error: vl };
    const valStart = p + 4;
    p = valStart + Math.max(vl, 0);
    if (kl <= 0) continue;
    const key = f.subarray(keyStart, keyStart + kl);
    // As a Java HashMap fills: a repeated key's last value wins, and a null value unsets it.
    const val = () => (vl < 0 ? undefined : f.toString('utf8', valStart, valStart + vl));
    if (key.equals(KEY_SERVICE)) service = val();
    else if (key.equals(KEY_TARGET)) target = val();
    else if (key.equals(KEY_METHOD)) method = val();
  }
  const hasCrc = v2 && f[1] === 2 && (f[11] & 1) === 1;
  const crc =
    hasCrc && crcPolicy !== 'skip' ? (crc32(f, 0, len - 4) === f.readUInt32BE(len - 4) ? 'ok' : 'bad') : undefined;
  if (crc === 'bad' && crcPolicy === 'reject') return err('MESHPORT_BOLT_BAD_CRC', len - 4);
  const isResponse = type === 0;
  return {
    ok: true,
    h: {
      protocol: 'bolt',
      protocolVersion: v2 ? 2 : 1,
      kind,
      requestId: f.readInt32BE(5 + s),
      codec: f[9 + s],
      timeoutMs: isResponse ? undefined : f.readInt32BE(l.timeout),
      status: isResponse ? f.readUInt16BE(l.status) : undefined,
      className: f.toString('utf8', l.fixed, l.fixed + cl),
      frameLength: len,
      bodyOffset: headerEnd,
      bodyLength: f.readInt32BE(l.contentLen),
      service: service ?? target,
      method,
      crc,
    },
  };
}

/** The codec's CESU-8 reading: lead < 0x80 one byte, 0xc0-0xdf two, 0xe0-0xef three, 0xf0-0xf7 four (= two units). */
function refCesu8Text(b: Buffer, start: number, end: number): string {
  const units: number[] = [];
  let p = start;
  while (p < end) {
    const c = b[p];
    if (c < 0x80) {
      units.push(c);
      p += 1;
    } else if (c < 0xe0) {
      units.push(((c & 0x1f) << 6) | (b[p + 1] & 0x3f));
      p += 2;
    } else if (c < 0xf0) {
      units.push(((c & 0x0f) << 12) | ((b[p + 1] & 0x3f) << 6) | (b[p + 2] & 0x3f));
      p += 3;
    } else {
      const cp = ((c & 0x07) << 18) | ((b[p + 1] & 0x3f) << 12) | ((b[p + 2] & 0x3f) << 6) | (b[p + 3] & 0x3f);
      // fromCharCode takes each value modulo 2^16, which is what an out-of-range (overlong) sequence becomes.
      units.push(0xd800 + ((cp - 0x10000) >> 10), 0xdc00 + ((cp - 0x10000) & 0x3ff));
      p += 4;
    }
  }
  let out = '';
  for (let i = 0; i < units.length; i += 4096) out += String.fromCharCode(...units.slice(i, i + 4096));
  return out;
}

/** Reads one hessian2 string or null from `[p, end)`, per the docs/protocols.md grammar. */
function refH2Value(b: Buffer, p: number, end: number): { value: string | null; p: number } | RefError {
  const bad = (offset: number): RefError => ({ code: 'MESHPORT_DUBBO_BAD_BODY', offset });
  if (p >= end) return bad(p);
  if (b[p] === 0x4e) return { value: null, p: p + 1 };
  let out = '';
  for (;;) {
    if (p >= end) return bad(p);
    const c = b[p];
    let units: number;
    let final = true;
    if (c < 0x20) {
      units = c;
      p += 1;
    } else if (c >= 0x30 && c <= 0x33) {
      if (p + 1 >= end) return bad(p + 1);
      units = ((c - 0x30) << 8) | b[p + 1];
      p += 2;
    } else if (c === 0x52 || c === 0x53) {
      if (p + 1 >= end) return bad(p + 1);
      if (p + 2 >= end) return bad(p + 2);
      units = b.readUInt16BE(p + 1);
      final = c === 0x53;
      p += 3;
    } else {
      return bad(p);
    }
    let q = p;
    for (let k = 0; k < units; k++) {
      if (q >= end) return bad(end);
      const lead = b[q];
      if (lead < 0x80) q += 1;
      else if (lead >= 0xc0 && lead < 0xe0) q += 2;
      else if (lead >= 0xe0 && lead < 0xf0) q += 3;
      else if (lead >= 0xf0 && lead < 0xf8) {
        q += 4;
        k++;
      } else return bad(q);
    }
    if (q > end) return bad(end);
    out += refCesu8Text(b, p, q);
    p = q;
    if (final) return { value: out, p };
  }
}

/** Thrown inside refAttachments at the first thing that cannot be read; only whether it happened is compared. */
class RefUnreadable extends Error {}

const REF_MAX_DEPTH = 64;
const REF_MAX_CLASSES = 65536;
// Java Dubbo's ReflectUtils.DESC_PATTERN without V (void is no parameter type), anchored: the codec takes a
// descriptor only when the pattern reads all of it, and only in ASCII bytes (Java would decode overlong forms).
const REF_IDENT = '[_$a-zA-Z][_$a-zA-Z0-9]*';
const REF_TYPE = `\\[*(?:[BCDFIJSZ]|L${REF_IDENT}(?:/${REF_IDENT})*;)`;
const REF_DESCRIPTOR = new RegExp(`^(?:${REF_TYPE})*$`);
const REF_TYPES = new RegExp(REF_TYPE, 'g');

export interface RefAttachments {
  group: string | undefined;
  interfaceName: string | undefined;
  path?: string | undefined;
  version?: string | undefined;
  unreadable: boolean;
}

/**
 * What a Dubbo hessian2 request's body holds past its four leading strings (`start`): the parameter-types
 * descriptor, that many values, then the attachments (a map, null, or nothing when the body ends right there), per
 * the Hessian 2.0 grammar. Written as a recursive reader that decodes every string, unlike the codec's skipping.
 * The codec's documented choices are followed: ints only in the int forms where the grammar asks for one, nesting
 * up to 64 containers, 4-byte UTF-8 as two units, the last entry of a key wins, a non-string value is no value.
 */
export function refAttachments(b: Buffer, start: number, end: number): RefAttachments {
  const none = { group: undefined, interfaceName: undefined };
  if (start >= end) return { ...none, unreadable: false };
  let p = start;
  let containers = 0;
  let types = 0;
  const classes: number[] = [];
  const bad = (): never => {
    throw new RefUnreadable();
  };
  const peek = (): number => (p < end ? b[p] : bad());
  const take = (n: number): number => {
    if (p + n > end) bad();
    p += n;
    return p - n;
  };
  const isString = (c: number) => c < 0x20 || (c >= 0x30 && c <= 0x33) || c === 0x52 || c === 0x53;
  const int = (): number => {
    const c = peek();
    if (c >= 0x80 && c <= 0xbf) {
      take(1);
      return c - 0x90;
    }
    if (c >= 0xc0 && c <= 0xcf) {
      const at = take(2);
      return ((c - 0xc8) << 8) + b[at + 1];
    }
    if (c >= 0xd0 && c <= 0xd7) {
      const at = take(3);
      return ((c - 0xd4) << 16) + b.readUInt16BE(at + 1);
    }
    if (c === 0x49) return b.readInt32BE(take(5) + 1);
    return bad();
  };
  /** The descriptor: a string whose characters must all be single ASCII bytes. */
  const asciiText = (): string => {
    let out = '';
    for (;;) {
      const c = peek();
      let units: number;
      let final = true;
      if (c < 0x20) units = b[take(1)];
      else if (c >= 0x30 && c <= 0x33) units = ((c - 0x30) << 8) + b[take(2) + 1];
      else if (c === 0x52 || c === 0x53) {
        units = b.readUInt16BE(take(3) + 1);
        final = c === 0x53;
      } else return bad();
      const at = take(units);
      for (let i = at; i < at + units; i++) if (b[i] >= 0x80) bad();
      out += b.toString('latin1', at, at + units);
      if (final) return out;
    }
  };
  const text = (): string => {
    if (!isString(peek())) bad();
    const r = refH2Value(b, p, end);
    if ('code' in r) return bad();
    p = r.p;
    return r.value as string;
  };
  const classDefinition = () => {
    take(1);
    text();
    const fields = int();
    if (fields < 0) bad();
    for (let i = 0; i < fields; i++) text();
    if (classes.length >= REF_MAX_CLASSES) bad();
    classes.push(fields);
  };
  const type = () => {
    if (isString(peek())) {
      text();
      types++;
    } else {
      const t = int();
      if (t < 0 || t >= types) bad();
    }
  };
  const open = (depth: number) => {
    if (depth >= REF_MAX_DEPTH) bad();
    containers++;
  };
  const items = (n: number, depth: number) => {
    open(depth);
    if (n < 0) bad();
    for (let i = 0; i < n; i++) value(depth + 1);
  };
  const untilZ = (perItem: number, depth: number) => {
    open(depth);
    while (peek() !== 0x5a) for (let k = 0; k < perItem; k++) value(depth + 1);
    p++;
  };
  const value = (depth: number): void => {
    while (peek() === 0x43) classDefinition();
    const c = b[p];
    if (isString(c)) return void text();
    if (c === 0x4e || c === 0x54 || c === 0x46 || c === 0x5b || c === 0x5c) return void take(1);
    if ((c >= 0x80 && c <= 0xbf) || (c >= 0xc0 && c <= 0xd7) || c === 0x49) return void int();
    if (c >= 0xd8 && c <= 0xef) return void take(1);
    if (c >= 0xf0) return void take(2);
    if (c >= 0x38 && c <= 0x3f) return void take(3);
    if (c === 0x59 || c === 0x5f || c === 0x4b) return void take(5);
    if (c === 0x4c || c === 0x44 || c === 0x4a) return void take(9);
    if (c === 0x5d) return void take(2);
    if (c === 0x5e) return void take(3);
    if (c >= 0x20 && c <= 0x2f) return void take(1 + c - 0x20);
    if ((c >= 0x34 && c <= 0x37) || c === 0x41 || c === 0x42) {
      for (let first = true; ; first = false) {
        const d = peek();
        if (d === 0x41 || d === 0x42) {
          const at = take(3);
          take(b.readUInt16BE(at + 1));
        } else if (d >= 0x34 && d <= 0x37) {
          const at = take(2);
          take(((d - 0x34) << 8) + b[at + 1]);
        } else if (!first && d >= 0x20 && d <= 0x2f) take(1 + d - 0x20);
        else bad();
        if (d !== 0x41) return;
      }
    }
    take(1);
    if (c === 0x55) {
      type();
      return untilZ(1, depth);
    }
    if (c === 0x57) return untilZ(1, depth);
    if (c === 0x56) {
      type();
      return items(int(), depth);
    }
    if (c === 0x58) return items(int(), depth);
    if (c >= 0x70 && c <= 0x77) {
      type();
      return items(c - 0x70, depth);
    }
    if (c >= 0x78 && c <= 0x7f) return items(c - 0x78, depth);
    if (c === 0x48) return untilZ(2, depth);
    if (c === 0x4d) {
      type();
      return untilZ(2, depth);
    }
    if (c === 0x4f || (c >= 0x60 && c <= 0x6f)) {
      const ref = c === 0x4f ? int() : c - 0x60;
      if (ref < 0 || ref >= classes.length) bad();
      return items(classes[ref], depth);
    }
    if (c === 0x51) {
      const ref = int();
      if (ref < 0 || ref >= containers) bad();
      return;
    }
    bad();
  };
  try {
    const desc = asciiText();
    if (!REF_DESCRIPTOR.test(desc)) bad();
    const count = desc.match(REF_TYPES)?.length ?? 0;
    for (let i = 0; i < count; i++) value(0);
    if (p >= end) return { ...none, unreadable: false };
    let group: string | undefined;
    let interfaceName: string | undefined;
    let path: string | undefined;
    let version: string | undefined;
    while (peek() === 0x43) classDefinition();
    const c = b[p];
    if (c === 0x4e) return { ...none, unreadable: false };
    take(1);
    if (c === 0x4d) type();
    else if (c !== 0x48) bad();
    containers++;
    for (;;) {
      while (peek() === 0x43) classDefinition();
      if (b[p] === 0x5a) break;
      const key = isString(b[p]) ? text() : value(1);
      while (peek() === 0x43) classDefinition();
      const v = isString(b[p]) ? text() : value(1);
      if (key === 'group') group = v || undefined;
      else if (key === 'interface') interfaceName = v || undefined;
      else if (key === 'path') path = v || undefined;
      else if (key === 'version') version = v || undefined;
    }
    return { group, interfaceName, path, version, unreadable: false };
  } catch (e) {
    if (e instanceof RefUnreadable) return { ...none, unreadable: true };
    throw e;
  }
}

function refDecodeDubbo(f: Buffer): RefDecode {
  const n = f.length;
  if (n < 16) return { ok: false, error: { code: 'MESHPORT_FRAME_TRUNCATED', offset: n } };
  const m = refMeasure(f, 0, n);
  if ('error' in m) return { ok: false, error: m.error };
  const len = (m as { len: number }).len;
  if (n < len) return { ok: false, error: { code: 'MESHPORT_FRAME_TRUNCATED', offset: n } };
  const flag = f[2];
  const isRequest = (flag & 0x80) !== 0;
  const isEvent = (flag & 0x20) !== 0;
  const kind = isEvent
    ? isRequest
      ? 'heartbeat'
      : 'heartbeat-ack'
    : !isRequest
      ? 'response'
      : flag & 0x40
        ? 'request'
        : 'oneway';
  const h: RefHeader = {
    protocol: 'dubbo',
    kind,
    requestId: f.readBigInt64BE(4).toString(),
    serializationId: flag & 0x1f,
    status: isRequest ? undefined : f[3],
    frameLength: len,
    bodyOffset: 16,
    bodyLength: len - 16,
    dubboVersion: undefined,
    service: undefined,
    version: undefined,
    method: undefined,
  };
  if (isRequest && !isEvent && (flag & 0x1f) === 2) {
    const values: Array<string | null> = [];
    let p = 16;
    for (let i = 0; i < 4; i++) {
      const r = refH2Value(f, p, len);
      if ('code' in r) return { ok: false, error: r };
      values.push(r.value);
      p = r.p;
    }
    h.dubboVersion = values[0];
    h.service = values[1] ?? undefined;
    h.version = values[2];
    h.method = values[3] ?? undefined;
    const a = refAttachments(f, p, len);
    // Attachments that name another service than the leading strings (the one a Java provider would serve) make the
    // request unroutable, without a group.
    h.attachmentsDisagree =
      !a.unreadable &&
      ((a.path !== undefined && a.path !== h.service) ||
        (a.version !== undefined && a.version !== (h.version || undefined)));
    h.group = h.attachmentsDisagree ? undefined : a.group;
    h.interfaceName = h.attachmentsDisagree ? undefined : a.interfaceName;
    h.attachmentsUnreadable = a.unreadable;
    h.attachmentsStart = p;
  }
  return { ok: true, h };
}

/** What decodeFrame must do with `input`. */
export function refDecode(input: Buffer, crcPolicy: CrcPolicy = 'check'): RefDecode {
  const b = input[0];
  if (input.length === 0) return { ok: false, error: { code: 'MESHPORT_FRAME_TRUNCATED', offset: 0 } };
  if (b === 0xda) return refDecodeDubbo(input);
  if (b === 0x01 || b === 0x02) {
    if (input.length <= (b === 2 ? 2 : 1))
      return { ok: false, error: { code: 'MESHPORT_FRAME_TRUNCATED', offset: input.length } };
    return refDecodeBolt(input, crcPolicy);
  }
  return { ok: false, error: { code: 'MESHPORT_BAD_MAGIC', offset: 0 } };
}

export function refDetect(input: Buffer): 'bolt' | 'dubbo' | null {
  if (input.length === 0) return null;
  if (input[0] === 1 || input[0] === 2) return 'bolt';
  if (input[0] === 0xda && (input.length < 2 || input[1] === 0xbb)) return 'dubbo';
  return null;
}

/** Byte range of the request id, and of the CRC when there is one, in a whole frame. */
function idAndCrcRanges(frame: Buffer): Array<[number, number]> {
  if (frame[0] === 0xda) return [[4, 12]];
  const v2 = frame[0] === 2;
  const ranges: Array<[number, number]> = [[v2 ? 6 : 5, v2 ? 10 : 9]];
  if (v2 && frame[1] === 2 && (frame[11] & 1) === 1) ranges.push([frame.length - 4, frame.length]);
  return ranges;
}

// ---------------------------------------------------------------------------------------------------------------
// Failures

/** A broken property. `kind` is stable across inputs (used to group findings and to shrink), `detail` is not. */
export class FuzzFailure extends Error {
  constructor(
    readonly kind: string,
    readonly detail: string,
  ) {
    super(`${kind}: ${detail}`);
  }
}

function fail(kind: string, detail = ''): never {
  throw new FuzzFailure(kind, detail);
}

export function describeError(err: unknown): string {
  if (!(err instanceof Error)) return `non-Error thrown: ${String(err)}`;
  const code = (err as { code?: unknown }).code;
  const where = (err.stack ?? '')
    .split('\n')
    .slice(1)
    .find((line) => line.includes('/src/'));
  return `${err.constructor.name}${code ? ` [${String(code)}]` : ''}: ${err.message}${where ? ` ${where.trim()}` : ''}`;
}

/** How far past the input an error offset may point: none, the end of the input is the furthest place to blame. */
export const OFFSET_SLACK = 0;

/** A thrown value must be a ProtocolError with a documented code and an offset inside the input. */
export function checkProtocolError(err: unknown, inputLength: number, where: string): ProtocolError {
  if (!(err instanceof ProtocolError)) fail(`${where} threw something other than a ProtocolError`, describeError(err));
  if (!Object.hasOwn(PROTOCOL_ERROR_CODES, err.code)) {
    fail(`${where} threw an undocumented code`, String(err.code));
  }
  if (!Number.isSafeInteger(err.offset) || err.offset < 0 || err.offset > inputLength + OFFSET_SLACK) {
    fail(
      `${where} reported an offset outside the input`,
      `offset ${err.offset}, input ${inputLength} bytes, ${err.message}`,
    );
  }
  if (!err.message.endsWith(`(at byte ${err.offset})`)) fail(`${where} message does not name its offset`, err.message);
  if (err.name !== 'ProtocolError') fail(`${where} error name is not ProtocolError`, err.name);
  return err;
}

function fmtRef(r: RefError | undefined): string {
  return r ? `${r.code}@${r.offset}` : 'none';
}

// ---------------------------------------------------------------------------------------------------------------
// The properties checked on every input

export interface CaseStats {
  decoded: number;
  decodeErrors: Record<string, number>;
  splitterErrors: Record<string, number>;
  framesSplit: number;
  crc: Record<string, number>;
  services: number;
  idRewrites: number;
  /** Dubbo hessian2 requests whose attachments named a group, and those whose body past the leading strings was unreadable. */
  groups: number;
  attachmentsErrors: number;
}

export function newStats(): CaseStats {
  return {
    decoded: 0,
    decodeErrors: {},
    splitterErrors: {},
    framesSplit: 0,
    crc: {},
    services: 0,
    idRewrites: 0,
    groups: 0,
    attachmentsErrors: 0,
  };
}

const BOLT_FIELDS = [
  'protocol',
  'protocolVersion',
  'kind',
  'requestId',
  'codec',
  'timeoutMs',
  'status',
  'className',
  'frameLength',
  'bodyOffset',
  'bodyLength',
  'service',
  'method',
  'crc',
] as const;
const DUBBO_FIELDS = [
  'protocol',
  'kind',
  'requestId',
  'serializationId',
  'status',
  'frameLength',
  'bodyOffset',
  'bodyLength',
  'dubboVersion',
  'service',
  'version',
  'method',
  'group',
  'interfaceName',
] as const;

function compareHeader(h: FrameHeader, ref: RefHeader, where: string): void {
  const fields: readonly string[] = ref.protocol === 'bolt' ? BOLT_FIELDS : DUBBO_FIELDS;
  for (const k of fields) {
    const got = (h as unknown as Record<string, unknown>)[k];
    const want = (ref as unknown as Record<string, unknown>)[k];
    if (!Object.is(got, want))
      fail(`${where}: ${k} differs from the reference`, `got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
  }
}

function pickBoltId(rng: Rng): number {
  switch (rng.int(4)) {
    case 0:
      return rng.pick([0, 1, -1, 0x7fffffff, -0x80000000, 0xffffffff, 0x80000000]);
    case 1:
      return rng.next(); // 0 .. 2^32-1, the unsigned half is accepted too
    default:
      return rng.next() | 0;
  }
}

function pickDubboId(rng: Rng): number | bigint | string {
  switch (rng.int(5)) {
    case 0:
      return rng.next();
    case 1:
      return BigInt.asIntN(64, rng.u64());
    case 2:
      return BigInt.asIntN(64, rng.u64()).toString();
    case 3:
      return rng.pick([0, 0xffffffff, -1, 2 ** 32, Number.MAX_SAFE_INTEGER, -(2 ** 53) + 1]);
    default:
      return rng.pick([(1n << 63n) - 1n, -(1n << 63n), 1n << 32n, 0n]);
  }
}

/** Cuts `input` into chunks the way a socket might: whole, byte by byte, random, or around frame boundaries. */
export function chunkify(input: Buffer, rng: Rng, boundaries: number[]): Buffer[] {
  const n = input.length;
  const cuts = new Set<number>();
  switch (rng.int(5)) {
    case 0:
      break;
    case 1:
      if (n <= 512) for (let i = 1; i < n; i++) cuts.add(i);
      else for (let i = 0; i < 64; i++) cuts.add(rng.int(n));
      break;
    case 2: {
      const max = Math.max(1, Math.floor(n / 3));
      for (let at = rng.range(1, max); at < n; at += rng.range(1, max)) cuts.add(at);
      break;
    }
    case 3:
      for (let at = rng.range(1, 8); at < n && cuts.size < 4096; at += rng.range(1, 8)) cuts.add(at);
      break;
    default: {
      let at = 0;
      for (const len of boundaries) {
        at += len;
        for (const d of [-2, -1, 0, 1, 2]) if (rng.bool(0.4)) cuts.add(at + d);
      }
      // Inside the fixed headers too: where the splitter switches between its header and body states.
      for (const d of [1, 2, 3, 11, 12, 15, 16, 17, 19, 20, 21, 22, 23, 24, 25]) if (rng.bool(0.3)) cuts.add(d);
    }
  }
  const sorted = [...cuts].filter((c) => c > 0 && c < n).sort((a, b) => a - b);
  const chunks: Buffer[] = [];
  let prev = 0;
  for (const c of sorted) {
    chunks.push(input.subarray(prev, c));
    prev = c;
  }
  chunks.push(input.subarray(prev));
  // Empty writes are legal and must change nothing.
  if (rng.bool(0.05)) chunks.splice(rng.int(chunks.length + 1), 0, Buffer.alloc(0));
  return chunks;
}

function pickCap(rng: Rng, input: Buffer): number | undefined {
  // The default cap is the one that matters, but under it every claim up to 16 MiB is allocated on the header (see
  // the dedicated test), which makes GC the main cost of the run: smaller caps are picked more often.
  const r = rng.int(20);
  if (r < 5) return undefined; // the default, 16 MiB
  if (r < 11) return rng.range(1, input.length + 40);
  if (r < 13) return MIB;
  if (r < 15) return 64 * 1024;
  // Exactly at, or one below, the length of a frame the input holds (or nearly holds): the cap's boundary. Never
  // a claimed length: a cap of 2 GiB would let the splitter allocate what the header claims.
  const lens = refSplit(input, Number.MAX_SAFE_INTEGER).frames;
  const m = refMeasure(input, 0, input.length);
  if ('len' in m && m.len <= input.length + 64) lens.push(m.len);
  if (lens.length === 0) return rng.range(16, 64);
  return Math.max(1, rng.pick(lens) - rng.int(2));
}

export interface CheckOptions {
  stats?: CaseStats;
  /** Written with the stage about to run, so a hang can be located from another thread. */
  stage?: (s: number) => void;
}

export const STAGES = ['', 'generate', 'detectProtocol', 'decodeFrame', 'setRequestId', 'FrameSplitter'] as const;

/** Every property, for one input. Throws FuzzFailure on the first one broken. */
export function checkCase(input: Buffer, rng: Rng, opts: CheckOptions = {}): void {
  const stage = opts.stage ?? (() => {});
  const stats = opts.stats;
  const n = input.length;
  const pristine = Buffer.from(input);

  // detectProtocol: total, never throws, first-byte rule.
  stage(2);
  let det: 'bolt' | 'dubbo' | null;
  try {
    det = detectProtocol(input);
  } catch (err) {
    fail('detectProtocol threw', describeError(err));
  }
  if (det !== refDetect(input))
    fail('detectProtocol differs from the first-byte rule', `got ${det}, want ${refDetect(input)}`);

  // decodeFrame: exact agreement with the reference, in outcome and in every field.
  stage(3);
  // No options means 'check'; every policy is exercised.
  const policy = rng.pick([undefined, undefined, 'check', 'reject', 'reject', 'skip'] as const);
  const ref = refDecode(input, policy ?? 'check');
  let h: FrameHeader | undefined;
  let err: ProtocolError | undefined;
  try {
    h = policy === undefined ? decodeFrame(input) : decodeFrame(input, { crc: policy });
  } catch (e) {
    err = checkProtocolError(e, n, 'decodeFrame');
  }
  if (!input.equals(pristine)) fail('decodeFrame modified its input');
  if (
    ref.ok !== (h !== undefined) ||
    (!ref.ok && err && (err.code !== ref.error.code || err.offset !== ref.error.offset))
  ) {
    fail(
      'decodeFrame outcome differs from the reference',
      `got ${err ? `${err.code}@${err.offset}` : 'a header'}, want ${ref.ok ? 'a header' : fmtRef(ref.error)}`,
    );
  }
  if (err && stats) stats.decodeErrors[err.code] = (stats.decodeErrors[err.code] ?? 0) + 1;
  if (h && ref.ok) {
    if (!Number.isSafeInteger(h.frameLength) || h.frameLength > n) {
      fail(
        'decodeFrame reported a frameLength beyond the input it accepted',
        `frameLength ${h.frameLength}, input ${n}`,
      );
    }
    if (h.frameLength < 16)
      fail('decodeFrame reported a frameLength shorter than any header', `frameLength ${h.frameLength}`);
    compareHeader(h, ref.h, 'decodeFrame');
    if (h.protocol === 'dubbo') checkAttachments(h, ref.h, stats);
    try {
      JSON.stringify(h);
      if (h.protocol === 'bolt') void h.headers;
    } catch (e) {
      fail('reading a decoded header threw', describeError(e));
    }
    if (stats) {
      stats.decoded++;
      if (h.service !== undefined) stats.services++;
      if (h.protocol === 'bolt' && h.crc) stats.crc[h.crc] = (stats.crc[h.crc] ?? 0) + 1;
    }
    // Bytes after the frame are ignored, and one byte less is a truncation.
    if (rng.bool(0.25)) {
      let exact: FrameHeader;
      try {
        exact = decodeFrame(input.subarray(0, h.frameLength), { crc: policy });
      } catch (e) {
        fail('decodeFrame rejected the exact frame it had accepted with bytes after it', describeError(e));
      }
      compareHeader(exact, ref.h, 'decodeFrame of the exact frame');
      try {
        decodeFrame(input.subarray(0, h.frameLength - 1));
        fail('decodeFrame accepted a frame one byte short');
      } catch (e) {
        if (e instanceof FuzzFailure) throw e;
        const short = checkProtocolError(e, h.frameLength - 1, 'decodeFrame');
        if (short.code !== 'MESHPORT_FRAME_TRUNCATED' || short.offset !== h.frameLength - 1) {
          fail('decodeFrame of a frame one byte short is not a truncation', `${short.code}@${short.offset}`);
        }
      }
    }
    stage(4);
    checkSetRequestId(input.subarray(0, h.frameLength), h, rng);
    if (stats) stats.idRewrites++;
  }

  // FrameSplitter under random chunking and caps: exact agreement with the reference framer.
  stage(5);
  const cap = pickCap(rng, input);
  const want = refSplit(input, cap ?? DEFAULT_MAX_FRAME);
  const chunks = chunkify(input, rng, want.frames);
  const got = runSplitter(input, chunks, cap);
  if (!input.equals(pristine)) fail('FrameSplitter modified its input');
  const same =
    got.frames.length === want.frames.length &&
    got.frames.every((len, i) => len === want.frames[i]) &&
    got.error?.code === want.error?.code &&
    got.error?.offset === want.error?.offset;
  if (!same) {
    fail(
      'FrameSplitter differs from the reference framer',
      `cap ${cap ?? 'default'}, ${chunks.length} chunks: got frames [${got.frames.slice(0, 8)}] error ${fmtRef(got.error)}, ` +
        `want frames [${want.frames.slice(0, 8)}] error ${fmtRef(want.error)}`,
    );
  }
  if (stats) {
    stats.framesSplit += got.frames.length;
    if (got.error) stats.splitterErrors[got.error.code] = (stats.splitterErrors[got.error.code] ?? 0) + 1;
  }
}

/**
 * The attachments scan of a Dubbo header: unreadable exactly when the reference finds the body unreadable, and then
 * with a message that names an offset between the end of the leading strings and the end of the frame.
 */
function checkAttachments(h: FrameHeader & { protocol: 'dubbo' }, ref: RefHeader, stats: CaseStats | undefined): void {
  const error = h.attachmentsError;
  if (error !== undefined && typeof error !== 'string') fail('attachmentsError is not a string', typeof error);
  const want = (ref.attachmentsUnreadable ?? false) || (ref.attachmentsDisagree ?? false);
  if ((error !== undefined) !== want) {
    fail(
      'attachmentsError differs from the reference',
      `got ${JSON.stringify(error)}, want ${want ? 'an error' : 'none'}`,
    );
  }
  if (error !== undefined && ref.attachmentsDisagree) {
    if (!/ attachment names /.test(error)) fail('a disagreeing attachment reported as something else', error);
    if (h.group !== undefined || h.interfaceName !== undefined)
      fail('a group or interface reported with an attachmentsError', error);
  } else if (error !== undefined) {
    const at = Number(/ \(at byte (\d+)\)$/.exec(error)?.[1]);
    if (!(at >= (ref.attachmentsStart ?? 16) && at <= h.frameLength)) {
      fail('attachmentsError names no offset between the leading strings and the end of the frame', error);
    }
    if (h.group !== undefined || h.interfaceName !== undefined)
      fail('a group or interface reported with an attachmentsError', error);
  }
  if (stats) {
    if (h.group !== undefined) stats.groups++;
    if (error !== undefined) stats.attachmentsErrors++;
  }
}

/** setRequestId on a copy of a decoded frame: the new id reads back, nothing else changes, a v2 CRC stays valid. */
function checkSetRequestId(frameView: Buffer, h: FrameHeader, rng: Rng): void {
  const frame = Buffer.from(frameView);
  const id = h.protocol === 'bolt' ? pickBoltId(rng) : pickDubboId(rng);
  try {
    setRequestId(frame, id);
  } catch (e) {
    fail('setRequestId threw on a frame decodeFrame accepted', `${describeError(e)} (id ${String(id)})`);
  }
  const wantId = h.protocol === 'bolt' ? (id as number) | 0 : BigInt.asIntN(64, BigInt(id)).toString();
  let h2: FrameHeader;
  try {
    h2 = decodeFrame(frame);
  } catch (e) {
    fail('decodeFrame failed after setRequestId', describeError(e));
  }
  if (h2.requestId !== wantId)
    fail('setRequestId: the new id does not read back', `id ${String(id)}, got ${h2.requestId}, want ${wantId}`);
  for (const k of ['protocol', 'kind', 'service', 'method', 'frameLength', 'bodyLength', 'status'] as const) {
    if (!Object.is(h2[k], h[k])) fail(`setRequestId changed ${k}`, `${String(h[k])} -> ${String(h2[k])}`);
  }
  if (h2.protocol === 'bolt' && h.protocol === 'bolt' && h2.crc !== undefined && h2.crc !== 'ok') {
    fail('setRequestId left a Bolt v2 CRC that does not match', `id ${id}`);
  }
  // Outside the id (and the CRC), every byte is as it was.
  let from = 0;
  for (const [a, b] of [...idAndCrcRanges(frame), [frame.length, frame.length]]) {
    if (frame.compare(frameView, from, a, from, a) !== 0)
      fail('setRequestId changed a byte outside the id (and CRC)', `bytes ${from}..${a}`);
    from = b;
  }
}

interface SplitResult {
  frames: number[];
  error?: RefError;
}

function runSplitter(input: Buffer, chunks: Buffer[], cap: number | undefined): SplitResult {
  const frames: number[] = [];
  let emitted = 0;
  const sp = new FrameSplitter(
    (frame) => {
      // Every frame is the next stretch of the stream, byte for byte.
      if (frame.length === 0 || !frame.equals(input.subarray(emitted, emitted + frame.length))) {
        fail(
          'FrameSplitter emitted bytes that are not the next stretch of the input',
          `at ${emitted}, ${frame.length} bytes`,
        );
      }
      emitted += frame.length;
      frames.push(frame.length);
    },
    cap === undefined ? undefined : { maxFrameSize: cap },
  );
  let fed = 0;
  try {
    for (const c of chunks) {
      fed += c.length;
      sp.write(c);
      // Every byte written is either in a frame handed out or held for the next one.
      if (sp.offset !== emitted || sp.offset + sp.buffered !== fed) {
        const counts = `offset ${sp.offset}, buffered ${sp.buffered}, fed ${fed}, emitted ${emitted}`;
        fail('FrameSplitter offset/buffered do not account for the bytes written', counts);
      }
    }
    sp.end();
  } catch (e) {
    if (e instanceof FuzzFailure) throw e;
    const err = checkProtocolError(e, fed, 'FrameSplitter');
    // After an error the stream has lost its framing: the same error, for ever.
    for (const again of [() => sp.write(Buffer.from([0x01, 0x01])), () => sp.end(), () => sp.write(Buffer.alloc(0))]) {
      try {
        again();
        fail('FrameSplitter accepted more input after an error');
      } catch (e2) {
        if (e2 instanceof FuzzFailure) throw e2;
        if (e2 !== err) fail('FrameSplitter threw a different error after its first one', describeError(e2));
      }
    }
    return { frames, error: { code: err.code, offset: err.offset } };
  }
  return { frames };
}

// ---------------------------------------------------------------------------------------------------------------
// Seed corpus and input generation

const ASCII_SERVICES = [
  'com.example.EchoService:1.0',
  'com.alipay.sofa.rpc.test.HelloService:1.0:uid',
  'org.apache.dubbo.demo.DemoService',
  'com.nodejs.test.TestService:1.0',
  'a',
  'x.y.Z:2.0',
];
const UNICODE_BITS = ['服务', 'сервис', 'サービス', 'é', '\u07ff', '\u0800', '\uffff', '\u0000', '😀', '𝄞x', 'Ω≈ç'];

function randomText(rng: Rng, maxLen: number): string {
  switch (rng.int(6)) {
    case 0:
      return '';
    case 1:
      return rng.pick(ASCII_SERVICES);
    case 2:
      return rng.pick(ASCII_SERVICES) + rng.pick(UNICODE_BITS);
    case 3: {
      let s = '';
      const len = rng.size(maxLen);
      while (s.length < len) s += rng.bool(0.7) ? String.fromCharCode(rng.range(0x20, 0x7e)) : rng.pick(UNICODE_BITS);
      return s;
    }
    case 4:
      return 'svc.'.padEnd(rng.size(maxLen), 'abcdefgh');
    default:
      return String.fromCharCode(...Array.from({ length: rng.size(16) }, () => rng.int(0x10000)));
  }
}

/** A Bolt value as the codec will read it back (lone surrogates become U+FFFD on the way through UTF-8). */
function utf8Round(s: string): string {
  return Buffer.from(s, 'utf8').toString('utf8');
}

export interface Seed {
  proto: 'bolt' | 'dubbo';
  note: string;
  bytes: Buffer;
  lengthAt: Built['lengthAt'];
  /** What decodeFrame must report, from the builder's intent (not from the reference decoder). */
  expect: Partial<RefHeader>;
  /** Set for seeds built to be rejected (a start for mutations): the code decodeFrame must throw. */
  expectError?: ProtocolErrorCode;
  /** Tens of KiB: mutated now and then only, they cost a hundred small frames each. */
  large?: boolean;
}

const BOLT_VARIANTS = [
  { protocolVersion: 1 as const },
  { protocolVersion: 2 as const, ver1: 1 as const, switchFlags: 0 },
  { protocolVersion: 2 as const, ver1: 1 as const, switchFlags: 1 }, // switch bit without ver1 2: no CRC
  { protocolVersion: 2 as const, ver1: 2 as const, switchFlags: 0 },
  { protocolVersion: 2 as const, ver1: 2 as const, switchFlags: 1 }, // CRC
  { protocolVersion: 2 as const, ver1: 2 as const, switchFlags: 0x81 }, // CRC, other switch bits set
];

const REGISTRY_CLASS = 'com.alipay.sofa.registry.core.model.PublisherRegister';

export function boltSeeds(rng: Rng): Seed[] {
  const seeds: Seed[] = [];
  const statuses = Object.values(BoltStatus);
  for (const v of BOLT_VARIANTS) {
    const ver1 = 'ver1' in v ? v.ver1 : undefined;
    const switchFlags = 'switchFlags' in v ? v.switchFlags : undefined;
    const crc = boltHasCrc(v.protocolVersion, ver1, switchFlags) ? ('ok' as const) : undefined;
    const tag = `v${v.protocolVersion}${ver1 ? ` ver1=${ver1} switch=0x${(switchFlags ?? 0).toString(16)}` : ''}`;
    const common = {
      protocol: 'bolt' as const,
      protocolVersion: v.protocolVersion,
      crc,
      service: undefined,
      method: undefined,
    };
    const made = (note: string, bytes: Buffer, expect: Partial<RefHeader>) =>
      seeds.push({
        proto: 'bolt',
        note: `${tag} ${note}`,
        bytes,
        lengthAt: boltLengthAt(bytes),
        expect: { ...common, ...expect },
      });
    const hbId = rng.next() | 0;
    const hb = encodeBoltHeartbeat(hbId, v);
    made('heartbeat', hb, {
      kind: 'heartbeat',
      requestId: hbId,
      timeoutMs: 1000,
      className: '',
      frameLength: hb.length,
    });
    made('heartbeat ack', encodeBoltHeartbeatAck(hbId, v), {
      kind: 'heartbeat-ack',
      requestId: hbId,
      status: 0,
      className: '',
    });
    for (const codec of [1, 11]) {
      const status = rng.pick(statuses.filter((s) => s !== 0));
      const errId = rng.next() | 0;
      const er = encodeBoltErrorResponse({ ...v, codec, requestId: errId, status, message: randomText(rng, 300) });
      made(`error response codec ${codec}`, er, {
        kind: 'response',
        requestId: errId,
        status,
        codec,
        className: SOFA_RESPONSE_CLASS,
      });
    }
    type BoltRequestSeed = {
      note: string;
      type: number;
      className: string;
      entries: HeaderEntry[];
      service?: string;
      method?: string;
    };
    const requests: BoltRequestSeed[] = [
      {
        note: 'SOFA request',
        type: 1,
        className: SOFA_REQUEST_CLASS,
        entries: [
          ['service', 'com.example.EchoService:1.0'],
          ['sofa_head_method_name', 'echo'],
          ['sofa_head_target_app', 'demo'],
          ['rpc_trace_context.sofaTraceId', '0a0fe8ec1587548571925100111'],
        ],
        service: 'com.example.EchoService:1.0',
        method: 'echo',
      },
      {
        note: 'oneway',
        type: 2,
        className: SOFA_REQUEST_CLASS,
        entries: [['service', 'com.nodejs.test.TestService:1.0']],
        service: 'com.nodejs.test.TestService:1.0',
      },
      {
        note: 'old client: target service only',
        type: 1,
        className: SOFA_REQUEST_CLASS,
        entries: [
          ['sofa_head_target_service', 'com.alipay.old.Svc:1.0:u1'],
          ['sofa_head_method_name', 'call'],
          ['nullval', null],
          [null, 'nullkey'],
          ['', ''],
        ],
        service: 'com.alipay.old.Svc:1.0:u1',
        method: 'call',
      },
      { note: 'registry request, empty header', type: 1, className: REGISTRY_CLASS, entries: [] },
      {
        note: 'unicode service, service beats target',
        type: 1,
        className: SOFA_REQUEST_CLASS,
        entries: [
          ['service', `com.example.服务:1.0`],
          ['sofa_head_target_service', 'ignored:1.0'],
          ['sofa_head_method_name', 'ping😀'],
        ],
        service: 'com.example.服务:1.0',
        method: 'ping😀',
      },
    ];
    for (const r of requests) {
      const map = encodeHeaderMap(r.entries);
      const requestId = rng.next() | 0;
      const codec = rng.pick([1, 1, 11]);
      const built = buildBolt(
        {
          version: v.protocolVersion,
          ver1: 'ver1' in v ? v.ver1 : undefined,
          switchFlags: 'switchFlags' in v ? v.switchFlags : undefined,
          type: r.type,
          cmd: 1,
          requestId,
          codec,
          timeoutOrStatus: 3000,
          className: Buffer.from(r.className),
          header: map.bytes,
          content: hessianishContent(rng),
        },
        map.lengthAt,
      );
      seeds.push({
        proto: 'bolt',
        note: `${tag} ${r.note}`,
        bytes: built.bytes,
        lengthAt: built.lengthAt,
        expect: {
          ...common,
          kind: r.type === 2 ? 'oneway' : 'request',
          requestId,
          codec,
          timeoutMs: 3000,
          className: r.className,
          service: r.service,
          method: r.method,
          frameLength: built.bytes.length,
        },
      });
    }
    const resId = rng.next() | 0;
    const res = buildBolt({
      version: v.protocolVersion,
      ver1: 'ver1' in v ? v.ver1 : undefined,
      switchFlags: 'switchFlags' in v ? v.switchFlags : undefined,
      type: 0,
      cmd: 2,
      requestId: resId,
      timeoutOrStatus: 0,
      className: Buffer.from(SOFA_RESPONSE_CLASS),
      content: hessianishContent(rng),
    });
    made('SOFA response', res.bytes, { kind: 'response', requestId: resId, status: 0, className: SOFA_RESPONSE_CLASS });
  }
  // One large frame: long service, 40 KiB body, v2 with CRC.
  const bigService = 'com.example.Big'.padEnd(3000, 'Service') + ':1.0';
  const map = encodeHeaderMap([['service', bigService]]);
  const big = buildBolt(
    {
      version: 2,
      ver1: 2,
      switchFlags: 1,
      type: 1,
      cmd: 1,
      requestId: 99,
      timeoutOrStatus: 5000,
      className: Buffer.from(SOFA_REQUEST_CLASS),
      header: map.bytes,
      content: rng.bytes(40 * 1024),
    },
    map.lengthAt,
  );
  seeds.push({
    proto: 'bolt',
    note: 'v2 CRC large request',
    large: true,
    bytes: big.bytes,
    lengthAt: big.lengthAt,
    expect: {
      protocol: 'bolt',
      kind: 'request',
      requestId: 99,
      service: bigService,
      crc: 'ok',
      frameLength: big.bytes.length,
    },
  });
  return seeds;
}

/** Length-field offsets of a frame the package's encoders made (no header map). */
function boltLengthAt(frame: Buffer): Built['lengthAt'] {
  const v2 = frame[0] === 2;
  const l = boltLayoutRef(v2, frame[v2 ? 2 : 1] === 0);
  return [
    { at: l.classLen, size: 2 },
    { at: l.headerLen, size: 2 },
    { at: l.contentLen, size: 4 },
  ];
}

/** Bytes that look like a SOFA body (class defs, strings), or plain noise. */
function hessianishContent(rng: Rng): Buffer {
  if (rng.bool(0.3)) return rng.bytes(rng.size(64));
  return Buffer.concat([
    Buffer.from([0x4f, 0x9c]),
    Buffer.from(SOFA_REQUEST_CLASS),
    Buffer.from([0x94]),
    h2String(randomText(rng, 40)),
    rng.bytes(rng.size(32)),
  ]);
}

export function dubboSeeds(rng: Rng): Seed[] {
  const seeds: Seed[] = [];
  const push = (
    note: string,
    bytes: Buffer,
    expect: Partial<RefHeader>,
    stringAt: number[] = [],
    expectError?: ProtocolErrorCode,
  ) => {
    const lengthAt = [{ at: 12, size: 4 as const }, ...stringAt.map((at) => ({ at: 16 + at, size: 2 as const }))];
    seeds.push({ proto: 'dubbo', note, bytes, expect: { protocol: 'dubbo', ...expect }, expectError, lengthAt });
  };
  for (const id of [7, 0xffffffff, 2 ** 40, (1n << 63n) - 1n, -1n]) {
    const want = BigInt.asIntN(64, BigInt(id)).toString();
    const hb = { kind: 'heartbeat', requestId: want, frameLength: 17, serializationId: 2, service: undefined };
    push(`heartbeat id ${id}`, encodeDubboHeartbeat(id), hb);
    push(`heartbeat ack id ${id}`, encodeDubboHeartbeatAck(id), {
      kind: 'heartbeat-ack',
      requestId: want,
      status: 20,
      frameLength: 17,
    });
  }
  for (const status of Object.values(DubboStatus).filter((s) => s !== 20)) {
    const id = BigInt.asIntN(64, rng.u64());
    const er = encodeDubboErrorResponse({ requestId: id, status, message: randomText(rng, 200) });
    push(`error response ${status}`, er, { kind: 'response', requestId: id.toString(), status });
  }
  const longError = encodeDubboErrorResponse({ requestId: 3, status: 70, message: 'e'.repeat(70_000) });
  push('error response, 70000-unit message', longError, { kind: 'response', status: 70 });
  seeds[seeds.length - 1].large = true;
  const requests: Array<{ note: string; spec: DubboRequestSpec; form?: H2Form }> = [
    {
      note: 'request',
      spec: dubboSpec(
        '2.0.2',
        'org.apache.dubbo.demo.DemoService',
        '1.0.0',
        'sayHello',
        'Ljava/lang/String;',
        ['world'],
        [
          ['group', 'g1'],
          ['interface', 'org.apache.dubbo.demo.DemoService'],
        ],
      ),
    },
    {
      note: 'null version',
      spec: dubboSpec('2.7.8', 'com.example.EchoService', null, 'echo', 'Ljava/lang/String;', ['x']),
    },
    {
      note: 'null dubbo version (hessian.js read() case)',
      spec: dubboSpec(null, 'com.example.EchoService', '2.0', 'echo'),
    },
    {
      note: 'unicode names',
      spec: dubboSpec('2.0.2', 'com.例子.服务😀', 'v\u0800', 'méthode', 'Ljava/lang/String;', ['𝄞'], [['path', 'p']]),
    },
    {
      note: 'medium-length service',
      spec: dubboSpec('2.0.2', 'com.example.'.padEnd(700, 'Medium'), '1.0.0', 'm'),
      form: 'compact',
    },
    {
      note: 'S-form strings',
      spec: {
        dubboVersion: '2.0.2',
        service: 'com.example.LongForm',
        version: '1.0.0',
        method: 'call',
        paramTypes: 'I',
        args: [],
        attachments: [],
      },
      form: 'long',
    },
    {
      note: 'R-chunked service',
      spec: dubboSpec('2.0.2', 'com.example.Chunked'.padEnd(300, 'C'), '1', 'get'),
      form: 'chunked',
    },
    {
      note: '4-byte UTF-8 in method',
      spec: {
        dubboVersion: '2.0.2',
        service: 'com.example.Emoji',
        version: '1',
        method: 'say😀',
        paramTypes: '',
        args: [],
        attachments: [],
      },
      form: 'utf8',
    },
  ];
  for (const r of requests) {
    for (const twoWay of [true, false]) {
      const id = BigInt.asIntN(64, rng.u64());
      const { body, stringAt } = dubboRequestBody(r.spec, rng, r.form);
      const flag = 0x80 | (twoWay ? 0x40 : 0) | 2;
      push(
        `${twoWay ? '' : 'oneway '}${r.note}`,
        buildDubbo(flag, 0, id, body),
        {
          kind: twoWay ? 'request' : 'oneway',
          requestId: id.toString(),
          serializationId: 2,
          status: undefined,
          dubboVersion: r.spec.dubboVersion,
          service: r.spec.service ?? undefined,
          version: r.spec.version,
          method: r.spec.method ?? undefined,
          frameLength: 16 + body.length,
        },
        stringAt,
      );
    }
  }
  // Bodies with real arguments and attachments, for mutations to reach the attachments scan.
  const SERVICE = 'org.apache.dubbo.demo.DemoService';
  const order = (id: number) => ({
    $class: 'org.example.Order',
    $: { id: { $class: 'long', $: id }, who: 'alice', amount: 99.5, tags: ['a', 'b'], at: new Date(1700000000000) },
  });
  const shared = { k: 'shared' };
  const realArgs: Array<{ note: string; args: unknown[]; group: string; props?: Record<string, unknown> }> = [
    { note: 'one string', args: ['world'], group: 'g1', props: { interface: SERVICE } },
    { note: 'an object, its class again, a reference', args: [order(1), order(2), shared, [shared]], group: 'orders' },
    {
      note: 'numbers, dates, bytes, nulls',
      args: [7, -300000, 2 ** 40, 1.5, 99.5, new Date(0), Buffer.alloc(40, 0x5a), null, true],
      group: '组😀',
    },
    {
      note: 'nested lists and maps, a long string',
      args: [[1, [2, { group: 'inner' }]], { a: [null] }, 'x'.repeat(1500)],
      group: 'nested',
      props: { interface: 'a.B' },
    },
    { note: 'no group', args: ['x'], group: '' },
  ];
  for (const r of realArgs) {
    const frame = Buffer.from(
      dubboPeer.requestEncode(
        rng.next(),
        {
          serverSignature: `${SERVICE}:1.0.0`,
          methodName: 'call',
          args: r.args,
          group: r.group,
          requestProps: r.props,
        },
        {},
      ),
    );
    const iface = r.props?.interface as string | undefined;
    push(`dubbo-remoting request: ${r.note}`, frame, {
      kind: 'request',
      service: SERVICE,
      method: 'call',
      group: r.group || undefined,
      interfaceName: iface,
    });
  }
  const lead = Buffer.concat(['2.0.2', SERVICE, '1.0.0', 'call'].map((x) => h2String(x)));
  const attachments = { path: SERVICE, interface: SERVICE, group: 'enc' };
  const handTails: Array<{ note: string; tail: Buffer; group: string | undefined; interfaceName?: string }> = [
    {
      note: 'typed lists, a type by index, a typed map',
      tail: hessianRequestTail(
        [
          { $class: '[java.lang.String', $: ['a'] },
          { $class: '[java.lang.String', $: ['b'] },
          { $class: 'com.alibaba.fastjson.JSONObject', $: { k: 1 } },
        ],
        attachments,
      ),
      group: 'enc',
      interfaceName: SERVICE,
    },
    { note: 'attachments null', tail: hessianRequestTail(['x'], null), group: undefined },
    { note: 'no attachments', tail: hessianRequestTail(['x', 1], undefined), group: undefined },
    {
      note: 'every fixed-size value form, a key in overlong UTF-8',
      tail: Buffer.concat([
        h2String('I'.repeat(27)),
        Buffer.from(
          '80 bf c0 00 cf ff d0 00 00 d7 ff ff 49 80 00 00 00 d8 ef f0 00 ff ff 38 00 00 3f ff ff'.replace(/ /g, ''),
          'hex',
        ),
        Buffer.from(
          '59 7f ff ff ff 4c 00 00 00 00 00 00 00 01 5b 5c 5d 80 5e 7f ff 5f 00 00 03 e8'.replace(/ /g, ''),
          'hex',
        ),
        Buffer.from(
          '44 40 09 21 fb 54 44 2d 18 4a 00 00 01 8b cf e5 68 00 4b 00 1b 07 0c 4e 54 46 2f'.replace(/ /g, ''),
          'hex',
        ),
        Buffer.alloc(15, 0x5a),
        Buffer.from([0x48, 0x05, 0xc1, 0xa7]),
        Buffer.from('rou'),
        Buffer.from([0xe0, 0x81, 0xb0]),
        h2String('overlong'),
        Buffer.from([0x5a]),
      ]),
      group: 'overlong',
    },
    {
      note: 'variable lists, a chunked key, a class definition before the map',
      tail: Buffer.concat([
        h2String('Ljava/util/List;Ljava/util/List;'),
        Buffer.from([0x55]),
        h2String('java.util.ArrayList'),
        Buffer.from([0x91, 0x5a]),
        Buffer.from([0x57, 0x4e, 0x5a]),
        Buffer.from([0x43]),
        h2String('a.Map'),
        Buffer.from([0x90]),
        Buffer.from([0x48, 0x52, 0, 2]),
        Buffer.from('gr'),
        h2String('oup'),
        h2String('chunked'),
        Buffer.from([0x5a]),
      ]),
      group: 'chunked',
    },
  ];
  for (const t of handTails) {
    const body = Buffer.concat([lead, t.tail]);
    push(`hessian2 body: ${t.note}`, buildDubbo(0xc2, 0, 77n, body), {
      kind: 'request',
      service: SERVICE,
      method: 'call',
      group: t.group,
      interfaceName: t.interfaceName,
    });
  }
  // A very long service: R chunks past 65535 units.
  const longService = 'com.example.'.padEnd(70_000, 'Z');
  const big = dubboRequestBody(dubboSpec('2.0.2', longService, '1.0.0', 'm'), undefined, 'compact');
  push('70000-unit service', buildDubbo(0xc2, 0, 5n, big.body), {
    kind: 'request',
    service: longService,
    method: 'm',
    version: '1.0.0',
  });
  seeds[seeds.length - 1].large = true;
  // Other serializations: header-only view, no body read.
  const json = Buffer.from('"2.0.2"\n"com.example.EchoService"\n"1.0.0"\n"echo"\n');
  push('fastjson request', buildDubbo(0xc6, 0, 11n, json), {
    kind: 'request',
    serializationId: 6,
    service: undefined,
    method: undefined,
  });
  const ok = buildDubbo(0x02, 20, 42n, Buffer.concat([Buffer.from([0x91]), h2String('hello')])); // RESPONSE_VALUE "hello"
  push('OK response', ok, { kind: 'response', requestId: '42', status: 20 });
  push(
    'empty-body request (rejected: a start for mutations)',
    buildDubbo(0xc2, 0, 1n, Buffer.alloc(0)),
    {},
    [],
    'MESHPORT_DUBBO_BAD_BODY',
  );
  return seeds;
}

/** A fresh Bolt frame with random fields and a header map that may be malformed inside correct outer lengths. */
function structuredBolt(rng: Rng): Built {
  const v = rng.pick(BOLT_VARIANTS);
  const combos = [
    [1, 1],
    [2, 1],
    [0, 2],
    [1, 0],
    [0, 0],
  ];
  let [type, cmd] = rng.pick(combos);
  if (rng.bool(0.1)) [type, cmd] = [rng.int(4), rng.bool(0.5) ? rng.int(4) : rng.int(0x10000)];
  const keys = [
    'service',
    'sofa_head_target_service',
    'sofa_head_method_name',
    'sofa_head_target_app',
    'rpc_trace_context.sofaTraceId',
    'servicE',
    'service ',
    '',
  ];
  const entries: HeaderEntry[] = [];
  const count = rng.size(8);
  for (let i = 0; i < count; i++) {
    const k = rng.bool(0.08) ? null : rng.bool(0.8) ? rng.pick(keys) : randomText(rng, 20);
    const val = rng.bool(0.1) ? null : randomText(rng, 120);
    entries.push([k, val]);
  }
  const map = encodeHeaderMap(entries);
  let header = map.bytes;
  if (rng.bool(0.25) && map.lengthAt.length > 0) {
    // Corrupt one entry length, or cut the map short, keeping the Bolt headerLen in step with what is there.
    header = Buffer.from(header);
    const at = rng.pick(map.lengthAt);
    const cur = header.readInt32BE(at);
    header.writeInt32BE(rng.pick([-2, -1, 0, cur + 1, cur - 1, 0x7fffffff, -0x80000000, header.length]) | 0, at);
  } else if (rng.bool(0.1)) {
    header = header.subarray(0, rng.int(header.length + 1));
  } else if (rng.bool(0.05)) {
    header = Buffer.concat([header, rng.bytes(rng.range(1, 7))]);
  }
  const className = Buffer.from(
    rng.bool(0.6)
      ? rng.pick([SOFA_REQUEST_CLASS, SOFA_RESPONSE_CLASS, REGISTRY_CLASS, ''])
      : utf8Round(randomText(rng, 60)),
  );
  return buildBolt(
    {
      version: v.protocolVersion,
      ver1: 'ver1' in v ? v.ver1 : undefined,
      switchFlags: 'switchFlags' in v ? v.switchFlags : undefined,
      type,
      cmd,
      ver2: rng.bool(0.9) ? 1 : rng.int(256),
      requestId: rng.next(),
      codec: rng.pick([1, 1, 11, rng.int(256)]),
      timeoutOrStatus: rng.bool(0.5) ? rng.pick([0, 1000, 3000, -1]) : rng.next(),
      className,
      header,
      content: hessianishContent(rng),
      crc: rng.bool(0.1) ? 'bad' : 'auto',
    },
    map.lengthAt,
  );
}

/** A fresh Dubbo frame: hessian2 requests whose leading strings may be malformed, or other kinds. */
function structuredDubbo(rng: Rng): Built {
  const flag = rng.bool(0.75)
    ? rng.pick([0xc2, 0xc2, 0x82, 0xe2, 0xa2, 0x22, 0x02, 0x42, 0xc6, 0xc3, 0xd6])
    : rng.int(256);
  const status = rng.bool(0.7) ? rng.pick([0, 20, 25, 30, 31, 35, 40, 50, 60, 70, 80, 90, 100]) : rng.int(256);
  const id = BigInt.asIntN(64, rng.bool(0.5) ? BigInt(rng.next()) : rng.u64());
  let body: Buffer;
  let stringAt: number[] = [];
  if (((flag & 0xa0) === 0x80 || rng.bool(0.2)) && rng.bool(0.4)) {
    // A realistic body: arguments of every kind and attachments, then damaged past the leading strings, where only
    // the attachments scan reads.
    const names = ['2.0.2', rng.pick(ASCII_SERVICES), rng.bool(0.2) ? null : '1.0.0', 'call'];
    const lead = Buffer.concat(
      names.map((n) => (n === null ? Buffer.from([0x4e]) : h2String(n, rng.pick(H2_FORMS), rng))),
    );
    const pool: object[] = [];
    const args = Array.from({ length: rng.size(5) }, () => randomHessianValue(rng, 0, pool));
    const attachments: Record<string, unknown> = { path: names[1], dubbo: '2.0.2' };
    if (rng.bool(0.8)) attachments.group = rng.pick(['g1', 'SOFA', '', randomArgText(rng), 5, null]);
    if (rng.bool(0.5)) attachments.interface = names[1];
    let tail = hessianRequestTail(args, rng.bool(0.9) ? attachments : rng.pick([null, undefined]));
    switch (rng.int(6)) {
      case 0: // cut short, the header counting only what is left
        tail = tail.subarray(0, rng.int(tail.length + 1));
        break;
      case 1: {
        tail = Buffer.from(tail);
        for (let k = rng.range(1, 3); k > 0 && tail.length > 0; k--) {
          tail[rng.int(tail.length)] = rng.bool(0.5)
            ? rng.pick(
                INTERESTING_BYTES.concat([
                  0x43, 0x48, 0x4d, 0x4f, 0x51, 0x55, 0x56, 0x57, 0x58, 0x5a, 0x60, 0x70, 0x78, 0x79, 0x41, 0x42, 0x49,
                ]),
              )
            : rng.int(256);
        }
        break;
      }
      case 2: {
        const at = rng.int(tail.length + 1);
        tail = Buffer.concat([tail.subarray(0, at), rng.bytes(rng.range(1, 4)), tail.subarray(at)]);
        break;
      }
      default:
        break;
    }
    body = Buffer.concat([lead, tail]);
  } else if ((flag & 0xa0) === 0x80 || rng.bool(0.2)) {
    const pickName = (nullable: boolean) =>
      nullable && rng.bool(0.1) ? null : randomText(rng, rng.bool(0.05) ? 2000 : 80);
    const r = dubboRequestBody(
      {
        dubboVersion: rng.bool(0.7) ? rng.pick(['2.0.2', '2.7.8', '3.0.0']) : pickName(true),
        service: pickName(rng.bool(0.2)),
        version: pickName(true),
        method: pickName(rng.bool(0.2)),
        paramTypes: rng.pick(['Ljava/lang/String;', 'I', '', '[Ljava/lang/Object;']),
        args: Array.from({ length: rng.size(3) }, () => randomText(rng, 30)),
        attachments: Array.from({ length: rng.size(3) }, (): [string, string] => [
          rng.pick(['group', 'interface', 'path', 'version', 'timeout']),
          randomText(rng, 30),
        ]),
      },
      rng,
    );
    body = r.body;
    stringAt = r.stringAt;
    const roll = rng.int(10);
    if (roll === 0) {
      // Cut inside the four leading strings mostly, often just before one ends: that is where the last, multi-byte
      // character of a string can straddle the end of the frame.
      const lead = stringAt.length > 4 && rng.bool(0.7) ? stringAt[4] : body.length;
      const cut =
        stringAt.length > 4 && rng.bool(0.5) ? stringAt[rng.range(1, 4)] - rng.range(1, 3) : rng.int(lead + 1);
      body = body.subarray(0, Math.max(0, cut));
    } else if (roll === 1 && stringAt.length) {
      // Break one string's framing byte or one of its characters.
      body = Buffer.from(body);
      const at = rng.pick(stringAt.slice(0, 4)) + rng.int(4);
      const codes = [
        0x1f,
        0x20,
        0x2f,
        0x34,
        0x33,
        0x52,
        0x53,
        0x4e,
        0x80,
        0xbf,
        0xc0,
        0xe0,
        0xf0,
        0xf7,
        0xf8,
        0xff,
        rng.int(256),
      ];
      if (at < body.length) body[at] = rng.pick(codes);
    }
  } else {
    body = rng.bool(0.5) ? Buffer.from([0x4e]) : rng.bytes(rng.size(48));
  }
  const bodyLength = rng.bool(0.92)
    ? body.length
    : rng.pick([body.length + 1, body.length - 1, 0, -1, 0x7fffffff, 16 * MIB - 16, 16 * MIB - 15]);
  const lengthAt = [{ at: 12, size: 4 as const }, ...stringAt.map((at) => ({ at: 16 + at, size: 2 as const }))];
  return { bytes: buildDubbo(flag, status, id, body, bodyLength), lengthAt };
}

const INTERESTING_BYTES = [
  0x00, 0xff, 0x7f, 0x80, 0x01, 0x02, 0x03, 0xda, 0xbb, 0x4e, 0x52, 0x53, 0x30, 0x33, 0x1f, 0x20, 0xc0, 0xe0, 0xf0,
  0xf8,
];

function interestingLength(rng: Rng, size: 2 | 4, current: number, total: number): number {
  if (size === 2)
    return rng.pick([0, 1, -1, -2, -0x8000, 0x7fff, 0x7ffe, 0xff, 0x100, current + 1, current - 1, total]);
  return rng.pick([
    0,
    1,
    -1,
    -2,
    0x7f,
    0x80,
    0xffff,
    0x10000,
    0x7fffffff, // a 2 GiB claim
    -0x80000000,
    0x40000000,
    16 * MIB - 24,
    16 * MIB - 16,
    16 * MIB,
    16 * MIB + 1,
    MIB,
    current + 1,
    current - 1,
    current * 2,
    total,
  ]);
}

/** One byte-level mutation. */
function mutateOnce(b: Buffer, rng: Rng, corpus: readonly Seed[], lengthAt: Built['lengthAt']): Buffer {
  const n = b.length;
  switch (rng.int(13)) {
    case 0: {
      if (n === 0) return b;
      const out = Buffer.from(b);
      out[rng.int(n)] ^= 1 << rng.int(8);
      return out;
    }
    case 1: {
      if (n === 0) return b;
      const out = Buffer.from(b);
      // Most of the interesting decisions sit in the first 24 bytes.
      out[rng.bool(0.6) ? rng.int(Math.min(n, 24)) : rng.int(n)] = rng.pick(INTERESTING_BYTES);
      return out;
    }
    case 2: {
      if (n === 0) return b;
      const out = Buffer.from(b);
      out[rng.int(n)] = rng.int(256);
      return out;
    }
    case 3:
    case 4: {
      // A length field set to something huge, negative or off by one.
      const target =
        lengthAt.length && rng.bool(0.8)
          ? rng.pick(lengthAt)
          : { at: rng.int(Math.max(n, 1)), size: rng.pick([2, 4] as const) };
      if (target.at + target.size > n) return b;
      const out = Buffer.from(b);
      const cur = target.size === 2 ? out.readInt16BE(target.at) : out.readInt32BE(target.at);
      const v = interestingLength(rng, target.size, cur, n);
      if (target.size === 2) out.writeUInt16BE(v & 0xffff, target.at);
      else out.writeUInt32BE(v >>> 0, target.at);
      return out;
    }
    case 5:
      return b.subarray(0, rng.int(n + 1)); // truncation
    case 6:
      return Buffer.concat([
        b,
        rng.bool(0.7) ? rng.bytes(rng.range(1, 64)) : Buffer.from([rng.pick(INTERESTING_BYTES)]),
      ]); // extension
    case 7: {
      // Splice: a prefix of this one with a suffix of another frame.
      const other = rng.pick(corpus).bytes;
      return Buffer.concat([b.subarray(0, rng.int(n + 1)), other.subarray(rng.int(other.length + 1))]);
    }
    case 8:
      // Duplicate: the frame twice, or with a slice of itself repeated.
      return rng.bool(0.5) ? Buffer.concat([b, b]) : Buffer.concat([b, b.subarray(0, rng.int(n + 1))]);
    case 9: {
      const at = rng.int(n + 1);
      return Buffer.concat([b.subarray(0, at), rng.bytes(rng.range(1, 8)), b.subarray(at)]);
    }
    case 10: {
      const at = rng.int(n + 1);
      return Buffer.concat([b.subarray(0, at), b.subarray(Math.min(n, at + rng.range(1, 8)))]);
    }
    case 11: {
      // Toggle the Bolt v2 CRC switch or ver1: the frame gains or loses 4 trailing bytes it may not have.
      if (n < 12 || b[0] !== 2) return b;
      const out = Buffer.from(b);
      if (rng.bool(0.5)) out[11] ^= 1;
      else out[1] = out[1] === 2 ? 1 : 2;
      return out;
    }
    default: {
      // Copy a run of bytes over another place in the frame.
      if (n < 2) return b;
      const out = Buffer.from(b);
      const len = rng.range(1, Math.min(16, n));
      b.copy(out, rng.int(n), rng.int(n), rng.int(n) + len);
      return out;
    }
  }
}

function mutate(b: Buffer, rng: Rng, corpus: readonly Seed[], lengthAt: Built['lengthAt']): Buffer {
  let out = b;
  const times = 1 + rng.size(4);
  for (let i = 0; i < times; i++) out = mutateOnce(out, rng, corpus, lengthAt);
  return out;
}

function randomBuffer(rng: Rng, bias?: 'bolt' | 'dubbo'): Buffer {
  const max = rng.pick([8, 32, 64, 64, 256, 1024, 4096]);
  const b = rng.bytes(rng.int(max + 1));
  if (b.length > 0 && (bias || rng.bool(0.3))) {
    b[0] = bias === 'bolt' ? rng.pick([1, 2]) : bias === 'dubbo' ? 0xda : rng.pick([1, 2, 0xda]);
    if (b[0] === 0xda && b.length > 1 && rng.bool(0.7)) b[1] = 0xbb;
    if (b[0] === 2 && b.length > 1 && rng.bool(0.7)) b[1] = rng.pick([1, 2]);
    // Small type byte and small lengths make random Bolt bytes get past the fixed header now and then.
    if (b[0] !== 0xda && rng.bool(0.5)) {
      const s = b[0] === 2 ? 1 : 0;
      if (b.length > 1 + s) b[1 + s] = rng.int(3);
      for (let i = 12 + s; i < Math.min(b.length, 24); i++) if (rng.bool(0.7)) b[i] = 0;
    }
  }
  return b;
}

export interface Corpus {
  bolt: Seed[];
  dubbo: Seed[];
  /** The small seeds, by protocol and together; the large ones apart. */
  small: { bolt: Seed[]; dubbo: Seed[]; all: Seed[] };
  large: { bolt: Seed[]; dubbo: Seed[] };
}

export function buildCorpus(seed: number): Corpus {
  const rng = new Rng(mixSeed(seed, 0xc0ffee));
  const bolt = boltSeeds(rng);
  const dubbo = dubboSeeds(rng);
  const small = (l: Seed[]) => l.filter((s) => !s.large);
  const large = (l: Seed[]) => l.filter((s) => s.large);
  return {
    bolt,
    dubbo,
    small: { bolt: small(bolt), dubbo: small(dubbo), all: [...small(bolt), ...small(dubbo)] },
    large: { bolt: large(bolt), dubbo: large(dubbo) },
  };
}

/** The input of case `index` of a campaign: a pure function of (seed, campaign, index). */
export function generateCase(corpus: Corpus, campaign: Campaign, rng: Rng): Buffer {
  if (campaign === 'random') return randomBuffer(rng);
  const seeds = rng.bool(0.01) ? corpus.large[campaign] : corpus.small[campaign];
  const all = corpus.small.all;
  const r = rng.int(100);
  if (r < 6) return randomBuffer(rng, campaign);
  if (r < 36) {
    const built = campaign === 'bolt' ? structuredBolt(rng) : structuredDubbo(rng);
    return rng.bool(0.5) ? built.bytes : mutate(built.bytes, rng, all, built.lengthAt);
  }
  if (r < 46) {
    // A stream: several frames back to back, some mutated.
    const parts: Buffer[] = [];
    const count = rng.range(2, 5);
    for (let i = 0; i < count; i++) {
      const s = rng.bool(0.85) ? rng.pick(seeds) : rng.pick(all);
      parts.push(rng.bool(0.25) ? mutate(s.bytes, rng, all, s.lengthAt) : s.bytes);
    }
    return Buffer.concat(parts);
  }
  const s = rng.pick(seeds);
  return r < 50 ? s.bytes : mutate(s.bytes, rng, all, s.lengthAt);
}

// ---------------------------------------------------------------------------------------------------------------
// Campaign runner and shrinker

/** Greedy delta debugging: drop ever smaller runs of bytes while the same property still breaks. */
export function shrink(input: Buffer, stillFails: (b: Buffer) => boolean, budgetMs = 2000): Buffer {
  const deadline = Date.now() + budgetMs;
  let best = input;
  let size = Math.max(1, best.length >> 1);
  while (Date.now() < deadline) {
    let progressed = false;
    for (let at = 0; at + size <= best.length && Date.now() < deadline; ) {
      const cand = Buffer.concat([best.subarray(0, at), best.subarray(at + size)]);
      if (stillFails(cand)) {
        best = cand;
        progressed = true;
      } else at += size;
    }
    if (!progressed) {
      if (size === 1) break;
      size = Math.max(1, size >> 1);
    }
  }
  // Then make bytes boring (0x00) where that keeps the failure, so the reproducer shows what matters.
  for (let i = 0; i < best.length && Date.now() < deadline; i++) {
    if (best[i] === 0) continue;
    const cand = Buffer.from(best);
    cand[i] = 0;
    if (stillFails(cand)) best = cand;
  }
  return best;
}

export interface Finding {
  kind: string;
  detail: string;
  caseIndex: number;
  count: number;
  inputHex: string;
  minimalHex: string;
  minimalDetail: string;
}

export interface CampaignResult {
  campaign: Campaign;
  seed: number;
  cases: number;
  elapsedMs: number;
  slowestCaseMs: number;
  slowestCase: number;
  stats: CaseStats;
  findings: Finding[];
  heapGrowthBytes: number;
  arrayBufferGrowthBytes: number;
}

const MAX_FINDINGS = 8;
export const SLOW_CASE_MS = 2000;

function hexOf(b: Buffer, max = 4096): string {
  return b.length <= max ? b.toString('hex') : `${b.subarray(0, max).toString('hex')}... (${b.length} bytes)`;
}

/**
 * Runs one campaign; never throws for a broken property, it collects findings (one per kind, with a shrunk input).
 * `settle` collects garbage before memory is read (ArrayBuffers are released a task after the GC that frees them).
 */
export async function runCampaign(
  campaign: Campaign,
  seed: number,
  cases: number,
  progress: Int32Array | undefined,
  settle: () => Promise<void>,
): Promise<CampaignResult> {
  const corpus = buildCorpus(seed);
  const stats = newStats();
  const findings = new Map<string, Finding>();
  // Warm up (JIT, lazily created module state) before taking the memory baseline. Progress -2-k means seed k.
  const stage = progress ? (s: number) => void (progress[1] = s) : undefined;
  [...corpus.bolt, ...corpus.dubbo].forEach((s, k) => {
    if (progress) progress[0] = -2 - k;
    checkCase(s.bytes, new Rng(1), { stage });
  });
  await settle();
  const m0 = process.memoryUsage();
  const started = Date.now();
  let slowest = 0;
  let slowestCase = -1;
  for (let i = 0; i < cases; i++) {
    if (progress) {
      progress[0] = i;
      progress[1] = 1;
    }
    const t0 = Date.now();
    const rng = new Rng(caseSeed(seed, campaign, i));
    let input: Buffer = Buffer.alloc(0);
    try {
      input = generateCase(corpus, campaign, rng);
      checkCase(input, rng, { stats, stage });
    } catch (e) {
      const f = e instanceof FuzzFailure ? e : new FuzzFailure('fuzz harness error', describeError(e));
      const known = findings.get(f.kind);
      if (known) known.count++;
      else if (findings.size < MAX_FINDINGS) {
        const replay = (b: Buffer): FuzzFailure | undefined => {
          const r = new Rng(caseSeed(seed, campaign, i));
          generateCase(corpus, campaign, r); // same rng stream position as the original case
          try {
            checkCase(b, r);
          } catch (e2) {
            return e2 instanceof FuzzFailure ? e2 : new FuzzFailure('fuzz harness error', describeError(e2));
          }
          return undefined;
        };
        const minimal = shrink(input, (b) => replay(b)?.kind === f.kind);
        findings.set(f.kind, {
          kind: f.kind,
          detail: f.detail,
          caseIndex: i,
          count: 1,
          inputHex: hexOf(input),
          minimalHex: hexOf(minimal),
          minimalDetail: replay(minimal)?.detail ?? f.detail,
        });
      }
    }
    const took = Date.now() - t0;
    if (took > slowest) {
      slowest = took;
      slowestCase = i;
    }
  }
  const elapsedMs = Date.now() - started;
  await settle();
  const m1 = process.memoryUsage();
  if (progress) progress[1] = 0;
  return {
    campaign,
    seed,
    cases,
    elapsedMs,
    slowestCaseMs: slowest,
    slowestCase,
    stats,
    findings: [...findings.values()],
    heapGrowthBytes: m1.heapUsed - m0.heapUsed,
    arrayBufferGrowthBytes: m1.arrayBuffers - m0.arrayBuffers,
  };
}

/** The input of one case, for a report written by another thread after a hang. */
export function caseInput(seed: number, campaign: Campaign, index: number): { what: string; input: Buffer } {
  const corpus = buildCorpus(seed);
  if (index <= -2) {
    const s = [...corpus.bolt, ...corpus.dubbo][-2 - index];
    return { what: `warm-up on ${s?.proto} seed "${s?.note}"`, input: s?.bytes ?? Buffer.alloc(0) };
  }
  return { what: `case ${index}`, input: generateCase(corpus, campaign, new Rng(caseSeed(seed, campaign, index))) };
}

export function formatFinding(f: Finding, campaign: Campaign, seed: number): string {
  return [
    `[${campaign}] ${f.kind} (${f.count} case${f.count === 1 ? '' : 's'}; first: case ${f.caseIndex}, FUZZ_SEED=0x${seed.toString(16)})`,
    `    ${f.detail}`,
    `    input:   ${f.inputHex}`,
    `    minimal: ${f.minimalHex}`,
    `    minimal: ${f.minimalDetail}`,
  ].join('\n');
}
