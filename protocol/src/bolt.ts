// Bolt v1/v2 (SOFABolt): frame measuring, header-only decode, request-id rewrite and the frames a proxy makes.

import { crc32 } from 'node:zlib';
import { ProtocolError, hexByte } from './errors';
import { i16, i32, u16 } from './bytes';
import { hessianString } from './hessian';
import { StringInterner } from './intern';
import type { FrameKind } from './types';

export const BOLT_V1 = 0x01;
export const BOLT_V2 = 0x02;

/** Bolt type byte. */
export const BoltType = { RESPONSE: 0x00, REQUEST: 0x01, ONEWAY: 0x02 } as const;
/** Bolt cmdcode. */
export const BoltCmdCode = { HEARTBEAT: 0, REQUEST: 1, RESPONSE: 2 } as const;
/** Bolt codec byte -> serialization name. */
export const BoltCodec = { HESSIAN2: 1, PROTOBUF: 11 } as const;

/** Bolt respStatus values (com.alipay.remoting.ResponseStatus). */
export const BoltStatus = {
  SUCCESS: 0x00,
  ERROR: 0x01,
  SERVER_EXCEPTION: 0x02,
  UNKNOWN: 0x03,
  SERVER_THREADPOOL_BUSY: 0x04,
  ERROR_COMM: 0x05,
  NO_PROCESSOR: 0x06,
  TIMEOUT: 0x07,
  CLIENT_SEND_ERROR: 0x08,
  CODEC_EXCEPTION: 0x09,
  CONNECTION_CLOSED: 0x10,
  SERVER_SERIAL_EXCEPTION: 0x11,
  SERVER_DESERIAL_EXCEPTION: 0x12,
} as const;

export const SOFA_REQUEST_CLASS = 'com.alipay.sofa.rpc.core.request.SofaRequest';
export const SOFA_RESPONSE_CLASS = 'com.alipay.sofa.rpc.core.response.SofaResponse';
export const RPC_SERVER_EXCEPTION_CLASS = 'com.alipay.remoting.rpc.exception.RpcServerException';

const serializationNames: Record<number, string> = { 1: 'hessian2', 11: 'protobuf' };

export function boltSerializationName(codec: number): string {
  return serializationNames[codec] ?? `codec-${codec}`;
}

/**
 * Where the fields sit. v2 inserts ver1 at offset 1 (everything after shifts by one) and a switch byte after codec
 * (everything after that shifts by one more).
 */
function layout(version: number, isResponse: boolean) {
  const s = version === BOLT_V2 ? 1 : 0;
  const tail = 10 + 2 * s; // first field after codec (and switch)
  return isResponse
    ? { status: tail, classLen: tail + 2, headerLen: tail + 4, contentLen: tail + 6, fixed: tail + 10 }
    : { status: -1, classLen: tail + 4, headerLen: tail + 6, contentLen: tail + 8, fixed: tail + 12 };
}
const LAYOUT = {
  v1req: layout(BOLT_V1, false),
  v1res: layout(BOLT_V1, true),
  v2req: layout(BOLT_V2, false),
  v2res: layout(BOLT_V2, true),
};

/** True when a v2 frame carries a trailing CRC32: ver1 == 2 and switch bit 0 (Java semantics). */
function hasCrc(buf: Buffer, off: number): boolean {
  return buf[off] === BOLT_V2 && buf[off + 1] === 2 && (buf[off + 11] & 0x01) === 1;
}

/**
 * Bytes needed before the frame length can be known, given the `avail` bytes at `off`. Never more than the
 * smallest Bolt frame, so a framer that copies exactly this many bytes never swallows the next frame.
 */
export function boltHeaderNeed(buf: Buffer, off: number, avail: number): number {
  const v2 = buf[off] === BOLT_V2;
  const typeAt = v2 ? 2 : 1;
  if (avail <= typeAt) return typeAt + 1;
  if (v2 && buf[off + 1] !== 1 && buf[off + 1] !== 2) {
    throw new ProtocolError('MESHPORT_BOLT_BAD_VERSION', `Bolt v2 ver1 byte ${buf[off + 1]} is not 1 or 2`, off + 1);
  }
  const type = buf[off + typeAt];
  if (type > BoltType.ONEWAY) {
    throw new ProtocolError(
      'MESHPORT_BOLT_BAD_TYPE',
      `Bolt type byte 0x${hexByte(type)} is not 0, 1 or 2`,
      off + typeAt,
    );
  }
  return fixedLayout(v2, type).fixed;
}

