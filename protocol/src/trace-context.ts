// What a request says beyond its route key, for metrics labels, access logs and spans only (routing never depends
// on it): the method a SofaRequest body names when the Bolt header does not, and the trace context the caller sent.
// Bounded reads of one whole frame: every length is checked against the bytes that are there, nothing deserializes
// the body, and anything unexpected is "not there" (undefined), never an error. packages/engine/native/
// trace_context.cc mirrors these functions; the engine's differential test holds the two to the same answers.

import { BOLT_V2, BoltCodec, SOFA_REQUEST_CLASS } from './bolt';
import { i16, i32, u16 } from './bytes';
import { type FrameHeader, decodeFrame } from './frame';
import { decodeCesu8, HessianStringReader } from './hessian';
import { DubboAttachmentScanner } from './hessian-skip';
import { StringInterner } from './intern';

/** The trace context a request carries, as sent; each value printable ASCII of at most MAX_TRACE_VALUE chars. */
export interface TraceContext {
  traceparent?: string;
  sofaTraceId?: string;
  sofaRpcId?: string;
}

/** Longest trace value kept: a traceparent is 55 characters, SOFA ids are shorter; longer values are ignored. */
export const MAX_TRACE_VALUE = 256;
/** Longest body method name read, in UTF-16 units; a longer one is not read (the label becomes `unknown`). */
export const MAX_BODY_METHOD = 1024;
/** Most class definitions a SofaRequest body may declare before its fields are read past. */
export const MAX_BODY_CLASSES = 256;
const MAX_DEPTH = 64;

const SOFA_CLASS = Buffer.from(SOFA_REQUEST_CLASS);
const KEY_TRACEPARENT = Buffer.from('traceparent');
const KEY_SOFA_TRACE_ID = Buffer.from('rpc_trace_context.sofaTraceId');
const KEY_SOFA_RPC_ID = Buffer.from('rpc_trace_context.sofaRpcId');
const KEY_TRACE_CONTEXT = Buffer.from('rpc_trace_context');
const KEY_NESTED_TRACE_ID = Buffer.from('sofaTraceId');
const KEY_NESTED_RPC_ID = Buffer.from('sofaRpcId');
const KEY_METHOD_NAME = Buffer.from('methodName');
const KEY_REQUEST_PROPS = Buffer.from('requestProps');

/** A trace value as kept: a string of 1 to MAX_TRACE_VALUE characters from space to tilde; else undefined. */
export function traceValue(s: string | null | undefined): string | undefined {
  if (!s || s.length > MAX_TRACE_VALUE) return undefined;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c > 0x7e) return undefined;
  }
  return s;
}

function bytesEqual(buf: Buffer, at: number, len: number, key: Buffer): boolean {
  if (len !== key.length) return false;
  for (let i = 0; i < len; i++) if (buf[at + i] !== key[i]) return false;
  return true;
}

/** The header of `frame` when it decodes as a request (two-way or oneway); a bad CRC is refused, as the engine does. */
function requestHeader(frame: Buffer, header?: FrameHeader): FrameHeader | undefined {
  let h = header;
  if (h === undefined) {
    try {
      h = decodeFrame(frame, { crc: 'reject' });
    } catch {
      return undefined;
    }
  }
  return h.kind === 'request' || h.kind === 'oneway' ? h : undefined;
}

/** Where a Bolt request's class name and header map lie (the frame decoded, so the lengths fit). */
function boltRanges(frame: Buffer): { classStart: number; classLen: number; headerStart: number; headerEnd: number } {
  const fixed = frame[0] === BOLT_V2 ? 24 : 22;
  const classLen = i16(frame, fixed - 8);
  const headerStart = fixed + classLen;
  return { classStart: fixed, classLen, headerStart, headerEnd: headerStart + i16(frame, fixed - 6) };
}

