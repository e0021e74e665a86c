// Skip-only Hessian 2.0 scanner: steps over a Dubbo request's arguments, building nothing, to read its attachments.

import { isAscii as isAsciiNative } from 'node:buffer';
import { i32 } from './bytes';
import { hexByte } from './errors';
import { HessianStringReader } from './hessian';

/**
 * Deepest nesting of lists, maps and objects followed. The scanner recurses once per level, so a peer must not
 * choose the depth; Java's Hessian has no limit of its own, but no real argument comes near 64 levels.
 */
export const MAX_HESSIAN_DEPTH = 64;

/**
 * Most class definitions one body may declare. Their field counts are kept (object instances name a definition by
 * index and carry one value per field), in a table that lives as long as the process: this bounds it at 256 KiB.
 */
export const MAX_CLASS_DEFINITIONS = 65536;

const TRUNCATED = 'the body ends inside a value';

/**
 * Total bytes of every value whose size its first byte fixes (null, booleans, every int, long, double and date form,
 * short binary); 0 for the others. One table lookup settles most values an argument list holds.
 */
const FIXED_SIZE = (() => {
  const t = new Uint8Array(256);
  const set = (from: number, to: number, size: number) => t.fill(size, from, to + 1);
  set(0x80, 0xbf, 1); // int, one byte
  set(0xc0, 0xcf, 2); // int, two bytes
  set(0xd0, 0xd7, 3); // int, three bytes
  set(0x49, 0x49, 5); // 'I' int
  set(0xd8, 0xef, 1); // long, one byte
  set(0xf0, 0xff, 2); // long, two bytes
  set(0x38, 0x3f, 3); // long, three bytes
  set(0x59, 0x59, 5); // long as int32
  set(0x4c, 0x4c, 9); // 'L' long
  set(0x44, 0x44, 9); // 'D' double
  set(0x5b, 0x5c, 1); // double 0.0, 1.0
  set(0x5d, 0x5d, 2); // double from a byte
  set(0x5e, 0x5e, 3); // double from a short
  set(0x5f, 0x5f, 5); // double from a float / mills
  set(0x4a, 0x4a, 9); // date, ms
  set(0x4b, 0x4b, 5); // date, minutes
  set(0x4e, 0x4e, 1); // 'N'
  set(0x46, 0x46, 1); // 'F'
  set(0x54, 0x54, 1); // 'T'
  for (let c = 0x20; c <= 0x2f; c++) t[c] = 1 + c - 0x20; // short binary
  return t;
})();

/** Chunks of at least this many units are checked for ASCII natively (see skipUnits). */
const NATIVE_ASCII_UNITS = 1024;

function isStringCode(c: number): boolean {
  return c < 0x20 || (c >= 0x30 && c <= 0x33) || c === 0x52 || c === 0x53;
}

// Dubbo's ReflectUtils.DESC_PATTERN as a state machine over ASCII: types are B C D F I J S Z, `L` + identifiers
// ([_$a-zA-Z][_$a-zA-Z0-9]*) joined by `/` + `;`, and `[`+ before either. States: 0 at a type, 1 after `[`, 2 at the
// first character of an identifier, 3 inside one. DESCRIPTOR[state << 7 | byte] is the next state, plus 4 when a
// type ends there, or -1.
const DESCRIPTOR = (() => {
  const t = new Int8Array(4 << 7).fill(-1);
  const each = (chars: string, f: (c: number) => void) => {
    for (const ch of chars) f(ch.charCodeAt(0));
  };
  const letters = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_$';
  for (const state of [0, 1]) {
    each('BCDFIJSZ', (c) => (t[(state << 7) | c] = 0 + 4));
    t[(state << 7) | 0x5b] = 1; // [
    t[(state << 7) | 0x4c] = 2; // L
  }
  each(letters, (c) => (t[(2 << 7) | c] = 3));
  each(letters + '0123456789', (c) => (t[(3 << 7) | c] = 3));
  t[(3 << 7) | 0x2f] = 2; // /
  t[(3 << 7) | 0x3b] = 0 + 4; // ;
  return t;
})();
/** [_$a-zA-Z0-9], by arithmetic: a table lookup per character measured twice as slow. */
function isIdentifierPart(b: number): boolean {
  return ((b | 0x20) - 0x61) >>> 0 < 26 || (b - 0x30) >>> 0 < 10 || b === 0x5f || b === 0x24;
}

