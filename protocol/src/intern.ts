// Byte-range -> string interning, so the hot path allocates no string for a service name it has seen before.

import { LRUCache } from 'lru-cache';

interface Interned {
  bytes: Buffer;
  text: string;
}

/** How a byte range becomes text on a cache miss. */
export type TextDecoderFn = (buf: Buffer, start: number, end: number) => string;

const utf8: TextDecoderFn = (buf, start, end) => buf.toString('utf8', start, end);

/**
 * A bounded cache keyed by a hash of the bytes; a hit is confirmed byte for byte, so a collision costs a decode,
 * never a wrong answer. Bounded because names come from the network and a hostile peer can send endless new ones.
 */
export class StringInterner {
  private readonly cache: LRUCache<number, Interned>;
  private readonly decode: TextDecoderFn;

  constructor(maxEntries = 4096, decode: TextDecoderFn = utf8) {
    this.cache = new LRUCache({ max: maxEntries });
    this.decode = decode;
  }

  get(buf: Buffer, start: number, end: number): string {
    const len = end - start;
    if (len === 0) return '';
    // FNV-1a over the bytes, with the length folded in so equal prefixes of different lengths differ.
    let h = 0x811c9dc5 ^ len;
    for (let i = start; i < end; i++) h = Math.imul(h ^ buf[i], 0x01000193);
    const key = h >>> 0;
    const hit = this.cache.get(key);
    if (hit !== undefined && hit.bytes.length === len && buf.compare(hit.bytes, 0, len, start, end) === 0) {
      return hit.text;
    }
    const text = this.decode(buf, start, end);
    // Own copy: the frame's memory belongs to the socket and is reused.
    this.cache.set(key, { bytes: Buffer.from(buf.subarray(start, end)), text });
    return text;
  }
}