/** Whether the Bolt request's body is a hessian SofaRequest (class name and codec). */
function isSofaHessian(frame: Buffer, h: FrameHeader): boolean {
  if (h.protocol !== 'bolt' || h.codec !== BoltCodec.HESSIAN2) return false;
  const r = boltRanges(frame);
  return bytesEqual(frame, r.classStart, r.classLen, SOFA_CLASS);
}

/**
 * The method a SofaRequest body names, for a Bolt request (or oneway) whose header has no `sofa_head_method_name`:
 * sofa-bolt-node in hessian2 mode sends only `service`. Reads the body's class definition and the first object's
 * fields up to `methodName` (Hessian 3.1.3 draft grammar). Undefined when the header names the method, the frame is
 * no such request, or the body is anything but expected. `header`: the frame's decodeFrame, when already made.
 */
export function boltBodyMethod(frame: Buffer, header?: FrameHeader): string | undefined {
  const h = requestHeader(frame, header);
  if (h === undefined || h.protocol !== 'bolt' || h.method !== undefined || !isSofaHessian(frame, h)) return undefined;
  return body.read(frame, h.bodyOffset, h.bodyOffset + h.bodyLength, false) ? body.method : undefined;
}

/**
 * The trace context a request carries: W3C `traceparent` and SOFA's `rpc_trace_context.sofaTraceId` /
 * `sofaRpcId`, from the Bolt header map (Java SOFA clients, sofa-bolt-node's protobuf mode), else from the
 * SofaRequest body's requestProps (flattened keys, or a nested `rpc_trace_context` map), or from a Dubbo request's
 * attachments. The SOFA pair comes from one place (the header's when it has a sofaTraceId). Undefined when the
 * request carries neither a traceparent nor a sofaTraceId, and for anything that is not a request.
 */
export function readTraceContext(frame: Buffer, header?: FrameHeader): TraceContext | undefined {
  const h = requestHeader(frame, header);
  if (h === undefined) return undefined;
  let traceparent: string | undefined;
  let sofaTraceId: string | undefined;
  let sofaRpcId: string | undefined;
  if (h.protocol === 'bolt') {
    const r = boltRanges(frame);
    scanTraceHeaders(frame, r.headerStart, r.headerEnd);
    traceparent = headerTrace.traceparent;
    sofaTraceId = headerTrace.sofaTraceId;
    sofaRpcId = sofaTraceId === undefined ? undefined : headerTrace.sofaRpcId;
    if (
      (traceparent === undefined || sofaTraceId === undefined) &&
      isSofaHessian(frame, h) &&
      body.read(frame, h.bodyOffset, h.bodyOffset + h.bodyLength, true)
    ) {
      traceparent ??= body.traceparent;
      if (sofaTraceId === undefined) {
        sofaTraceId = body.sofaTraceId;
        sofaRpcId = body.sofaRpcId;
      }
    }
  } else {
    if (h.serializationId !== 2) return undefined;
    const end = h.frameLength;
    reader.reset(frame, 16, end);
    try {
      for (let i = 0; i < 4; i++) reader.readString();
    } catch {
      return undefined;
    }
    traceScanner.scan(frame, reader.pos, end);
    if (traceScanner.error !== undefined) return undefined;
    traceparent = traceValue(traceScanner.traceparent);
    sofaTraceId = traceValue(traceScanner.sofaTraceId);
    sofaRpcId = traceValue(traceScanner.sofaRpcId);
  }
  if (sofaTraceId === undefined) sofaRpcId = undefined;
  if (traceparent === undefined && sofaTraceId === undefined) return undefined;
  const out: TraceContext = {};
  if (traceparent !== undefined) out.traceparent = traceparent;
  if (sofaTraceId !== undefined) out.sofaTraceId = sofaTraceId;
  if (sofaRpcId !== undefined) out.sofaRpcId = sofaRpcId;
  return out;
}

const reader = new HessianStringReader();
const traceScanner = new DubboAttachmentScanner({ traceKeys: true });

