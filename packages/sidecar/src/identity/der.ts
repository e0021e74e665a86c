// The little ASN.1 DER that X.509 needs, written by hand so the development CA takes no npm dependency: a writer for
// the types a certificate is made of, and a reader that walks tag-length-value triples to pull fields back out.
//
// DER (X.690 §10) is BER with one encoding per value: definite lengths in the fewest bytes, integers without
// redundant leading bytes, bit strings without padding bits set. Every writer below produces that one encoding, so
// what we sign is byte for byte what a verifier re-encodes.

/** Universal and context tags used in certificates (X.690 §8; RFC 5280 §4.1). */
export const Tag = {
  BOOLEAN: 0x01,
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  NULL: 0x05,
  OID: 0x06,
  UTF8_STRING: 0x0c,
  PRINTABLE_STRING: 0x13,
  IA5_STRING: 0x16,
  UTC_TIME: 0x17,
  GENERALIZED_TIME: 0x18,
  /** Constructed (bit 6 set): SEQUENCE and SEQUENCE OF. */
  SEQUENCE: 0x30,
  /** Constructed: SET and SET OF. */
  SET: 0x31,
} as const;

/** One TLV: the tag byte, the length in the fewest bytes (short form below 128, else 0x80|n then n bytes), the value. */
export function tlv(tag: number, value: Uint8Array): Buffer {
  const n = value.length;
  let header: Buffer;
  if (n < 0x80) header = Buffer.from([tag, n]);
  else {
    const bytes: number[] = [];
    for (let rest = n; rest > 0; rest = Math.floor(rest / 256)) bytes.unshift(rest & 0xff);
    header = Buffer.from([tag, 0x80 | bytes.length, ...bytes]);
  }
  return Buffer.concat([header, value]);
}

export const sequence = (...items: Uint8Array[]): Buffer => tlv(Tag.SEQUENCE, Buffer.concat(items));

/**
 * SET OF: DER sorts the encoded elements (X.690 §11.6). Every set in a certificate we write has one element (one
 * attribute per relative distinguished name), but sorting keeps the writer right for more.
 */
export const set = (...items: Uint8Array[]): Buffer =>
  tlv(Tag.SET, Buffer.concat([...items].map((i) => Buffer.from(i)).sort(Buffer.compare)));

/** `[n]` EXPLICIT: a constructed context tag wrapping a whole TLV (tbsCertificate's version and extensions). */
export const explicit = (n: number, inner: Uint8Array): Buffer => tlv(0xa0 | n, inner);

/** `[n]` IMPLICIT of a primitive type: the context tag replaces the type's own (GeneralName's URI, the AKI's keyId). */
export const implicitPrimitive = (n: number, value: Uint8Array): Buffer => tlv(0x80 | n, value);

export const boolean = (value: boolean): Buffer => tlv(Tag.BOOLEAN, Buffer.from([value ? 0xff : 0x00]));

export const nullValue = (): Buffer => tlv(Tag.NULL, Buffer.alloc(0));

/** A small non-negative INTEGER (a certificate's version, a path length). */
export function smallInteger(value: number): Buffer {
  if (!Number.isInteger(value) || value < 0 || value > 0x7fffffff)
    throw new RangeError(`not a small integer: ${value}`);
  const bytes: number[] = [];
  for (let rest = value; rest > 0; rest = Math.floor(rest / 256)) bytes.unshift(rest & 0xff);
  // Positive integers whose top byte has its high bit set get a 0x00 first, else they would read as negative.
  if (bytes.length === 0 || bytes[0] & 0x80) bytes.unshift(0);
  return tlv(Tag.INTEGER, Buffer.from(bytes));
}

/**
 * An INTEGER from big-endian unsigned bytes (a serial number): leading zero bytes dropped, one 0x00 put back when the
 * first remaining byte would make it negative; both are what DER's "fewest bytes" requires.
 */
export function unsignedInteger(bytes: Uint8Array): Buffer {
  let start = 0;
  while (start < bytes.length - 1 && bytes[start] === 0) start++;
  const trimmed = Buffer.from(bytes.subarray(start));
  return tlv(Tag.INTEGER, trimmed[0] & 0x80 ? Buffer.concat([Buffer.from([0]), trimmed]) : trimmed);
}

/** OBJECT IDENTIFIER: the first two arcs as 40*a+b, then each arc in base 128, high bit set on all but its last byte. */
export function oid(dotted: string): Buffer {
  const arcs = dotted.split('.').map((a) => {
    if (!/^\d+$/.test(a)) throw new RangeError(`not an OID: ${dotted}`);
    return Number(a);
  });
  if (arcs.length < 2) throw new RangeError(`not an OID: ${dotted}`);
  const out: number[] = [];
  for (const arc of [arcs[0] * 40 + arcs[1], ...arcs.slice(2)]) {
    const base128: number[] = [arc & 0x7f];
    for (let rest = Math.floor(arc / 128); rest > 0; rest = Math.floor(rest / 128))
      base128.unshift((rest & 0x7f) | 0x80);
    out.push(...base128);
  }
  return tlv(Tag.OID, Buffer.from(out));
}

