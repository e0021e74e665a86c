// Byte-range -> string interning, so the hot path allocates no string for a service name it has seen before.

import { randomBytes } from 'node:crypto';

/** Longest byte range kept; real service and method names are far shorter. */
export const MAX_INTERNED_BYTES = 256;

// Per-process seed: which names share a slot cannot be worked out from outside.
const SEED = randomBytes(4).readUInt32LE(0);

interface Interned {
  bytes: Buffer;
  text: string;
}

/** How a byte range becomes text on a cache miss. */
export type TextDecoderFn = (buf: Buffer, start: number, end: number) => string;

const utf8: TextDecoderFn = (buf, start, end) => buf.toString('utf8', start, end);

/**
 * A bounded cache from bytes to the string they decode to: a direct-mapped table indexed by a hash of the bytes,
 * each hit confirmed byte for byte, so a collision costs a decode, never a wrong answer. Bounded because names come
 * from the network and a hostile peer can send endless new ones. Direct-mapped rather than LRU (lru-cache was
 * measured first): keeping recency order cost more than the whole hit here, and a hot name is seldom evicted from
 * 4096 slots.
 */
export class StringInterner {
  private readonly slots: (Interned | undefined)[];
  private readonly mask: number;
  private readonly decode: TextDecoderFn;

  /** `slots` is rounded up to a power of two. */
  constructor(slots = 4096, decode: TextDecoderFn = utf8) {
    const size = 2 ** Math.ceil(Math.log2(Math.max(slots, 1)));
    this.slots = new Array<Interned | undefined>(size).fill(undefined);
    this.mask = size - 1;
    this.decode = decode;
  }

  get(buf: Buffer, start: number, end: number): string {
    const len = end - start;
    if (len === 0) return '';
    // Long names are decoded every time: the table is bounded in bytes too (slots x MAX_INTERNED_BYTES).
    if (len > MAX_INTERNED_BYTES) return this.decode(buf, start, end);
    const slot = hashBytes(buf, start, end) & this.mask;
    const hit = this.slots[slot];
    if (hit !== undefined && sameBytes(hit.bytes, buf, start, len)) return hit.text;
    const text = this.decode(buf, start, end);
    // Own copy: the frame's memory belongs to the socket and is reused.
    this.slots[slot] = { bytes: Buffer.from(buf.subarray(start, end)), text };
    return text;
  }
}

/** FNV-1a over 32-bit words (then the tail bytes), with the length and seed folded in: a quarter of the multiplies. */
function hashBytes(buf: Buffer, start: number, end: number): number {
  let h = 0x811c9dc5 ^ SEED ^ (end - start);
  let i = start;
  for (; i + 4 <= end; i += 4) {
    h = Math.imul(h ^ (buf[i] | (buf[i + 1] << 8) | (buf[i + 2] << 16) | (buf[i + 3] << 24)), 0x01000193);
  }
  for (; i < end; i++) h = Math.imul(h ^ buf[i], 0x01000193);
  // Multiplying only carries upward: without this final mix (murmur3's) the low bits that pick a slot would depend
  // on little more than the low byte of each word.
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  return h >>> 0;
}

/** Byte equality as a JS loop: Buffer#compare with ranges spends ~75 ns on argument checks for short names. */
function sameBytes(cached: Buffer, buf: Buffer, start: number, len: number): boolean {
  if (cached.length !== len) return false;
  for (let i = 0; i < len; i++) if (cached[i] !== buf[start + i]) return false;
  return true;
}