const headerTrace: TraceContext = {};

/** The trace keys of a Bolt header map (last entry wins, a null or unusable value unsets), into headerTrace. */
function scanTraceHeaders(buf: Buffer, start: number, end: number): void {
  headerTrace.traceparent = headerTrace.sofaTraceId = headerTrace.sofaRpcId = undefined;
  let p = start;
  while (p + 4 <= end) {
    const keyLen = i32(buf, p);
    if (keyLen < -1 || p + 4 + keyLen > end) return;
    const keyStart = p + 4;
    p = keyStart + Math.max(keyLen, 0);
    if (p + 4 > end) return;
    const valLen = i32(buf, p);
    if (valLen < -1 || p + 4 + valLen > end) return;
    const valStart = p + 4;
    p = valStart + Math.max(valLen, 0);
    let slot: 'traceparent' | 'sofaTraceId' | 'sofaRpcId';
    if (bytesEqual(buf, keyStart, keyLen, KEY_TRACEPARENT)) slot = 'traceparent';
    else if (bytesEqual(buf, keyStart, keyLen, KEY_SOFA_TRACE_ID)) slot = 'sofaTraceId';
    else if (bytesEqual(buf, keyStart, keyLen, KEY_SOFA_RPC_ID)) slot = 'sofaRpcId';
    else continue;
    headerTrace[slot] = asciiValue(buf, valStart, valLen);
  }
}

/** Header bytes as a trace value: printable ASCII (so UTF-8 decoding changes nothing), 1..MAX_TRACE_VALUE long. */
function asciiValue(buf: Buffer, start: number, len: number): string | undefined {
  if (len <= 0 || len > MAX_TRACE_VALUE) return undefined;
  for (let i = start; i < start + len; i++) if (buf[i] < 0x20 || buf[i] > 0x7e) return undefined;
  return buf.toString('latin1', start, start + len);
}

// ---------------------------------------------------------------------------------------------------------------
// The SofaRequest body, Hessian 3.1.3 draft grammar (what sofa-bolt-node writes and hessian.js-1 reads):
//   class-def  'O' int(name length in chars) name  int(field count) string(field name)*
//   instance   'o' int(class index) value*
//   string     [x00-x1f] chars | 'S' u16 chars | 's' u16 chars string   (lengths count UTF-16 units, bytes CESU-8)
//   binary     [x20-x2f] bytes | 'B' u16 bytes | 'b' u16 bytes binary
//   list       'V' type? ('n' u8 | 'l' i32)? value* 'z' | 'v' int(type ref) int(length) value*
//   map        'M' type? (value value)* 'z' | 'H' (value value)* 'z';  type: 't' u16 bytes | 'T' int | 'u' int
//   refs       'R' i32 | 'J' u8 | 'K' u16; ints, longs, doubles, 'd' date, 'N', 'T', 'F' of fixed sizes
// Positions travel as return values, negative once the read has failed.

/** Size of every value whose first byte fixes it; 0 for the others. */
const DRAFT_FIXED = (() => {
  const t = new Uint8Array(256);
  const set = (from: number, to: number, size: number) => t.fill(size, from, to + 1);
  set(0x80, 0xbf, 1); // int, one byte
  set(0xc0, 0xcf, 2);
  set(0xd0, 0xd7, 3);
  set(0x49, 0x49, 5); // 'I'
  set(0xd8, 0xef, 1); // long, one byte
  set(0xf0, 0xff, 2);
  set(0x38, 0x3f, 3);
  set(0x77, 0x77, 5); // long as int32
  set(0x4c, 0x4c, 9); // 'L'
  set(0x44, 0x44, 9); // 'D'
  set(0x67, 0x68, 1); // double 0.0, 1.0
  set(0x69, 0x69, 2); // double from a byte
  set(0x6a, 0x6a, 3); // double from a short
  set(0x6b, 0x6b, 5); // double from a float
  set(0x64, 0x64, 9); // 'd' date
  set(0x52, 0x52, 5); // 'R' ref
  set(0x4a, 0x4a, 2); // 'J' ref, one byte
  set(0x4b, 0x4b, 3); // 'K' ref, two bytes
  set(0x4e, 0x4e, 1); // 'N'
  set(0x46, 0x46, 1); // 'F'
  set(0x54, 0x54, 1); // 'T'
  for (let c = 0x20; c <= 0x2f; c++) t[c] = 1 + c - 0x20; // short binary
  return t;
})();