const KEY_OTHER = 0;
const KEY_GROUP = 1;
const KEY_INTERFACE = 2;
const KEY_PATH = 3;
const KEY_VERSION = 4;
const KEY_TRACEPARENT = 5;
const KEY_SOFA_TRACE_ID = 6;
const KEY_SOFA_RPC_ID = 7;
const GROUP = [0x67, 0x72, 0x6f, 0x75, 0x70]; // group
const INTERFACE = [0x69, 0x6e, 0x74, 0x65, 0x72, 0x66, 0x61, 0x63, 0x65]; // interface
const PATH = [0x70, 0x61, 0x74, 0x68]; // path
const VERSION = [0x76, 0x65, 0x72, 0x73, 0x69, 0x6f, 0x6e]; // version
// The trace keys (matched only as one short ASCII string, how every client writes them; see traceKeys).
const TRACEPARENT = [...Buffer.from('traceparent')];
const SOFA_TRACE_ID = [...Buffer.from('rpc_trace_context.sofaTraceId')];
const SOFA_RPC_ID = [...Buffer.from('rpc_trace_context.sofaRpcId')];

// Which part of the body a failure lies in, for the message.
const IN_DESCRIPTOR = -1;

/**
 * Reads `group` and `interface` from a Dubbo hessian2 request body, starting after its four leading strings. One
 * instance is reused for every frame: positions travel as return values (negative once a failure is recorded), so
 * scanning a well-formed body allocates nothing but the strings it returns (and those come from an interner).
 *
 * Agreement with the provider matters more than leniency: a body read one way here and another in Java Dubbo could
 * be routed by one group and served by another. So where Java's Hessian2Input accepts more than the grammar (a length
 * or class index written as a long or a null, a field name written as an int, a descriptor with stray characters)
 * the scanner refuses, and the request is answered with an error. The leniencies kept go the other way, accepting
 * what Java then fails on by itself: 4-byte UTF-8 counts as two units, as in the leading strings' reader, and a body
 * that ends right after the leading strings or right after the arguments has no attachments (test tools send those).
 */
export class DubboAttachmentScanner {
  /** The last `group` entry's value; undefined when absent, null, not a string, or '', and after a failure. */
  group: string | undefined;
  /** The last `interface` entry's value, by the same rules. */
  interfaceName: string | undefined;
  /**
   * The last `path` and `version` entries, by the same rules. A Java provider reads them over the leading strings and
   * serves the service they name, so a request whose attachments name another service must not be routed by its
   * leading strings.
   */
  path: string | undefined;
  version: string | undefined;
  /** Why the body cannot be read where the arguments and attachments should be; undefined when it could. */
  error: string | undefined;
  /**
   * With `traceKeys`: the last `traceparent`, `rpc_trace_context.sofaTraceId` and `rpc_trace_context.sofaRpcId`
   * entries as read (undefined when absent, not a string, or after a failure). Only for tracing and access logs.
   */
  traceparent: string | undefined;
  sofaTraceId: string | undefined;
  sofaRpcId: string | undefined;
  /** Whether the trace keys are looked for: off on the routing path, which never needs them. */
  private readonly traceKeys: boolean;

  constructor(options?: { traceKeys?: boolean }) {
    this.traceKeys = options?.traceKeys === true;
  }

  private buf: Buffer = Buffer.alloc(0);
  private end = 0;
  private argCount = 0;
  /** The argument being skipped, IN_DESCRIPTOR before, argCount once in the attachments. */
  private part = 0;
  // Set by chunk() and readInt(): one field each instead of a result object per call.
  private units = 0;
  private final = false;
  private int = 0;
  private key = KEY_OTHER;
  // Java's reader keeps a table of maps, lists and objects (what `Q` refers to), one of type names (what a typed
  // list or map may name by index) and one of class definitions: of the first two only the sizes matter here.
  private refCount = 0;
  private typeCount = 0;
  private classCount = 0;
  private classFields = new Int32Array(64);
  private errAt = 0;
  private errReason = '';
  private readonly text = new HessianStringReader();
  private readonly descriptors = new DescriptorMemo();

