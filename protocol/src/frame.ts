// One entry point over both codecs: detect, measure, decode and rewrite whatever frame arrives.

import {
  BOLT_V1,
  BOLT_V2,
  BoltFrameHeader,
  type CrcPolicy,
  boltFrameLength,
  boltHeaderNeed,
  setBoltRequestId,
} from './bolt';
import {
  DUBBO_HEADER_LENGTH,
  DubboFrameHeader,
  type DubboRequestId,
  dubboFrameLength,
  setDubboRequestId,
} from './dubbo';
import { ProtocolError, hexByte } from './errors';
import { i32 } from './bytes';
import type { FrameKind, ProtocolName } from './types';

const DUBBO_MAGIC_HIGH = 0xda;

/** The protocol a stream speaks, from its first byte: 0x01/0x02 Bolt, 0xda Dubbo; null when unknown or empty. */
export function detectProtocol(buf: Buffer): ProtocolName | null {
  if (buf.length === 0) return null;
  const b = buf[0];
  if (b === BOLT_V1 || b === BOLT_V2) return 'bolt';
  if (b === DUBBO_MAGIC_HIGH && (buf.length < 2 || buf[1] === 0xbb)) return 'dubbo';
  return null;
}

/**
 * Bytes that must be present at `off` before the frame length is known (`avail` are there). Throws on a first
 * byte of no protocol. The answer never exceeds the shortest possible frame, so copying exactly that many
 * bytes never reaches into the next frame.
 */
export function headerNeed(buf: Buffer, off: number, avail: number): number {
  if (avail < 1) return 1;
  const b = buf[off];
  if (b === BOLT_V1 || b === BOLT_V2) return boltHeaderNeed(buf, off, avail);
  if (b === DUBBO_MAGIC_HIGH) return DUBBO_HEADER_LENGTH;
  throw new ProtocolError(
    'MESHPORT_BAD_MAGIC',
    `first byte 0x${hexByte(b)} is neither Bolt (0x01, 0x02) nor Dubbo (0xda)`,
    off,
  );
}

/** Total length of the frame at `off`; its fixed header (headerNeed bytes) must be available. */
export function frameLength(buf: Buffer, off: number): number {
  return buf[off] === DUBBO_MAGIC_HIGH ? dubboFrameLength(buf, off) : boltFrameLength(buf, off);
}

export type FrameHeader = BoltFrameHeader | DubboFrameHeader;

export interface DecodeOptions {
  /**
   * What to do with the CRC32 of a Bolt v2 frame that carries one: `check` reports it in `crc`, `reject` also throws
   * MESHPORT_BOLT_BAD_CRC when it does not match (what a proxy wants), `skip` leaves `crc` unset and saves the pass
   * over the frame.
   * @default 'check'
   */
  crc?: CrcPolicy;
}

/**
 * The header-only view of the frame at the start of `frame`: route key, id, kind, lengths. Reads no argument and
 * deserializes no body. Bytes after the frame are ignored; a frame shorter than its header declares is an error.
 */
export function decodeFrame(frame: Buffer, options?: DecodeOptions): FrameHeader {
  const first = frame[0];
  if (first === BOLT_V1 || first === BOLT_V2) return new BoltFrameHeader(frame, options?.crc ?? 'check');
  if (first === DUBBO_MAGIC_HIGH) return new DubboFrameHeader(frame);
  headerNeed(frame, 0, frame.length); // throws MESHPORT_BAD_MAGIC (or asks for a first byte)
  throw new ProtocolError('MESHPORT_FRAME_TRUNCATED', 'an empty input holds no frame', 0);
}

/**
 * Rewrites the request id of a whole frame in place. Bolt takes an int32 (a v2 CRC is recomputed); Dubbo an int64
 * as number, bigint or decimal string.
 */
export function setRequestId(frame: Buffer, id: number | DubboRequestId): void {
  const need = headerNeed(frame, 0, frame.length); // throws MESHPORT_BAD_MAGIC for no protocol
  if (frame.length < need) {
    throw new ProtocolError(
      'MESHPORT_FRAME_TRUNCATED',
      `a frame header needs ${need} bytes, got ${frame.length}`,
      frame.length,
    );
  }
  if (frame[0] === DUBBO_MAGIC_HIGH) {
    setDubboRequestId(frame, id);
    return;
  }
  if (typeof id !== 'number' || !Number.isInteger(id) || id < -0x80000000 || id > 0xffffffff) {
    throw new RangeError(`a Bolt request id is a 32-bit integer, got ${String(id)}`);
  }
  setBoltRequestId(frame, id);
}