/** One reusable reader of SofaRequest bodies: results in its fields, no allocation but the strings it returns. */
class SofaBodyReader {
  method: string | undefined;
  traceparent: string | undefined;
  sofaTraceId: string | undefined;
  sofaRpcId: string | undefined;
  private nestedTraceId: string | undefined;
  private nestedRpcId: string | undefined;

  private buf: Buffer = Buffer.alloc(0);
  private end = 0;
  private int = 0;
  private classCount = 0;
  private readonly classFields = new Int32Array(MAX_BODY_CLASSES);
  // Which field each of the first class's fields is, kept for its instance.
  private methodField = -1;
  private propsField = -1;

  /**
   * Reads the body [start, end): the method (`trace` false: stops after it) or the trace keys of requestProps
   * (`trace` true). False when the body is not a SofaRequest object as expected.
   */
  read(buf: Buffer, start: number, end: number, trace: boolean): boolean {
    this.buf = buf;
    this.end = end;
    this.method = this.traceparent = this.sofaTraceId = this.sofaRpcId = undefined;
    this.nestedTraceId = this.nestedRpcId = undefined;
    this.classCount = 0;
    this.methodField = this.propsField = -1;
    let p = start;
    if (p >= end || buf[p] !== 0x4f) return false;
    p = this.classDefinition(p, true);
    if (p < 0 || p >= end || buf[p] !== 0x6f) return false;
    p = this.readInt(p + 1);
    if (p < 0 || this.int !== 0) return false;
    const fields = this.classFields[0];
    for (let i = 0; i < fields && p >= 0; i++) {
      if (i === this.methodField && !trace) {
        p = this.readMethod(p);
        return p >= 0 && this.method !== undefined;
      }
      if (i === this.propsField && trace) {
        p = this.readProps(p);
        if (p < 0) return false;
        if (this.sofaTraceId === undefined) {
          this.sofaTraceId = this.nestedTraceId;
          this.sofaRpcId = this.nestedRpcId;
        }
        return true;
      }
      p = this.skipValue(p, 1);
    }
    return false;
  }

  /** 'O' at p. `first`: the SofaRequest definition itself, whose field names are looked at. */
  private classDefinition(p: number, first: boolean): number {
    const { buf } = this;
    p = this.readInt(p + 1);
    if (p < 0) return p;
    const nameLen = this.int;
    if (nameLen < 0) return -1;
    const nameStart = p;
    if (first && nameLen === SOFA_CLASS.length && p + nameLen <= this.end && bytesEqual(buf, p, nameLen, SOFA_CLASS)) {
      p += nameLen; // the expected name, ASCII: as many bytes as units
    } else {
      p = this.skipUnits(p, nameLen);
      if (p < 0) return p;
      if (first && !bytesEqual(buf, nameStart, p - nameStart, SOFA_CLASS)) return -1;
    }
    p = this.readInt(p);
    if (p < 0) return p;
    const fields = this.int;
    if (fields < 0 || this.classCount >= MAX_BODY_CLASSES) return -1;
    for (let i = 0; i < fields && p >= 0; i++) {
      if (first && p < this.end && buf[p] < 0x20) {
        const n = buf[p];
        if (p + 1 + n <= this.end) {
          if (bytesEqual(buf, p + 1, n, KEY_METHOD_NAME) && this.methodField < 0) this.methodField = i;
          else if (bytesEqual(buf, p + 1, n, KEY_REQUEST_PROPS) && this.propsField < 0) this.propsField = i;
        }
      }
      p = this.skipString(p);
    }
    if (p < 0) return p;
    this.classFields[this.classCount++] = fields;
    return p;
  }