  /** Scans `buf[pos, end)`, which starts at the parameter-types descriptor; the results are in the fields. */
  scan(buf: Buffer, pos: number, end: number): void {
    this.buf = buf;
    this.end = end;
    this.group = undefined;
    this.interfaceName = undefined;
    this.path = undefined;
    this.version = undefined;
    this.error = undefined;
    this.traceparent = this.sofaTraceId = this.sofaRpcId = undefined;
    this.refCount = 0;
    this.typeCount = 0;
    this.classCount = 0;
    this.argCount = 0;
    // A body of the leading strings alone ends cleanly: nothing more to read.
    if (pos >= end) return;
    this.part = IN_DESCRIPTOR;
    let p = this.countArguments(pos);
    for (let i = 0; i < this.argCount && p >= 0; i++) {
      this.part = i;
      p = p < end ? this.skipValue(p, 0) : this.fail(p, 'the body ends before it');
    }
    if (p >= 0) {
      this.part = this.argCount;
      // Ending right after the arguments is clean too: no attachments.
      if (p < end) p = this.readAttachments(p);
    }
    if (p < 0) {
      this.error = this.message();
      // A group read before the failure is not reported: the request cannot be routed on a body read halfway.
      this.group = undefined;
      this.interfaceName = undefined;
      this.path = undefined;
      this.version = undefined;
      this.traceparent = this.sofaTraceId = this.sofaRpcId = undefined;
    }
  }

  private fail(at: number, reason: string): number {
    this.errAt = at;
    this.errReason = reason;
    return -1;
  }

  private message(): string {
    const at = this.errAt;
    const reason = this.errReason.replace('{byte}', at < this.end ? `0x${hexByte(this.buf[at])}` : 'end');
    const part =
      this.part === IN_DESCRIPTOR
        ? 'the parameter-types descriptor'
        : this.part < this.argCount
          ? `argument ${this.part + 1} of ${this.argCount}`
          : 'the attachments';
    return `${reason}, in ${part} (at byte ${at})`;
  }

  /**
   * Counts the types of the descriptor string at `p` into argCount. Only descriptors that Dubbo's own pattern reads
   * as a whole are accepted: Java finds its tokens anywhere in the string and skips what does not match, so for any
   * other string the two counts could differ, and with them where each side believes the attachments begin.
   */
  private countArguments(p: number): number {
    const { buf, end } = this;
    if (p < end && buf[p] === 0x4e) return this.fail(p, 'the descriptor is null');
    // A descriptor seen before, in the usual single short or medium chunk, is recognized by its bytes.
    const c = buf[p];
    const head = c < 0x20 ? 1 : c >= 0x30 && c <= 0x33 ? 2 : 0;
    const units = head === 1 ? c : head === 2 && p + 1 < end ? ((c - 0x30) << 8) | buf[p + 1] : -1;
    const slot = units > 0 && p + head + units <= end ? this.descriptors.find(buf, p + head, units) : -1;
    if (slot >= 0) {
      this.argCount = this.descriptors.count[slot];
      return p + head + units;
    }
    const from = p;
    let state = 0;
    let count = 0;
    for (;;) {
      const start = this.chunk(p);
      if (start < 0) return start;
      const stop = start + this.units;
      if (stop > end) return this.fail(end, TRUNCATED);
      // Every accepted character is ASCII, so each unit is one byte; any other byte fails.
      for (p = start; p < stop; p++) {
        // Most characters are inside a class name: a loop whose steps do not wait on each other's table lookups.
        if (state === 3) {
          while (p < stop && isIdentifierPart(buf[p])) p++;
          if (p === stop) break;
        }
        const b = buf[p];
        const next = b < 0x80 ? DESCRIPTOR[(state << 7) | b] : -1;
        if (next < 0)
          return this.fail(
            p,
            state <= 1 ? 'byte {byte} is not a JVM parameter type' : 'byte {byte} cannot be part of a class name',
          );
        state = next & 3;
        count += next >> 2;
      }
      if (this.final) break;
    }
    if (state !== 0) return this.fail(p, 'the descriptor ends inside a type');
    this.argCount = count;
    if (units > 0 && p === from + head + units) this.descriptors.add(buf, from + head, units, count);
    return p;
  }

