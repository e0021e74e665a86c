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
import { DUBBO_HEADER_LENGTH, DubboFrameHeader, type DubboRequestId, dubboFrameLength, setDubboRequestId } from './dubbo';
import { ProtocolError, hexByte } from './errors';
import type { ProtocolName } from './types';

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
  throw new ProtocolError('MESHPORT_BAD_MAGIC', `first byte 0x${hexByte(b)} is neither Bolt (0x01, 0x02) nor Dubbo (0xda)`, off);
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
  if (frame[0] === DUBBO_MAGIC_HIGH) setDubboRequestId(frame, id);
  else if (frame[0] === BOLT_V1 || frame[0] === BOLT_V2) {
    if (typeof id !== 'number' || !Number.isInteger(id) || id < -0x80000000 || id > 0xffffffff) {
      throw new RangeError(`a Bolt request id is a 32-bit integer, got ${String(id)}`);
    }
    setBoltRequestId(frame, id);
  } else {
    throw new ProtocolError('MESHPORT_BAD_MAGIC', `first byte 0x${hexByte(frame[0])} is neither Bolt nor Dubbo`, 0);
  }
}