  /** The methodName value at p: a string of at most MAX_BODY_METHOD units sets `method`. */
  private readMethod(p: number): number {
    const { buf, end } = this;
    if (p >= end) return -1;
    const c = buf[p];
    if (c !== 0x53 && c !== 0x73 && c >= 0x20) return -1;
    const after = this.skipString(p);
    if (after < 0) return after;
    this.method = this.stringOf(p, after, MAX_BODY_METHOD);
    return after;
  }

  /** The whole string [p, after), already walked, as a JS string; undefined past `maxUnits` units or when empty. */
  private stringOf(p: number, after: number, maxUnits: number): string | undefined {
    const { buf } = this;
    // One final chunk (the usual method name): interned, so a method seen before costs no new string.
    if (buf[p] !== 0x73) {
      const start = buf[p] < 0x20 ? p + 1 : p + 3;
      const units = buf[p] < 0x20 ? buf[p] : u16(buf, p + 1);
      if (units > maxUnits) return undefined;
      return units === 0 ? undefined : bodyStrings.get(buf, start, after);
    }
    let out = '';
    let units = 0;
    for (;;) {
      const c = buf[p];
      const n = c < 0x20 ? c : u16(buf, p + 1);
      const start = c < 0x20 ? p + 1 : p + 3;
      units += n;
      if (units > maxUnits) return undefined;
      const stop = this.skipUnits(start, n);
      out += decodeCesu8(buf, start, stop);
      if (c !== 0x73 || stop >= after) break;
      p = stop;
    }
    return out === '' ? undefined : out;
  }

  /** The requestProps value at p: its trace keys, when it is a map. */
  private readProps(p: number): number {
    const { buf, end } = this;
    if (p >= end) return -1;
    const c = buf[p];
    if (c !== 0x4d && c !== 0x48) return this.skipValue(p, 1);
    p = c === 0x4d ? this.skipType(p + 1) : p + 1;
    for (;;) {
      if (p < 0) return p;
      if (p >= end) return -1;
      if (buf[p] === 0x7a) return p + 1;
      const k = buf[p];
      const keyLen = k < 0x20 && p + 1 + k <= end ? k : -1;
      const keyAt = p + 1;
      p = this.skipValue(p, 2);
      if (p < 0) return p;
      if (
        keyLen > 0 &&
        bytesEqual(buf, keyAt, keyLen, KEY_TRACE_CONTEXT) &&
        p < end &&
        (buf[p] === 0x4d || buf[p] === 0x48)
      ) {
        p = this.readNested(p);
        continue;
      }
      const slot =
        keyLen <= 0
          ? 0
          : bytesEqual(buf, keyAt, keyLen, KEY_TRACEPARENT)
            ? 1
            : bytesEqual(buf, keyAt, keyLen, KEY_SOFA_TRACE_ID)
              ? 2
              : bytesEqual(buf, keyAt, keyLen, KEY_SOFA_RPC_ID)
                ? 3
                : 0;
      const valueAt = p;
      p = this.skipValue(p, 2);
      if (p < 0 || slot === 0) continue;
      const value = this.traceString(valueAt, p);
      if (slot === 1) this.traceparent = value;
      else if (slot === 2) this.sofaTraceId = value;
      else this.sofaRpcId = value;
    }
  }