function fixedLayout(v2: boolean, type: number) {
  const isResponse = type === BoltType.RESPONSE;
  return v2 ? (isResponse ? LAYOUT.v2res : LAYOUT.v2req) : isResponse ? LAYOUT.v1res : LAYOUT.v1req;
}

/** Total frame length from a complete fixed header at `off` (boltHeaderNeed bytes must be available). */
export function boltFrameLength(buf: Buffer, off: number): number {
  const v2 = buf[off] === BOLT_V2;
  const l = fixedLayout(v2, buf[off + (v2 ? 2 : 1)]);
  const classLen = i16(buf, off + l.classLen);
  const headerLen = i16(buf, off + l.headerLen);
  const contentLen = i32(buf, off + l.contentLen);
  if (classLen < 0 || headerLen < 0 || contentLen < 0) {
    const at = classLen < 0 ? l.classLen : headerLen < 0 ? l.headerLen : l.contentLen;
    throw new ProtocolError('MESHPORT_BOLT_BAD_LENGTH', 'Bolt length field is negative', off + at);
  }
  return l.fixed + classLen + headerLen + contentLen + (v2 && hasCrc(buf, off) ? 4 : 0);
}

// Keys looked for in the header map, compared as bytes so no string is made for the keys we skip.
const KEY_SERVICE = Buffer.from('service');
const KEY_TARGET_SERVICE = Buffer.from('sofa_head_target_service');
const KEY_METHOD = Buffer.from('sofa_head_method_name');

const interner = new StringInterner(4096);

function keyIs(buf: Buffer, start: number, len: number, key: Buffer): boolean {
  if (len !== key.length) return false;
  // A JS loop: Buffer#compare with ranges costs ~75 ns of argument checks, several times this whole loop.
  for (let i = 0; i < len; i++) if (buf[start + i] !== key[i]) return false;
  return true;
}

export type CrcPolicy = 'check' | 'reject' | 'skip';

/** The header-only view of one Bolt frame. Header map strings are made only when `headers` is read. */
export class BoltFrameHeader {
  readonly protocol = 'bolt' as const;
  readonly protocolVersion: 1 | 2;
  readonly kind: FrameKind;
  readonly requestId: number;
  readonly service: string | undefined;
  readonly method: string | undefined;
  readonly serialization: string;
  readonly codec: number;
  readonly timeoutMs: number | undefined;
  readonly status: number | undefined;
  readonly frameLength: number;
  readonly bodyLength: number;
  /** Where the content starts in the frame. */
  readonly bodyOffset: number;
  readonly crc: 'ok' | 'bad' | undefined;
  // Hard-private, so JSON.stringify and spreading show the frame's fields and not the bytes behind them.
  readonly #frame: Buffer;
  readonly #classLen: number;
  readonly #headerStart: number;
  readonly #headerEnd: number;
  #headerMap: Record<string, string | null> | undefined;