  /** The attachments value at `p`: a map (H, or M with a type) or null. Returns the position after it. */
  private readAttachments(p: number): number {
    const { buf, end } = this;
    p = this.skipClassDefinitions(p);
    if (p < 0) return p;
    const c = buf[p];
    if (c === 0x4e) return p + 1;
    if (c === 0x48) p++;
    else if (c === 0x4d) p = this.skipType(p + 1);
    else return this.fail(p, 'expected the attachments map (H, M or N), found byte {byte}');
    this.refCount++;
    for (;;) {
      if (p < 0 || ((p >= end || buf[p] === 0x43) && (p = this.skipClassDefinitions(p)) < 0)) return p;
      let c = buf[p];
      if (c === 0x5a) return p + 1;
      // Keys and values are nearly always short ASCII strings: those are handled here, in place.
      let key = KEY_OTHER;
      if (c < 0x20 && isAscii(buf, p + 1, p + 1 + c, end)) {
        if (c === 5 && equalsAt(buf, p + 1, GROUP)) key = KEY_GROUP;
        else if (c === 9 && equalsAt(buf, p + 1, INTERFACE)) key = KEY_INTERFACE;
        else if (c === 4 && equalsAt(buf, p + 1, PATH)) key = KEY_PATH;
        else if (c === 7 && equalsAt(buf, p + 1, VERSION)) key = KEY_VERSION;
        else if (this.traceKeys) key = traceKey(buf, p + 1, c);
        p += 1 + c;
      } else if (isStringCode(c)) {
        p = this.skipKey(p);
        key = this.key;
      } else p = this.skipValue(p, 1);
      if (p < 0 || ((p >= end || buf[p] === 0x43) && (p = this.skipClassDefinitions(p)) < 0)) return p;
      c = buf[p];
      if (key === KEY_OTHER) {
        p = c < 0x20 && isAscii(buf, p + 1, p + 1 + c, end) ? p + 1 + c : this.skipValue(p, 1);
        continue;
      }
      // As in the Java HashMap the provider fills, the last entry of a key wins; a value that is not a string
      // (null included) leaves the key without a usable value.
      let value: string | undefined;
      if (isStringCode(c)) {
        const after = this.skipString(p);
        if (after < 0) return after;
        this.text.reset(buf, p, after);
        value = this.text.readString() || undefined;
        p = after;
      } else p = this.skipValue(p, 1);
      if (key === KEY_GROUP) this.group = value;
      else if (key === KEY_INTERFACE) this.interfaceName = value;
      else if (key === KEY_PATH) this.path = value;
      else if (key === KEY_VERSION) this.version = value;
      else if (key === KEY_TRACEPARENT) this.traceparent = value;
      else if (key === KEY_SOFA_TRACE_ID) this.sofaTraceId = value;
      else this.sofaRpcId = value;
    }
  }

  /**
   * A class definition may precede any value (Java reads it and then the value that follows). Returns the position
   * of the first byte that is not one, which is inside the body.
   */
  private skipClassDefinitions(p: number): number {
    const { buf, end } = this;
    while (p < end && buf[p] === 0x43) {
      p = this.skipClassDefinition(p);
      if (p < 0) return p;
    }
    return p < end ? p : this.fail(end, TRUNCATED);
  }

  /** 'C' name fieldCount fieldName*: keeps the field count, which its instances need. */
  private skipClassDefinition(p: number): number {
    p = this.skipString(p + 1);
    if (p < 0) return p;
    const at = p;
    p = this.readInt(p);
    if (p < 0) return p;
    const fields = this.int;
    if (fields < 0) return this.fail(at, 'a class definition has a negative field count');
    for (let i = 0; i < fields && p >= 0; i++) p = this.skipString(p);
    if (p < 0) return p;
    if (this.classCount === this.classFields.length) {
      if (this.classCount >= MAX_CLASS_DEFINITIONS)
        return this.fail(at, `more than ${MAX_CLASS_DEFINITIONS} class definitions`);
      const grown = new Int32Array(this.classFields.length * 2);
      grown.set(this.classFields);
      this.classFields = grown;
    }
    this.classFields[this.classCount++] = fields;
    return p;
  }