  /** The nested `rpc_trace_context` map at p (M or H): its sofaTraceId and sofaRpcId. */
  private readNested(p: number): number {
    const { buf, end } = this;
    p = buf[p] === 0x4d ? this.skipType(p + 1) : p + 1;
    for (;;) {
      if (p < 0) return p;
      if (p >= end) return -1;
      if (buf[p] === 0x7a) return p + 1;
      const k = buf[p];
      const keyLen = k < 0x20 && p + 1 + k <= end ? k : -1;
      const keyAt = p + 1;
      p = this.skipValue(p, 3);
      if (p < 0) return p;
      const slot =
        keyLen <= 0
          ? 0
          : bytesEqual(buf, keyAt, keyLen, KEY_NESTED_TRACE_ID)
            ? 1
            : bytesEqual(buf, keyAt, keyLen, KEY_NESTED_RPC_ID)
              ? 2
              : 0;
      const valueAt = p;
      p = this.skipValue(p, 3);
      if (p < 0 || slot === 0) continue;
      const value = this.traceString(valueAt, p);
      if (slot === 1) this.nestedTraceId = value;
      else this.nestedRpcId = value;
    }
  }

  /** The value [p, after) as a trace value when it is a string; undefined otherwise. */
  private traceString(p: number, after: number): string | undefined {
    const c = this.buf[p];
    if (c !== 0x53 && c !== 0x73 && c >= 0x20) return undefined;
    return traceValue(this.stringOf(p, after, MAX_TRACE_VALUE));
  }

  private skipValue(p: number, depth: number): number {
    const { buf, end } = this;
    for (;;) {
      if (p >= end) return -1;
      const c = buf[p];
      const size = DRAFT_FIXED[c];
      if (size !== 0) return p + size <= end ? p + size : -1;
      if (c < 0x20 || c === 0x53 || c === 0x73) return this.skipString(p);
      switch (c) {
        case 0x42: // 'B' final binary chunk
        case 0x62: // 'b' non-final
          return this.skipBinary(p);
        case 0x4f: // 'O': a class definition, then the value it precedes
          p = this.classDefinition(p, false);
          if (p < 0) return p;
          continue;
        case 0x6f: {
          // 'o' int: an object of that class definition
          const q = this.readInt(p + 1);
          if (q < 0) return q;
          const ref = this.int;
          if (ref < 0 || ref >= this.classCount || depth >= MAX_DEPTH) return -1;
          return this.skipItems(q, this.classFields[ref], depth);
        }
        case 0x56: {
          // 'V' type? length? values 'z'
          if (depth >= MAX_DEPTH) return -1;
          let q = this.skipType(p + 1);
          if (q < 0 || q >= end) return -1;
          let length = -1;
          if (buf[q] === 0x6e) {
            if (q + 1 >= end) return -1;
            length = buf[q + 1];
            q += 2;
          } else if (buf[q] === 0x6c) {
            if (q + 4 >= end) return -1;
            length = i32(buf, q + 1);
            if (length < 0) return -1;
            q += 5;
          }
          if (length >= 0) {
            q = this.skipItems(q, length, depth);
            return q >= 0 && q < end && buf[q] === 0x7a ? q + 1 : -1;
          }
          return this.skipUntilEnd(q, depth, 1);
        }
        case 0x76: {
          // 'v' int(type ref) int(length) values
          if (depth >= MAX_DEPTH) return -1;
          let q = this.readInt(p + 1);
          if (q < 0) return q;
          q = this.readInt(q);
          if (q < 0 || this.int < 0) return -1;
          return this.skipItems(q, this.int, depth);
        }
        case 0x4d: {
          // 'M' type? (key value)* 'z'
          if (depth >= MAX_DEPTH) return -1;
          const q = this.skipType(p + 1);
          return q < 0 ? q : this.skipUntilEnd(q, depth, 2);
        }
        case 0x48: // 'H' (key value)* 'z'
          if (depth >= MAX_DEPTH) return -1;
          return this.skipUntilEnd(p + 1, depth, 2);
        default:
          return -1;
      }
    }
  }

