// Big-endian integer reads for the per-frame path. Buffer#readInt32BE and friends validate their offset argument
// through Node's validators on every call, which measured as a tenth of a whole header decode; these do not, so
// callers check bounds themselves (every caller has already checked the frame is long enough).

export function i32(buf: Uint8Array, at: number): number {
  return (buf[at] << 24) | (buf[at + 1] << 16) | (buf[at + 2] << 8) | buf[at + 3];
}

export function u32(buf: Uint8Array, at: number): number {
  return i32(buf, at) >>> 0;
}

export function i16(buf: Uint8Array, at: number): number {
  return (((buf[at] << 8) | buf[at + 1]) << 16) >> 16;
}

export function u16(buf: Uint8Array, at: number): number {
  return (buf[at] << 8) | buf[at + 1];
}