  /** Steps over one value at `p` (`depth` containers deep) and returns the position after it. */
  private skipValue(p: number, depth: number): number {
    const { buf, end } = this;
    for (;;) {
      if (p >= end) return this.fail(end, TRUNCATED);
      const c = buf[p];
      const size = FIXED_SIZE[c];
      if (size !== 0) return p + size <= end ? p + size : this.fail(end, TRUNCATED);
      if (c < 0x20) return this.skipUnits(p + 1, c);
      if (isStringCode(c)) return this.skipString(p);
      if (c >= 0x70 && c <= 0x7f) {
        // Compact fixed lists: 0x70-0x77 typed, 0x78-0x7f untyped, the length in the code.
        const q = c < 0x78 ? this.skipType(p + 1) : p + 1;
        return q < 0 ? q : this.skipItems(q, c & 7, depth, p);
      }
      if (c >= 0x60 && c <= 0x6f) return this.skipInstance(p + 1, c - 0x60, p, depth);
      switch (c) {
        case 0x43: // 'C': a class definition, then the value it precedes
          p = this.skipClassDefinition(p);
          if (p < 0) return p;
          continue;
        case 0x4f: {
          // 'O' int: an object of the class definition of that index
          const q = this.readInt(p + 1);
          return q < 0 ? q : this.skipInstance(q, this.int, p, depth);
        }
        case 0x51: {
          // 'Q' int: a reference to an earlier map, list or object
          const q = this.readInt(p + 1);
          if (q < 0) return q;
          return this.int >= 0 && this.int < this.refCount
            ? q
            : this.fail(p, `a reference to value ${this.int} of ${this.refCount}`);
        }
        case 0x48: // 'H' untyped map
          return this.skipEntries(p + 1, depth, p);
        case 0x4d: {
          // 'M' typed map
          const q = this.skipType(p + 1);
          return q < 0 ? q : this.skipEntries(q, depth, p);
        }
        case 0x55: {
          // typed list up to 'Z'
          const q = this.skipType(p + 1);
          return q < 0 ? q : this.skipItems(q, -1, depth, p);
        }
        case 0x57: // untyped list up to 'Z'
          return this.skipItems(p + 1, -1, depth, p);
        case 0x56:
        case 0x58: {
          // 'V' typed / 'X' untyped list with an int length
          let q = c === 0x56 ? this.skipType(p + 1) : p + 1;
          if (q < 0) return q;
          const at = q;
          q = this.readInt(q);
          if (q < 0) return q;
          return this.int >= 0 ? this.skipItems(q, this.int, depth, p) : this.fail(at, 'a list has a negative length');
        }
        case 0x34:
        case 0x35:
        case 0x36:
        case 0x37:
        case 0x41:
        case 0x42:
          return this.skipBinary(p);
        default:
          return this.fail(p, 'byte {byte} cannot start a hessian2 value');
      }
    }
  }

  /** `length` values, or values up to 'Z' when length is -1: a list's items; `at` is the list's first byte. */
  private skipItems(p: number, length: number, depth: number, at: number): number {
    if (depth >= MAX_HESSIAN_DEPTH) return this.fail(at, `values nest deeper than ${MAX_HESSIAN_DEPTH}`);
    this.refCount++;
    const { buf, end } = this;
    if (length < 0) {
      for (;;) {
        if (p >= end) return this.fail(end, TRUNCATED);
        if (buf[p] === 0x5a) return p + 1;
        const q = smallValueEnd(buf, p, end);
        p = q >= 0 ? q : this.skipValue(p, depth + 1);
        if (p < 0) return p;
      }
    }
    for (let i = 0; i < length && p >= 0; i++) {
      const q = p < end ? smallValueEnd(buf, p, end) : -1;
      p = q >= 0 ? q : this.skipValue(p, depth + 1);
    }
    return p;
  }

  /** Key-value pairs up to 'Z'; `at` is the map's first byte. */
  private skipEntries(p: number, depth: number, at: number): number {
    if (depth >= MAX_HESSIAN_DEPTH) return this.fail(at, `values nest deeper than ${MAX_HESSIAN_DEPTH}`);
    this.refCount++;
    const { buf, end } = this;
    for (;;) {
      if (p >= end) return this.fail(end, TRUNCATED);
      if (buf[p] === 0x5a) return p + 1;
      let q = smallValueEnd(buf, p, end);
      p = q >= 0 ? q : this.skipValue(p, depth + 1);
      if (p < 0) return p;
      q = p < end ? smallValueEnd(buf, p, end) : -1;
      p = q >= 0 ? q : this.skipValue(p, depth + 1);
      if (p < 0) return p;
    }
  }