  /** `count` values one level down. Each takes a byte at least, so a huge count ends at the end of the body. */
  private skipItems(p: number, count: number, depth: number): number {
    for (let i = 0; i < count && p >= 0; i++) p = this.skipValue(p, depth + 1);
    return p;
  }

  /** Values (`per` at a time: 1 a list's, 2 a map's entries) up to 'z'. */
  private skipUntilEnd(p: number, depth: number, per: number): number {
    const { buf, end } = this;
    for (;;) {
      if (p < 0) return p;
      if (p >= end) return -1;
      if (buf[p] === 0x7a) return p + 1;
      p = this.skipValue(p, depth + 1);
      if (per === 2 && p >= 0) p = this.skipValue(p, depth + 1);
    }
  }

  /** An optional type after 'V' or 'M': 't' u16 bytes, or 'T'/'u' int (a type reference). */
  private skipType(p: number): number {
    const { buf, end } = this;
    if (p >= end) return -1;
    const c = buf[p];
    if (c === 0x74) {
      if (p + 2 >= end) return -1;
      const q = p + 3 + u16(buf, p + 1);
      return q <= end ? q : -1;
    }
    if (c === 0x54 || c === 0x75) return this.readInt(p + 1);
    return p;
  }

  private skipBinary(p: number): number {
    const { buf, end } = this;
    for (;;) {
      if (p >= end) return -1;
      const c = buf[p];
      let next: number;
      if (c === 0x42 || c === 0x62) {
        if (p + 2 >= end) return -1;
        next = p + 3 + u16(buf, p + 1);
      } else if (c >= 0x20 && c <= 0x2f) next = p + 1 + c - 0x20;
      else return -1;
      if (next > end) return -1;
      if (c !== 0x62) return next;
      p = next;
    }
  }

  /** A string in any form at p: 's' chunks up to a short or 'S' one. */
  private skipString(p: number): number {
    const { buf, end } = this;
    for (;;) {
      if (p >= end) return -1;
      const c = buf[p];
      let units: number;
      let start: number;
      if (c < 0x20) {
        units = c;
        start = p + 1;
      } else if (c === 0x53 || c === 0x73) {
        if (p + 2 >= end) return -1;
        units = u16(buf, p + 1);
        start = p + 3;
      } else return -1;
      p = this.skipUnits(start, units);
      if (p < 0 || c !== 0x73) return p;
    }
  }

  /** Past `units` UTF-16 units of CESU-8 (a 4-byte sequence counts two), as the leading-strings reader walks them. */
  private skipUnits(p: number, units: number): number {
    const { buf, end } = this;
    for (let n = 0; n < units; n++) {
      if (p >= end) return -1;
      const b = buf[p];
      if (b < 0x80) p += 1;
      else if (b >= 0xc0 && b < 0xe0) p += 2;
      else if (b >= 0xe0 && b < 0xf0) p += 3;
      else if (b >= 0xf0 && b < 0xf8) {
        p += 4;
        n++;
      } else return -1;
    }
    return p <= end ? p : -1;
  }

  private readInt(p: number): number {
    const { buf, end } = this;
    if (p >= end) return -1;
    const c = buf[p];
    if (c >= 0x80 && c <= 0xbf) {
      this.int = c - 0x90;
      return p + 1;
    }
    if (c >= 0xc0 && c <= 0xcf) {
      if (p + 1 >= end) return -1;
      this.int = (c - 0xc8) * 256 + buf[p + 1];
      return p + 2;
    }
    if (c >= 0xd0 && c <= 0xd7) {
      if (p + 2 >= end) return -1;
      this.int = (c - 0xd4) * 65536 + buf[p + 1] * 256 + buf[p + 2];
      return p + 3;
    }
    if (c === 0x49) {
      if (p + 4 >= end) return -1;
      this.int = i32(buf, p + 1);
      return p + 5;
    }
    return -1;
  }
}

const body = new SofaBodyReader();
const bodyStrings = new StringInterner(1024, decodeCesu8);