/** Who a frame is for, read from as little as its fixed header: enough to answer it with an error of our own. */
export interface FrameIdentity {
  protocol: ProtocolName;
  requestId: number | string;
  /** True for requests that expect an answer (not oneway, not a response). */
  expectsResponse: boolean;
  /** Bolt: what an answer should copy. */
  boltVersion?: 1 | 2;
  ver1?: number;
  switchFlags?: number;
  codec?: number;
}

/**
 * Reads protocol, request id and kind from the first bytes of a frame, without validating the rest. Undefined when
 * too few bytes are there or the first byte is no protocol. For answering frames that failed to decode.
 */
export function peekFrameIdentity(head: Buffer): FrameIdentity | undefined {
  const b = head[0];
  if (b === DUBBO_MAGIC_HIGH) {
    if (head.length < 12) return undefined;
    const flag = head[2];
    const id = head.readBigInt64BE(4).toString();
    return { protocol: 'dubbo', requestId: id, expectsResponse: (flag & 0xe0) === 0xc0 };
  }
  if (b !== BOLT_V1 && b !== BOLT_V2) return undefined;
  const s = b === BOLT_V2 ? 1 : 0;
  if (head.length < 10 + s + s) return undefined;
  return {
    protocol: 'bolt',
    requestId: head.readInt32BE(5 + s),
    expectsResponse: head[1 + s] === 1,
    boltVersion: s ? 2 : 1,
    ver1: s ? head[1] : undefined,
    switchFlags: s ? head[11] : undefined,
    codec: head[9 + s],
  };
}

/**
 * Kind, status and a small request id of a whole frame from its fixed header alone, with no allocation: for a proxy
 * reading answers to ids it assigned itself. The header must already have been measured (e.g. by FrameSplitter).
 */
export const peek = {
  /** The frame's kind, or undefined for a Bolt cmdcode/type pair that means nothing. */
  kind(frame: Buffer): FrameKind | undefined {
    if (frame[0] === DUBBO_MAGIC_HIGH) {
      const flag = frame[2];
      if ((flag & 0x20) !== 0) return (flag & 0x80) !== 0 ? 'heartbeat' : 'heartbeat-ack';
      return (flag & 0x80) === 0 ? 'response' : (flag & 0x40) !== 0 ? 'request' : 'oneway';
    }
    const s = frame[0] === BOLT_V2 ? 1 : 0;
    const type = frame[1 + s];
    const cmd = (frame[2 + s] << 8) | frame[3 + s];
    if (cmd === 0) return type === 1 ? 'heartbeat' : type === 0 ? 'heartbeat-ack' : undefined;
    if (cmd === 1) return type === 1 ? 'request' : type === 2 ? 'oneway' : undefined;
    return cmd === 2 && type === 0 ? 'response' : undefined;
  },
  /** The request id when it fits in a signed 32-bit integer (always for Bolt); NaN for a larger Dubbo id. */
  smallRequestId(frame: Buffer): number {
    if (frame[0] === DUBBO_MAGIC_HIGH) {
      const hi = i32(frame, 4);
      const lo = i32(frame, 8);
      return (hi === 0 && lo >= 0) || (hi === -1 && lo < 0) ? lo : NaN;
    }
    return i32(frame, frame[0] === BOLT_V2 ? 6 : 5);
  },
  /** A response's status (Bolt respStatus, Dubbo status byte). */
  status(frame: Buffer): number {
    if (frame[0] === DUBBO_MAGIC_HIGH) return frame[3];
    return frame[0] === BOLT_V2 ? (frame[12] << 8) | frame[13] : (frame[10] << 8) | frame[11];
  },
};

/**
 * A frame's request id as two 32-bit words, kept before a rewrite for restoreRequestId: `high` is the upper half of
 * Dubbo's int64 (0 for Bolt), `low` its lower half or Bolt's id. Plain numbers: keeping a caller's id costs the proxy
 * no allocation per call (a Buffer copy of the bytes was two).
 */
export const savedId = {
  high(frame: Buffer): number {
    return frame[0] === DUBBO_MAGIC_HIGH ? i32(frame, 4) : 0;
  },
  low(frame: Buffer): number {
    return i32(frame, frame[0] === DUBBO_MAGIC_HIGH ? 8 : frame[0] === BOLT_V2 ? 6 : 5);
  },
};

/**
 * Writes back an id kept with savedId into a frame of the same protocol (e.g. the caller's id into the answer), with
 * no decimal string or BigInt for Dubbo's int64. A Bolt v2 CRC is recomputed.
 */
export function restoreRequestId(frame: Buffer, high: number, low: number): void {
  if (frame[0] === DUBBO_MAGIC_HIGH) {
    frame.writeInt32BE(high, 4);
    frame.writeInt32BE(low, 8);
  } else setRequestId(frame, low);
}