  /** The field values of an object of class definition `ref`; `at` is the object's first byte. */
  private skipInstance(p: number, ref: number, at: number, depth: number): number {
    if (ref < 0 || ref >= this.classCount)
      return this.fail(at, `an object of class definition ${ref}, of ${this.classCount} defined`);
    if (depth >= MAX_HESSIAN_DEPTH) return this.fail(at, `values nest deeper than ${MAX_HESSIAN_DEPTH}`);
    this.refCount++;
    const { buf, end } = this;
    const fields = this.classFields[ref];
    for (let i = 0; i < fields && p >= 0; i++) {
      const q = p < end ? smallValueEnd(buf, p, end) : -1;
      p = q >= 0 ? q : this.skipValue(p, depth + 1);
    }
    return p;
  }

  /** A list's or typed map's type: a string (which joins the type table) or an int index into that table. */
  private skipType(p: number): number {
    if (p >= this.end) return this.fail(this.end, TRUNCATED);
    if (isStringCode(this.buf[p])) {
      p = this.skipString(p);
      if (p >= 0) this.typeCount++;
      return p;
    }
    const at = p;
    p = this.readInt(p);
    if (p < 0) return p;
    return this.int >= 0 && this.int < this.typeCount
      ? p
      : this.fail(at, `a reference to type ${this.int} of ${this.typeCount}`);
  }

  /** Binary in any form: short (0x20-0x2f, in FIXED_SIZE), medium 0x34-0x37, or 'A' chunks ending in a final one. */
  private skipBinary(p: number): number {
    const { buf, end } = this;
    for (let first = true; ; first = false) {
      if (p >= end) return this.fail(end, TRUNCATED);
      const c = buf[p];
      let next: number;
      if (c === 0x41 || c === 0x42) {
        if (p + 2 >= end) return this.fail(end, TRUNCATED);
        next = p + 3 + ((buf[p + 1] << 8) | buf[p + 2]);
      } else if (c >= 0x34 && c <= 0x37) {
        if (p + 1 >= end) return this.fail(end, TRUNCATED);
        next = p + 2 + (((c - 0x34) << 8) | buf[p + 1]);
      } else if (!first && c >= 0x20 && c <= 0x2f) {
        next = p + 1 + c - 0x20;
      } else return this.fail(p, 'byte {byte} cannot continue a chunked binary');
      if (next > end) return this.fail(end, TRUNCATED);
      p = next;
      if (c !== 0x41) return p;
    }
  }

  /** An int where the grammar requires one (lengths, counts, indexes); the value goes to `int`. */
  private readInt(p: number): number {
    const { buf, end } = this;
    if (p >= end) return this.fail(end, TRUNCATED);
    const c = buf[p];
    if (c >= 0x80 && c <= 0xbf) {
      this.int = c - 0x90;
      return p + 1;
    }
    if (c >= 0xc0 && c <= 0xcf) {
      if (p + 1 >= end) return this.fail(end, TRUNCATED);
      this.int = ((c - 0xc8) << 8) + buf[p + 1];
      return p + 2;
    }
    if (c >= 0xd0 && c <= 0xd7) {
      if (p + 2 >= end) return this.fail(end, TRUNCATED);
      this.int = ((c - 0xd4) << 16) + (buf[p + 1] << 8) + buf[p + 2];
      return p + 3;
    }
    if (c === 0x49) {
      if (p + 4 >= end) return this.fail(end, TRUNCATED);
      this.int = i32(buf, p + 1);
      return p + 5;
    }
    return this.fail(p, 'expected a hessian2 int, found byte {byte}');
  }

  /** The header of the string chunk at `p`: sets units and final, returns where its characters start. */
  private chunk(p: number): number {
    const { buf, end } = this;
    if (p >= end) return this.fail(end, TRUNCATED);
    const c = buf[p];
    if (c < 0x20) {
      this.units = c;
      this.final = true;
      return p + 1;
    }
    if (c >= 0x30 && c <= 0x33) {
      if (p + 1 >= end) return this.fail(end, TRUNCATED);
      this.units = ((c - 0x30) << 8) | buf[p + 1];
      this.final = true;
      return p + 2;
    }
    if (c === 0x52 || c === 0x53) {
      if (p + 2 >= end) return this.fail(end, TRUNCATED);
      this.units = (buf[p + 1] << 8) | buf[p + 2];
      this.final = c === 0x53;
      return p + 3;
    }
    return this.fail(p, 'expected a hessian2 string, found byte {byte}');
  }

