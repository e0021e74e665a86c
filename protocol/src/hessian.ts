// The slice of Hessian a proxy needs without a Hessian library: strings, read and written, in both grammars.

import { ProtocolError } from './errors';
import { StringInterner } from './intern';

/**
 * A hessian string: length counts UTF-16 units, bytes are CESU-8. Hessian 2.0 (Dubbo) has medium strings
 * (0x30-0x33) and `R` for non-final chunks; the 3.1.3 draft (SOFA bodies) has neither and uses `s`.
 */
export function hessianString(s: string, grammar: 'draft' | '2.0' = '2.0'): Buffer {
  const parts: Buffer[] = [];
  let i = 0;
  do {
    const n = Math.min(s.length - i, 0xffff);
    const chunk = cesu8(s.slice(i, i + n));
    i += n;
    const final = i >= s.length;
    let head: Buffer;
    if (final && n < 32) head = Buffer.from([n]);
    else if (final && n < 1024 && grammar === '2.0') head = Buffer.from([0x30 + (n >> 8), n & 0xff]);
    else head = Buffer.from([final ? 0x53 : grammar === '2.0' ? 0x52 : 0x73, n >> 8, n & 0xff]);
    parts.push(head, chunk);
  } while (i < s.length);
  return Buffer.concat(parts);
}

/** UTF-16 units to CESU-8: like UTF-8, but a surrogate pair is two 3-byte sequences, as Java writes it. */
export function cesu8(s: string): Buffer {
  const out = Buffer.alloc(s.length * 3);
  let p = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) out[p++] = c;
    else if (c < 0x800) {
      out[p++] = 0xc0 | (c >> 6);
      out[p++] = 0x80 | (c & 0x3f);
    } else {
      out[p++] = 0xe0 | (c >> 12);
      out[p++] = 0x80 | ((c >> 6) & 0x3f);
      out[p++] = 0x80 | (c & 0x3f);
    }
  }
  return out.subarray(0, p);
}

/** CESU-8 bytes to a JS string (one UTF-16 unit per 1-, 2- or 3-byte sequence; 4-byte UTF-8 tolerated). */
export function decodeCesu8(buf: Buffer, start: number, end: number): string {
  let ascii = true;
  for (let i = start; i < end; i++) {
    if (buf[i] >= 0x80) {
      ascii = false;
      break;
    }
  }
  if (ascii) return buf.toString('latin1', start, end);
  const units: number[] = [];
  let p = start;
  while (p < end) {
    const b = buf[p];
    if (b < 0x80) {
      units.push(b);
      p += 1;
    } else if (b < 0xe0) {
      units.push(((b & 0x1f) << 6) | (buf[p + 1] & 0x3f));
      p += 2;
    } else if (b < 0xf0) {
      units.push(((b & 0x0f) << 12) | ((buf[p + 1] & 0x3f) << 6) | (buf[p + 2] & 0x3f));
      p += 3;
    } else {
      const cp = ((b & 0x07) << 18) | ((buf[p + 1] & 0x3f) << 12) | ((buf[p + 2] & 0x3f) << 6) | (buf[p + 3] & 0x3f);
      units.push(0xd800 + ((cp - 0x10000) >> 10), 0xdc00 + ((cp - 0x10000) & 0x3ff));
      p += 4;
    }
  }
  let out = '';
  for (let i = 0; i < units.length; i += 8192) out += String.fromCharCode(...units.slice(i, i + 8192));
  return out;
}

const interner = new StringInterner(4096, decodeCesu8);

/** ASCII bytes as text; any other byte range as '' (the fast path's "not for me"). */
function asciiOrEmpty(buf: Buffer, start: number, end: number): string {
  for (let i = start; i < end; i++) if (buf[i] >= 0x80) return '';
  return buf.toString('latin1', start, end);
}

const asciiInterner = new StringInterner(4096, asciiOrEmpty);

/**
 * Reads consecutive Hessian 2.0 strings (or nulls) from a body without a Hessian library, for the Dubbo route key.
 * One instance is reused per decode: the reader holds a position, not a result object per string.
 */
export class HessianStringReader {
  buf: Buffer = Buffer.alloc(0);
  pos = 0;
  end = 0;

  reset(buf: Buffer, pos: number, end: number): void {
    this.buf = buf;
    this.pos = pos;
    this.end = end;
  }

  /** The next value, which must be a string or null. Single-chunk strings are interned. */
  readString(): string | null {
    const { buf, end } = this;
    const at = this.pos;
    // Fast path for what Dubbo's leading strings almost always are: one short (0x00-0x1f) or medium (0x30-0x33)
    // chunk of ASCII, whose byte length equals its unit count. The ASCII interner answers '' for any range that is
    // not pure ASCII, so a text of `units` characters proves the guess. Anything else takes the general loop below.
    if (at + 1 < end) {
      const c = buf[at];
      const isShort = c < 0x20;
      if (isShort || (c >= 0x30 && c <= 0x33)) {
        const start = isShort ? at + 1 : at + 2;
        const units = isShort ? c : ((c - 0x30) << 8) | buf[at + 1];
        if (start + units <= end) {
          const text = asciiInterner.get(buf, start, start + units);
          if (text.length === units) {
            this.pos = start + units;
            return text;
          }
        }
      }
    }
    const code = this.byteAt(at);
    if (code === 0x4e) {
      this.pos = at + 1;
      return null;
    }
    let out: string | undefined;
    for (;;) {
      const chunkAt = this.pos;
      const c = this.byteAt(chunkAt);
      let units: number;
      let final = true;
      if (c < 0x20) {
        units = c;
        this.pos = chunkAt + 1;
      } else if (c >= 0x30 && c <= 0x33) {
        units = ((c - 0x30) << 8) | this.byteAt(chunkAt + 1);
        this.pos = chunkAt + 2;
      } else if (c === 0x52 || c === 0x53) {
        units = (this.byteAt(chunkAt + 1) << 8) | this.byteAt(chunkAt + 2);
        this.pos = chunkAt + 3;
        final = c === 0x53;
      } else {
        throw new ProtocolError(
          'MESHPORT_DUBBO_BAD_BODY',
          `expected a hessian2 string, found code 0x${c.toString(16)}`,
          chunkAt,
        );
      }
      const start = this.pos;
      const stop = this.skipUnits(units);
      if (out === undefined && final) return interner.get(buf, start, stop);
      out = (out ?? '') + decodeCesu8(buf, start, stop);
      if (final) return out;
    }
  }

  private byteAt(p: number): number {
    if (p >= this.end) throw truncatedString(p);
    return this.buf[p];
  }

  /** Advances over `units` UTF-16 units of CESU-8 and returns the byte position after them. */
  private skipUnits(units: number): number {
    const { buf, end } = this;
    let p = this.pos;
    for (let n = 0; n < units; n++) {
      if (p >= end) throw truncatedString(end);
      const b = buf[p];
      if (b < 0x80) p += 1;
      else if (b >= 0xc0 && b < 0xe0) p += 2;
      else if (b >= 0xe0 && b < 0xf0) p += 3;
      else if (b >= 0xf0 && b < 0xf8) {
        p += 4;
        n++; // a 4-byte sequence is a surrogate pair: two units
      } else {
        throw new ProtocolError('MESHPORT_DUBBO_BAD_BODY', `byte 0x${b.toString(16)} cannot start a character`, p);
      }
    }
    if (p > end) throw truncatedString(end);
    this.pos = p;
    return p;
  }
}

function truncatedString(at: number): ProtocolError {
  return new ProtocolError('MESHPORT_DUBBO_BAD_BODY', 'hessian2 string runs past the end of the body', at);
}