  constructor(frame: Buffer, crcPolicy: CrcPolicy) {
    const v2 = frame[0] === BOLT_V2;
    const need = boltHeaderNeed(frame, 0, frame.length);
    if (frame.length < need) {
      throw new ProtocolError(
        'MESHPORT_FRAME_TRUNCATED',
        `Bolt header needs ${need} bytes, got ${frame.length}`,
        frame.length,
      );
    }
    const s = v2 ? 1 : 0;
    const type = frame[1 + s];
    const cmd = u16(frame, 2 + s);
    this.kind = boltKind(type, cmd, 2 + s);
    this.protocolVersion = v2 ? 2 : 1;
    this.requestId = i32(frame, 5 + s);
    this.codec = frame[9 + s];
    this.serialization = boltSerializationName(this.codec);
    const l = fixedLayout(v2, type);
    const isResponse = type === BoltType.RESPONSE;
    this.timeoutMs = isResponse ? undefined : i32(frame, 10 + 2 * s);
    this.status = isResponse ? u16(frame, l.status) : undefined;
    const classLen = i16(frame, l.classLen);
    const headerLen = i16(frame, l.headerLen);
    this.bodyLength = i32(frame, l.contentLen);
    if (classLen < 0 || headerLen < 0 || this.bodyLength < 0) boltFrameLength(frame, 0); // throws, naming the field
    const withCrc = v2 && hasCrc(frame, 0);
    this.frameLength = l.fixed + classLen + headerLen + this.bodyLength + (withCrc ? 4 : 0);
    if (frame.length < this.frameLength) {
      throw new ProtocolError(
        'MESHPORT_FRAME_TRUNCATED',
        `Bolt frame declares ${this.frameLength} bytes, got ${frame.length}`,
        frame.length,
      );
    }
    this.#frame = frame;
    this.#classLen = classLen;
    this.#headerStart = l.fixed + classLen;
    this.#headerEnd = this.#headerStart + headerLen;
    this.bodyOffset = this.#headerEnd;
    scanHeaderMap(frame, this.#headerStart, this.#headerEnd);
    this.service = scanned.service;
    this.method = scanned.method;
    this.crc = withCrc && crcPolicy !== 'skip' ? checkCrc(frame, this.frameLength) : undefined;
    if (this.crc === 'bad' && crcPolicy === 'reject') {
      const at = this.frameLength - 4;
      throw new ProtocolError('MESHPORT_BOLT_BAD_CRC', 'Bolt v2 CRC32 does not match the frame', at);
    }
  }

  /** The class name (SofaRequest, SofaResponse, ...), made on first use: routing never needs it. */
  get className(): string {
    const start = this.#headerStart - this.#classLen;
    return this.#classLen === 0 ? '' : interner.get(this.#frame, start, this.#headerStart);
  }

  /** Every header map entry, decoded on first use (the routing path never needs it). */
  get headers(): Record<string, string | null> {
    this.#headerMap ??= decodeHeaderMap(this.#frame, this.#headerStart, this.#headerEnd);
    return this.#headerMap;
  }

  toJSON(): object {
    return { ...this, className: this.className, headers: this.headers };
  }
}

function boltKind(type: number, cmd: number, cmdAt: number): FrameKind {
  if (cmd === BoltCmdCode.HEARTBEAT) {
    if (type === BoltType.REQUEST) return 'heartbeat';
    if (type === BoltType.RESPONSE) return 'heartbeat-ack';
  } else if (cmd === BoltCmdCode.REQUEST) {
    if (type === BoltType.REQUEST) return 'request';
    if (type === BoltType.ONEWAY) return 'oneway';
  } else if (cmd === BoltCmdCode.RESPONSE && type === BoltType.RESPONSE) {
    return 'response';
  }
  throw new ProtocolError('MESHPORT_BOLT_BAD_CMDCODE', `Bolt cmdcode ${cmd} does not fit type ${type}`, cmdAt);
}

function checkCrc(frame: Buffer, frameLength: number): 'ok' | 'bad' {
  const expected = frame.readInt32BE(frameLength - 4);
  return (crc32(frame.subarray(0, frameLength - 4)) | 0) === expected ? 'ok' : 'bad';
}

/** What the last scanHeaderMap found: module state, so the per-frame scan allocates no result object. */
const scanned: { service: string | undefined; method: string | undefined } = { service: undefined, method: undefined };

/**
 * Walks `[i32 keyLen][key][i32 valLen][val]...` checking every length, and leaves the routing values in `scanned`.
 * Only the values we route on become strings, through the interner.
 */
function scanHeaderMap(buf: Buffer, start: number, end: number): void {
  let service: string | undefined;
  let target: string | undefined;
  let method: string | undefined;
  let p = start;
  while (p < end) {
    const keyLen = readLen(buf, p, end);
    p += 4;
    const keyStart = p;
    p += Math.max(keyLen, 0);
    const valLen = readLen(buf, p, end);
    p += 4;
    const valStart = p;
    p += Math.max(valLen, 0);
    if (keyLen <= 0) continue;
    // A repeated key: the last one wins, as in the decoded `headers` map; a null value unsets it.
    const value = valLen < 0 ? undefined : valStart;
    if (keyIs(buf, keyStart, keyLen, KEY_SERVICE))
      service = value === undefined ? undefined : interner.get(buf, value, p);
    else if (keyIs(buf, keyStart, keyLen, KEY_TARGET_SERVICE))
      target = value === undefined ? undefined : interner.get(buf, value, p);
    else if (keyIs(buf, keyStart, keyLen, KEY_METHOD))
      method = value === undefined ? undefined : interner.get(buf, value, p);
  }
  scanned.service = service ?? target;
  scanned.method = method;
}

/** Reads one i32 length of the header map and checks that it and its bytes fit before `end`. */
function readLen(buf: Buffer, p: number, end: number): number {
  if (p + 4 > end) {
    throw new ProtocolError('MESHPORT_BOLT_BAD_HEADER_MAP', 'Bolt header map ends inside a length field', p);
  }
  const len = i32(buf, p);
  if (len < -1 || p + 4 + len > end) {
    throw new ProtocolError('MESHPORT_BOLT_BAD_HEADER_MAP', `Bolt header map length ${len} does not fit`, p);
  }
  return len;
}

function decodeHeaderMap(buf: Buffer, start: number, end: number): Record<string, string | null> {
  const map: Record<string, string | null> = Object.create(null);
  let p = start;
  while (p < end) {
    const keyLen = readLen(buf, p, end);
    const key = keyLen < 0 ? 'null' : buf.toString('utf8', p + 4, p + 4 + keyLen);
    p += 4 + Math.max(keyLen, 0);
    const valLen = readLen(buf, p, end);
    map[key] = valLen < 0 ? null : buf.toString('utf8', p + 4, p + 4 + valLen);
    p += 4 + Math.max(valLen, 0);
  }
  return map;
}

/** Rewrites the request id in place; a v2 frame with a CRC gets its CRC recomputed. The fixed header must be whole. */
export function setBoltRequestId(frame: Buffer, id: number): void {
  const v2 = frame[0] === BOLT_V2;
  if (v2 && hasCrc(frame, 0)) {
    // The CRC sits at the end of this frame, which need not be the end of the buffer.
    const end = boltFrameLength(frame, 0) - 4;
    if (frame.length < end + 4) {
      throw new ProtocolError(
        'MESHPORT_FRAME_TRUNCATED',
        `Bolt frame declares ${end + 4} bytes, got ${frame.length}`,
        frame.length,
      );
    }
    frame.writeInt32BE(id | 0, 6);
    frame.writeInt32BE(crc32(frame.subarray(0, end)) | 0, end);
    return;
  }
  frame.writeInt32BE(id | 0, v2 ? 6 : 5);
}

/** What a proxy-made Bolt frame copies from the frame it answers: version, ver1, codec and CRC switch. */
export interface BoltFrameOptions {
  /** @default 1 */
  protocolVersion?: 1 | 2;
  /** v2 only: 1 plain, 2 CRC capable. @default 1 */
  ver1?: 1 | 2;
  /** v2 only: the switch byte; bit 0 asks for a CRC when ver1 is 2. @default 0 */
  switchFlags?: number;
  /** @default 1 (hessian2) */
  codec?: number;
}

export interface BoltErrorResponseOptions extends BoltFrameOptions {
  requestId: number;
  status: number;
  message: string;
}

interface BoltFrameSpec extends BoltFrameOptions {
  type: number;
  cmd: number;
  requestId: number;
  timeoutOrStatus: number;
  className?: Buffer;
  content?: Buffer;
}

function encodeBoltFrame(spec: BoltFrameSpec): Buffer {
  const version = spec.protocolVersion === 2 ? BOLT_V2 : BOLT_V1;
  const v2 = version === BOLT_V2;
  const l = fixedLayout(v2, spec.type);
  const className = spec.className ?? Buffer.alloc(0);
  const content = spec.content ?? Buffer.alloc(0);
  const ver1 = spec.ver1 ?? 1;
  const switchFlags = spec.switchFlags ?? 0;
  const withCrc = v2 && ver1 === 2 && (switchFlags & 1) === 1;
  const bodyEnd = l.fixed + className.length + content.length;
  const frame = Buffer.alloc(bodyEnd + (withCrc ? 4 : 0));
  const s = v2 ? 1 : 0;
  frame[0] = version;
  if (v2) {
    frame[1] = ver1;
    frame[11] = switchFlags;
  }
  frame[1 + s] = spec.type;
  frame.writeUInt16BE(spec.cmd, 2 + s);
  frame[4 + s] = 1; // ver2
  frame.writeInt32BE(spec.requestId | 0, 5 + s);
  frame[9 + s] = spec.codec ?? BoltCodec.HESSIAN2;
  if (spec.type === BoltType.RESPONSE) frame.writeUInt16BE(spec.timeoutOrStatus, l.status);
  else frame.writeInt32BE(spec.timeoutOrStatus, 10 + 2 * s);
  frame.writeInt16BE(className.length, l.classLen);
  frame.writeInt16BE(0, l.headerLen);
  frame.writeInt32BE(content.length, l.contentLen);
  className.copy(frame, l.fixed);
  content.copy(frame, l.fixed + className.length);
  if (withCrc) frame.writeInt32BE(crc32(frame.subarray(0, bodyEnd)) | 0, bodyEnd);
  return frame;
}

/** A heartbeat as SOFA clients send it (cmdcode 0, type request, empty class, header and content). */
export function encodeBoltHeartbeat(
  requestId: number,
  options: BoltFrameOptions & { timeoutMs?: number } = {},
): Buffer {
  return encodeBoltFrame({
    ...options,
    type: BoltType.REQUEST,
    cmd: BoltCmdCode.HEARTBEAT,
    requestId,
    timeoutOrStatus: options.timeoutMs ?? 1000,
  });
}

/** The ack of a heartbeat (cmdcode 0, type response, status SUCCESS). */
export function encodeBoltHeartbeatAck(requestId: number, options: BoltFrameOptions = {}): Buffer {
  return encodeBoltFrame({
    ...options,
    type: BoltType.RESPONSE,
    cmd: BoltCmdCode.HEARTBEAT,
    requestId,
    timeoutOrStatus: BoltStatus.SUCCESS,
  });
}

const SOFA_RESPONSE_CLASS_BYTES = Buffer.from(SOFA_RESPONSE_CLASS);

/**
 * An error response a SOFA client can read: status as given, class SofaResponse, and for hessian2 a content of
 * RpcServerException{detailMessage} — what sofa-bolt-node and Java Bolt decode into the caller's error message.
 * Other codecs get the status alone (an empty content), which every Bolt client maps to an error too.
 */
export function encodeBoltErrorResponse(options: BoltErrorResponseOptions): Buffer {
  const codec = options.codec ?? BoltCodec.HESSIAN2;
  return encodeBoltFrame({
    ...options,
    codec,
    type: BoltType.RESPONSE,
    cmd: BoltCmdCode.RESPONSE,
    timeoutOrStatus: options.status,
    className: SOFA_RESPONSE_CLASS_BYTES,
    content: codec === BoltCodec.HESSIAN2 ? encodeRpcServerException(options.message) : undefined,
  });
}

/**
 * RpcServerException in the Hessian 3.1.3 draft grammar SOFA bodies use: `O` class definition (compact int length,
 * raw UTF-8 name, field count, field names), then `o` instance of definition 0 with the field values.
 */
function encodeRpcServerException(message: string): Buffer {
  const parts: Buffer[] = [];
  const byte = (b: number) => parts.push(Buffer.from([b]));
  const compactInt = (n: number) => {
    if (n >= -16 && n <= 47) byte(0x90 + n);
    else {
      const b = Buffer.alloc(5);
      b[0] = 0x49; // 'I'
      b.writeInt32BE(n, 1);
      parts.push(b);
    }
  };
  const str = (s: string) => parts.push(hessianString(s, 'draft'));
  byte(0x4f); // 'O'
  const name = Buffer.from(RPC_SERVER_EXCEPTION_CLASS);
  compactInt(name.length);
  parts.push(name);
  const fields = ['detailMessage', 'cause', 'stackTrace'];
  compactInt(fields.length);
  fields.forEach(str);
  byte(0x6f); // 'o'
  compactInt(0);
  str(message);
  byte(0x4e); // cause: null
  byte(0x4e); // stackTrace: null
  return Buffer.concat(parts);
}