  /** A string in any form: chunks until a final one. */
  private skipString(p: number): number {
    const c = this.buf[p];
    if (c < 0x20 && p < this.end && isAscii(this.buf, p + 1, p + 1 + c, this.end)) return p + 1 + c;
    for (;;) {
      const start = this.chunk(p);
      if (start < 0) return start;
      const final = this.final;
      p = this.skipUnits(start, this.units);
      if (p < 0 || final) return p;
    }
  }

  /**
   * Past `units` UTF-16 units of CESU-8 from `p`. Lengths count characters, not bytes, so every character is walked;
   * ASCII runs eight bytes per test. Lead bytes follow the leading strings' reader (HessianStringReader): a 4-byte
   * UTF-8 sequence counts as the two units of its surrogate pair.
   */
  private skipUnits(p: number, units: number): number {
    const { buf, end } = this;
    // Only 'S' and 'R' chunks are this long: a native check runs 40 times faster than the loop below, for the price of
    // one view object per chunk of 1024 to 65535 units.
    if (
      units >= NATIVE_ASCII_UNITS &&
      p + units <= end &&
      isAsciiNative(new Uint8Array(buf.buffer, buf.byteOffset + p, units))
    ) {
      return p + units;
    }
    const from = p;
    const stop = Math.min(p + units, end);
    while (
      p + 8 <= stop &&
      ((buf[p] | buf[p + 1] | buf[p + 2] | buf[p + 3] | buf[p + 4] | buf[p + 5] | buf[p + 6] | buf[p + 7]) & 0x80) === 0
    ) {
      p += 8;
    }
    while (p < stop && buf[p] < 0x80) p++;
    let left = units - (p - from);
    while (left > 0) {
      if (p >= end) return this.fail(end, TRUNCATED);
      // Branches, not a length table: a table puts a load on the path from one position to the next (measured 2x slower).
      const b = buf[p];
      if (b < 0x80) p += 1;
      else if (b >= 0xc0 && b < 0xe0) p += 2;
      else if (b >= 0xe0 && b < 0xf0) p += 3;
      else if (b >= 0xf0 && b < 0xf8) {
        p += 4;
        left--;
      } else return this.fail(p, 'byte {byte} cannot start a character');
      left--;
    }
    return p <= end ? p : this.fail(end, TRUNCATED);
  }

  /**
   * Steps over the string key at `p` and sets `key` to which of group / interface / path / version it spells, however chunked and
   * however encoded: characters are compared as Java's reader decodes them, overlong forms included (0xc1 0xa7 is
   * a 'g' to it), or a key the provider reads as `group` could pass here as another.
   */
  private skipKey(p: number): number {
    const { buf, end } = this;
    // How much of each name the characters so far spell; -1 once they cannot.
    let g = 0;
    let f = 0;
    let h = 0;
    let v = 0;
    for (;;) {
      const start = this.chunk(p);
      if (start < 0) return start;
      const { final, units } = this;
      let q = start;
      let left = units;
      for (; left > 0; left--) {
        if (q >= end) break;
        const b = buf[q];
        let unit: number;
        if (b < 0x80) {
          unit = b;
          q += 1;
        } else if (b >= 0xc0 && b < 0xe0 && q + 1 < end) {
          unit = ((b & 0x1f) << 6) | (buf[q + 1] & 0x3f);
          q += 2;
        } else if (b >= 0xe0 && b < 0xf0 && q + 2 < end) {
          unit = ((b & 0x0f) << 12) | ((buf[q + 1] & 0x3f) << 6) | (buf[q + 2] & 0x3f);
          q += 3;
        } else break; // a surrogate pair (in neither name), or bytes skipUnits rejects below
        g = g >= 0 && g < GROUP.length && unit === GROUP[g] ? g + 1 : -1;
        f = f >= 0 && f < INTERFACE.length && unit === INTERFACE[f] ? f + 1 : -1;
        h = h >= 0 && h < PATH.length && unit === PATH[h] ? h + 1 : -1;
        v = v >= 0 && v < VERSION.length && unit === VERSION[v] ? v + 1 : -1;
      }
      if (left > 0) g = f = h = v = -1;
      p = this.skipUnits(start, units);
      if (p < 0) return p;
      if (final) break;
    }
    this.key =
      g === GROUP.length
        ? KEY_GROUP
        : f === INTERFACE.length
          ? KEY_INTERFACE
          : h === PATH.length
            ? KEY_PATH
            : v === VERSION.length
              ? KEY_VERSION
              : KEY_OTHER;
    return p;
  }
}