export const utf8String = (text: string): Buffer => tlv(Tag.UTF8_STRING, Buffer.from(text, 'utf8'));

export function ia5(text: string): Buffer {
  // IA5 is 7-bit ASCII; a URI SAN with anything else would be rejected by verifiers, so refuse to write it.
  if (!/^[\x20-\x7e]*$/.test(text)) throw new RangeError(`not IA5 (printable ASCII): ${text}`);
  return Buffer.from(text, 'ascii');
}

export const octetString = (value: Uint8Array): Buffer => tlv(Tag.OCTET_STRING, value);

/** BIT STRING of whole bytes (a signature, a public key): the first content byte counts the unused bits, here 0. */
export const bitStringBytes = (value: Uint8Array): Buffer =>
  tlv(Tag.BIT_STRING, Buffer.concat([Buffer.from([0]), value]));

/**
 * A named BIT STRING from the numbers of the bits set (keyUsage: bit 0 is digitalSignature, the high bit of the first
 * byte). DER drops trailing zero bits (X.690 §11.2.2), so the length and the unused-bit count follow the highest bit
 * set.
 */
export function namedBits(bits: number[]): Buffer {
  if (bits.length === 0) return tlv(Tag.BIT_STRING, Buffer.from([0]));
  const highest = Math.max(...bits);
  const bytes = Buffer.alloc(Math.floor(highest / 8) + 1);
  for (const b of bits) bytes[Math.floor(b / 8)] |= 0x80 >> (b % 8);
  const unused = 7 - (highest % 8);
  return tlv(Tag.BIT_STRING, Buffer.concat([Buffer.from([unused]), bytes]));
}

/**
 * RFC 5280 §4.1.2.5: dates through 2049 as UTCTime (YYMMDDHHMMSSZ), from 2050 on as GeneralizedTime
 * (YYYYMMDDHHMMSSZ); always UTC with seconds and no fraction.
 */
export function time(date: Date): Buffer {
  const iso = date.toISOString(); // 2026-12-06T15:39:10.123Z
  const digits = iso.slice(0, 19).replace(/[-:T]/g, ''); // 20261206153910
  const year = date.getUTCFullYear();
  if (year < 1950 || year > 9999) throw new RangeError(`a certificate date must fall in 1950-9999: ${iso}`);
  return year < 2050
    ? tlv(Tag.UTC_TIME, Buffer.from(`${digits.slice(2)}Z`))
    : tlv(Tag.GENERALIZED_TIME, Buffer.from(`${digits}Z`));
}

/** One parsed TLV: its tag, where its value lies in the input, and the whole encoding (for copying a field as is). */
export interface Element {
  tag: number;
  /** The value bytes (a view of the input). */
  value: Buffer;
  /** Tag, length and value (a view of the input). */
  raw: Buffer;
}

/** Reads the TLV starting at `offset`; throws on a length that runs past the input or is not definite. */
export function readElement(input: Buffer, offset = 0): Element & { end: number } {
  if (offset + 2 > input.length) throw new RangeError('DER: truncated header');
  const tag = input[offset];
  if ((tag & 0x1f) === 0x1f) throw new RangeError('DER: multi-byte tags are not used in certificates');
  let length = input[offset + 1];
  let at = offset + 2;
  if (length & 0x80) {
    const n = length & 0x7f;
    if (n === 0 || n > 4) throw new RangeError('DER: indefinite or oversized length');
    if (at + n > input.length) throw new RangeError('DER: truncated length');
    length = 0;
    for (let i = 0; i < n; i++) length = length * 256 + input[at + i];
    at += n;
  }
  const end = at + length;
  if (end > input.length) throw new RangeError('DER: value runs past the end');
  return { tag, value: input.subarray(at, end), raw: input.subarray(offset, end), end };
}

/** The elements inside a constructed value (a SEQUENCE's fields), in order. */
export function children(value: Buffer): Element[] {
  const out: Element[] = [];
  for (let at = 0; at < value.length; ) {
    const e = readElement(value, at);
    out.push({ tag: e.tag, value: e.value, raw: e.raw });
    at = e.end;
  }
  return out;
}

/** Dotted text of an OBJECT IDENTIFIER's value bytes. */
export function oidText(value: Buffer): string {
  const arcs: number[] = [];
  let arc = 0;
  for (const byte of value) {
    arc = arc * 128 + (byte & 0x7f);
    if (!(byte & 0x80)) {
      arcs.push(arc);
      arc = 0;
    }
  }
  const first = Math.min(2, Math.floor(arcs[0] / 40));
  return [first, arcs[0] - first * 40, ...arcs.slice(1)].join('.');
}