/**
 * Descriptors already counted, with their argument counts. A proxy sees few (one per method), on every call, and a
 * byte comparison costs a fraction of the state machine (a third for `Ljava/lang/String;`). Direct-mapped by length
 * and two sampled bytes, in memory taken once: a peer sending ever new descriptors only makes every lookup miss.
 * Only descriptors that passed the state machine are kept, so a match is a valid descriptor of that count.
 */
class DescriptorMemo {
  private static readonly SLOTS = 32;
  /** Longest descriptor kept, in bytes. */
  private static readonly WIDTH = 128;
  private readonly bytes = Buffer.alloc(DescriptorMemo.SLOTS * DescriptorMemo.WIDTH);
  private readonly length = new Int32Array(DescriptorMemo.SLOTS);
  readonly count = new Int32Array(DescriptorMemo.SLOTS);

  private slot(buf: Buffer, at: number, n: number): number {
    return (n * 7 + buf[at + (n >> 1)] + buf[at + n - 1] * 3) & (DescriptorMemo.SLOTS - 1);
  }

  /** The slot holding exactly `buf[at, at + n)`, or -1. */
  find(buf: Buffer, at: number, n: number): number {
    const slot = this.slot(buf, at, n);
    if (this.length[slot] !== n) return -1;
    const base = slot * DescriptorMemo.WIDTH;
    const kept = this.bytes;
    let i = 0;
    for (; i + 4 <= n; i += 4) {
      const k = base + i;
      const b = at + i;
      if (
        ((kept[k] ^ buf[b]) | (kept[k + 1] ^ buf[b + 1]) | (kept[k + 2] ^ buf[b + 2]) | (kept[k + 3] ^ buf[b + 3])) !==
        0
      )
        return -1;
    }
    for (; i < n; i++) if (kept[base + i] !== buf[at + i]) return -1;
    return slot;
  }

  add(buf: Buffer, at: number, n: number, count: number): void {
    if (n > DescriptorMemo.WIDTH) return;
    const slot = this.slot(buf, at, n);
    const base = slot * DescriptorMemo.WIDTH;
    for (let i = 0; i < n; i++) this.bytes[base + i] = buf[at + i];
    this.length[slot] = n;
    this.count[slot] = count;
  }
}

/**
 * Where the value at `p` (< end) ends if it is one of the common small ones, a fixed-size value or a short ASCII
 * string; -1 for anything else, which skipValue then reads. Inlined into the item loops, it saves them a call per
 * item: half the cost of a list of nulls or small ints.
 */
function smallValueEnd(buf: Buffer, p: number, end: number): number {
  const c = buf[p];
  const size = FIXED_SIZE[c];
  if (size !== 0) return p + size <= end ? p + size : -1;
  return c < 0x20 && isAscii(buf, p + 1, p + 1 + c, end) ? p + 1 + c : -1;
}

/** Whether `buf[from, to)` lies inside the body and is all ASCII. */
function isAscii(buf: Buffer, from: number, to: number, end: number): boolean {
  if (to > end) return false;
  let i = from;
  for (; i + 4 <= to; i += 4) if (((buf[i] | buf[i + 1] | buf[i + 2] | buf[i + 3]) & 0x80) !== 0) return false;
  for (; i < to; i++) if (buf[i] >= 0x80) return false;
  return true;
}

function traceKey(buf: Buffer, at: number, n: number): number {
  if (n === TRACEPARENT.length && equalsAt(buf, at, TRACEPARENT)) return KEY_TRACEPARENT;
  if (n === SOFA_TRACE_ID.length && equalsAt(buf, at, SOFA_TRACE_ID)) return KEY_SOFA_TRACE_ID;
  if (n === SOFA_RPC_ID.length && equalsAt(buf, at, SOFA_RPC_ID)) return KEY_SOFA_RPC_ID;
  return KEY_OTHER;
}

function equalsAt(buf: Buffer, at: number, name: readonly number[]): boolean {
  for (let i = 0; i < name.length; i++) if (buf[at + i] !== name[i]) return false;
  return true;
}
