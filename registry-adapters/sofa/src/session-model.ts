// SOFA Registry's wire classes (core/model) and the Hessian 2.0 codec their Bolt bodies use, written from the grammar.
//
// Facts this file rests on (sofastack/sofa-registry, sofastack/sofa-hessian):
// - Client and session server both use Bolt's default serializer, com.alipay.remoting.serialization.HessianSerializer
//   (codec byte 1), whose Hessian2Output comes from sofa-hessian, "based on Hessian v4.0.51": Hessian 2.0 proper,
//   i.e. `C` class definitions, `0x60+n` instances, `H` maps, `0x30` medium and `R` chunked strings. Not the 3.1.3
//   draft grammar (`O`/`o`, `M`...`z`) that hessian.js-1 speaks; hessian.js 2.x is the matching reference decoder.
// - Hessian's Java serializer writes first the fields of a primitive or java.lang type (String, Long, Integer...), then
//   the others (List, Map, objects), each group subclass first and in declaration order, skipping static and
//   transient ones. Order is cosmetic (the reader matches by name); we keep Java's, which session-java.test.ts checks
//   against what Caucho's Hessian writes for the same classes.

import { hessianString } from '@meshport/protocol';

const MODEL = 'com.alipay.sofa.registry.core.model.';

/** Bolt class names of the requests and answers a session server and its clients exchange. */
export const SOFA_REGISTRY_CLASSES = {
  publisherRegister: `${MODEL}PublisherRegister`,
  subscriberRegister: `${MODEL}SubscriberRegister`,
  registerResponse: `${MODEL}RegisterResponse`,
  receivedData: `${MODEL}ReceivedData`,
  result: `${MODEL}Result`,
  dataBox: `${MODEL}DataBox`,
} as const;

/** EventTypeConstants of core/constants. */
export type SofaEventType = 'REGISTER' | 'UNREGISTER';

/** ScopeEnum: which publishers a subscriber hears (same zone, same data center, everywhere). */
export type SofaScope = 'zone' | 'dataCenter' | 'global';

/** BaseRegister, as far as a client fills it in; the rest (processId, clientId, dataInfoId, port) the server sets. */
export interface BaseRegister {
  instanceId: string;
  zone: string;
  appName: string | null;
  dataId: string;
  group: string;
  registId: string;
  ip: string | null;
  eventType: SofaEventType;
  /** The register's own version: raised on every republish or unregister, so the server keeps the latest. */
  version: number;
  timestamp: number;
}

export interface PublisherRegister extends BaseRegister {
  /** One DataBox per datum; SOFA RPC publishes one, the provider's URL text. Null in an UNREGISTER, as Java sends it. */
  dataList: string[] | null;
}

export interface SubscriberRegister extends BaseRegister {
  scope: SofaScope;
}

export interface RegisterResponse {
  success: boolean;
  registId: string | null;
  /** Java `long`: kept exact. */
  version: bigint;
  refused: boolean;
  message: string | null;
}

/** A push from the session server: the whole datum of one dataId (one segment of it), by zone. */
export interface ReceivedData {
  dataId: string | null;
  group: string | null;
  instanceId: string | null;
  segment: string | null;
  scope: string | null;
  subscriberRegistIds: string[];
  /** zone -> data strings; null when the server sent no data (the Java client then changes nothing). */
  data: Map<string, string[]> | null;
  /**
   * Java `Long`, and a bigint here: the session server builds it from milliseconds shifted left by 15 bits, which
   * passes 2^53 in 2027, after which two versions a number can no longer tell apart would read as the same push.
   */
  version: bigint | null;
  localZone: string | null;
}

export interface Result {
  success: boolean;
  message: string | null;
}

/**
 * The fields each class declares, in declaration order (a register has BaseRegister's too); the reference for the
 * tests as well. Java writes them in another order (see the top of this file).
 */
export const SOFA_REGISTRY_FIELDS = {
  baseRegister: [
    'instanceId',
    'zone',
    'appName',
    'dataId',
    'group',
    'processId',
    'registId',
    'clientId',
    'dataInfoId',
    'ip',
    'port',
    'eventType',
    'version',
    'timestamp',
    'attributes',
  ],
  publisherRegister: ['dataList'],
  subscriberRegister: ['scope', 'acceptEncoding', 'acceptMulti'],
  dataBox: ['data'],
  registerResponse: ['success', 'registId', 'version', 'refused', 'message'],
  receivedData: [
    'dataId',
    'group',
    'instanceId',
    'segment',
    'scope',
    'subscriberRegistIds',
    'data',
    'version',
    'localZone',
    'dataCount',
  ],
  result: ['success', 'message'],
} as const;

// ---------------------------------------------------------------------------------------------------------------
// Writing.

/** A Java `long` field: Hessian writes it with the long codes, so it must not go out as an int. */
class JavaLong {
  constructor(readonly value: number | bigint) {}
}
/** A Java `Integer`/`int` field. */
class JavaInt {
  constructor(readonly value: number) {}
}
/** An instance of a Java class: its name and its fields in writing order. */
class JavaObject {
  constructor(
    readonly className: string,
    readonly fields: ReadonlyArray<readonly [string, HessianValue]>,
  ) {}
}
type HessianValue = null | boolean | string | JavaLong | JavaInt | JavaObject | HessianValue[] | Map<string, HessianValue>;

/** Writes one Hessian 2.0 value graph; class definitions are written once per body and referred to by index. */
class HessianWriter {
  private readonly parts: Buffer[] = [];
  private readonly classDefs = new Map<string, number>();

  write(value: HessianValue): this {
    if (value === null) this.byte(0x4e);
    else if (typeof value === 'boolean') this.byte(value ? 0x54 : 0x46);
    else if (typeof value === 'string') this.parts.push(hessianString(value, '2.0'));
    else if (value instanceof JavaLong) this.long(value.value);
    else if (value instanceof JavaInt) this.int(value.value);
    else if (value instanceof JavaObject) this.object(value);
    else if (Array.isArray(value)) this.list(value);
    else this.map(value);
    return this;
  }

  bytes(): Buffer {
    return Buffer.concat(this.parts);
  }

  private byte(b: number): void {
    this.parts.push(Buffer.from([b]));
  }

  private int(n: number): void {
    if (n >= -16 && n <= 47) this.byte(0x90 + n);
    else if (n >= -2048 && n <= 2047) this.parts.push(Buffer.from([0xc8 + (n >> 8), n & 0xff]));
    else if (n >= -262144 && n <= 262143) this.parts.push(Buffer.from([0xd4 + (n >> 16), (n >> 8) & 0xff, n & 0xff]));
    else {
      const b = Buffer.alloc(5);
      b[0] = 0x49; // 'I'
      b.writeInt32BE(n, 1);
      this.parts.push(b);
    }
  }

  private long(value: number | bigint): void {
    if (typeof value === 'number' && !Number.isSafeInteger(value)) throw new RangeError(`a Java long field needs a safe integer, got ${value}`);
    if (typeof value === 'bigint' && BigInt.asIntN(64, value) !== value) throw new RangeError(`${value} does not fit a Java long`);
    // The compact forms below need a number; every value they cover is far inside the safe range.
    const n = typeof value === 'bigint' && value >= -0x80000000n && value <= 0x7fffffffn ? Number(value) : value;
    if (typeof n === 'bigint') {
      const b = Buffer.alloc(9);
      b[0] = 0x4c; // 'L'
      b.writeBigInt64BE(n, 1);
      this.parts.push(b);
    } else if (n >= -8 && n <= 15) this.byte(0xe0 + n);
    else if (n >= -2048 && n <= 2047) this.parts.push(Buffer.from([0xf8 + (n >> 8), n & 0xff]));
    else if (n >= -262144 && n <= 262143) this.parts.push(Buffer.from([0x3c + (n >> 16), (n >> 8) & 0xff, n & 0xff]));
    else if (n >= -0x80000000 && n <= 0x7fffffff) {
      const b = Buffer.alloc(5);
      b[0] = 0x59; // long held in 32 bits
      b.writeInt32BE(n, 1);
      this.parts.push(b);
    } else {
      const b = Buffer.alloc(9);
      b[0] = 0x4c; // 'L'
      b.writeBigInt64BE(BigInt(n), 1);
      this.parts.push(b);
    }
  }

  /** An ArrayList as Java writes it: a fixed-length untyped list. */
  private list(items: HessianValue[]): void {
    if (items.length < 8) this.byte(0x78 + items.length);
    else {
      this.byte(0x58); // 'X'
      this.int(items.length);
    }
    for (const item of items) this.write(item);
  }

  /** A HashMap as Java writes it: an untyped map closed by 'Z'. */
  private map(map: Map<string, HessianValue>): void {
    this.byte(0x48); // 'H'
    for (const [k, v] of map) this.write(k).write(v);
    this.byte(0x5a); // 'Z'
  }

  private object(obj: JavaObject): void {
    let ref = this.classDefs.get(obj.className);
    if (ref === undefined) {
      ref = this.classDefs.size;
      this.classDefs.set(obj.className, ref);
      this.byte(0x43); // 'C'
      this.write(obj.className);
      this.int(obj.fields.length);
      for (const [name] of obj.fields) this.write(name);
    }
    if (ref <= 15) this.byte(0x60 + ref);
    else {
      this.byte(0x4f); // 'O'
      this.int(ref);
    }
    for (const [, value] of obj.fields) this.write(value);
  }
}

const dataBox = (data: string) => new JavaObject(SOFA_REGISTRY_CLASSES.dataBox, [['data', data]]);

/** BaseRegister's fields of java.lang types; its one Map, `attributes`, Java writes after every subclass's List. */
function baseFields(r: BaseRegister): Array<readonly [string, HessianValue]> {
  return [
    ['instanceId', r.instanceId],
    ['zone', r.zone],
    ['appName', r.appName],
    ['dataId', r.dataId],
    ['group', r.group],
    ['processId', null],
    ['registId', r.registId],
    ['clientId', null],
    ['dataInfoId', null],
    ['ip', r.ip],
    ['port', null],
    ['eventType', r.eventType],
    ['version', new JavaLong(r.version)],
    ['timestamp', new JavaLong(r.timestamp)],
  ];
}

export function encodePublisherRegister(r: PublisherRegister): Buffer {
  return new HessianWriter()
    .write(
      new JavaObject(SOFA_REGISTRY_CLASSES.publisherRegister, [
        ...baseFields(r),
        ['dataList', r.dataList === null ? null : r.dataList.map(dataBox)],
        ['attributes', null],
      ]),
    )
    .bytes();
}

export function encodeSubscriberRegister(r: SubscriberRegister): Buffer {
  return new HessianWriter()
    .write(
      new JavaObject(SOFA_REGISTRY_CLASSES.subscriberRegister, [
        ['scope', r.scope],
        // Multi-segment pushes (acceptMulti) and compressed ones (acceptEncoding) are not asked for: plain ReceivedData.
        ['acceptEncoding', null],
        ['acceptMulti', false],
        ...baseFields(r),
        ['attributes', null],
      ]),
    )
    .bytes();
}

export function encodeResult(r: Result): Buffer {
  return new HessianWriter()
    .write(new JavaObject(SOFA_REGISTRY_CLASSES.result, [['success', r.success], ['message', r.message]]))
    .bytes();
}

export function encodeRegisterResponse(r: RegisterResponse): Buffer {
  return new HessianWriter()
    .write(
      new JavaObject(SOFA_REGISTRY_CLASSES.registerResponse, [
        ['success', r.success],
        ['registId', r.registId],
        ['version', new JavaLong(r.version)],
        ['refused', r.refused],
        ['message', r.message],
      ]),
    )
    .bytes();
}

export function encodeReceivedData(d: ReceivedData): Buffer {
  const data = d.data === null ? null : new Map([...d.data].map(([zone, list]) => [zone, list.map(dataBox)] as const));
  return new HessianWriter()
    .write(
      new JavaObject(SOFA_REGISTRY_CLASSES.receivedData, [
        ['dataId', d.dataId],
        ['group', d.group],
        ['instanceId', d.instanceId],
        ['segment', d.segment],
        ['scope', d.scope],
        ['version', d.version === null ? null : new JavaLong(d.version)],
        ['localZone', d.localZone],
        ['subscriberRegistIds', d.subscriberRegistIds],
        ['data', data],
        // Map<String, Integer>: how many data each zone holds.
        ['dataCount', d.data === null ? null : new Map([...d.data].map(([zone, list]) => [zone, new JavaInt(list.length)] as const))],
      ]),
    )
    .bytes();
}

// ---------------------------------------------------------------------------------------------------------------
// Reading.

/** A decoded instance: its class name and its fields by name (null prototype: a field named __proto__ stays a field). */
export interface HessianObject {
  readonly $class: string;
  readonly fields: Record<string, unknown>;
}

/** A body that is not the Hessian 2.0 its class promises. Internal: the client answers it and logs, never throws. */
export class HessianDecodeError extends Error {
  constructor(
    message: string,
    readonly offset: number,
  ) {
    super(`${message} (at byte ${offset})`);
    this.name = 'HessianDecodeError';
  }
}

const MAX_DEPTH = 64;

/**
 * Reads one Hessian 2.0 value: every code of the grammar, so any body Java writes decodes, whatever its shape.
 * Objects become HessianObject, lists arrays, maps Map, longs numbers (bigint beyond 2^53), dates Date, binary Buffer.
 * Nothing is instantiated by the name the stream gives.
 */
export class HessianReader {
  private pos = 0;
  private readonly refs: unknown[] = [];
  private readonly types: string[] = [];
  private readonly classDefs: Array<{ name: string; fields: string[] }> = [];

  constructor(private readonly buf: Buffer) {}

  get offset(): number {
    return this.pos;
  }

  read(depth = 0): unknown {
    if (depth > MAX_DEPTH) throw this.fail('values nested too deep');
    let code = this.u8();
    // Class definitions precede the value that first uses them; a loop, so a run of them cannot deepen the stack.
    while (code === 0x43) {
      this.classDef();
      code = this.u8();
    }
    if (code <= 0x1f) return this.stringChunks(code, true);
    if (code <= 0x2f) return this.take(code - 0x20);
    if (code <= 0x33) return this.stringChunks(((code - 0x30) << 8) | this.u8(), true);
    if (code <= 0x37) return this.take(((code - 0x34) << 8) | this.u8());
    if (code <= 0x3f) return ((code - 0x3c) << 16) + (this.u8() << 8) + this.u8();
    if (code >= 0x60 && code <= 0x6f) return this.instance(code - 0x60, depth);
    if (code >= 0x70 && code <= 0x77) {
      this.type();
      return this.fixedList(code - 0x70, depth);
    }
    if (code >= 0x78 && code <= 0x7f) return this.fixedList(code - 0x78, depth);
    if (code >= 0x80 && code <= 0xbf) return code - 0x90;
    if (code >= 0xc0 && code <= 0xcf) return ((code - 0xc8) << 8) + this.u8();
    if (code >= 0xd0 && code <= 0xd7) return ((code - 0xd4) << 16) + (this.u8() << 8) + this.u8();
    if (code >= 0xd8 && code <= 0xef) return code - 0xe0;
    if (code >= 0xf0) return ((code - 0xf8) << 8) + this.u8();
    switch (code) {
      case 0x41: // 'A' binary chunk
      case 0x42: // 'B' final binary
        return this.binaryChunks(code === 0x42);
      case 0x44: // 'D'
        return this.need(8).readDoubleBE(this.pos - 8);
      case 0x46:
        return false;
      case 0x48: // 'H'
        return this.mapEntries(depth);
      case 0x49: // 'I'
        return this.need(4).readInt32BE(this.pos - 4);
      case 0x4a: // 'J' date in ms
        return new Date(Number(this.need(8).readBigInt64BE(this.pos - 8)));
      case 0x4b: // 'K' date in minutes
        return new Date(this.need(4).readInt32BE(this.pos - 4) * 60_000);
      case 0x4c: {
        // 'L'
        const big = this.need(8).readBigInt64BE(this.pos - 8);
        return big >= BigInt(Number.MIN_SAFE_INTEGER) && big <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(big) : big;
      }
      case 0x4d: // 'M' typed map
        this.type();
        return this.mapEntries(depth);
      case 0x4e:
        return null;
      case 0x4f: // 'O'
        return this.instance(this.int(), depth);
      case 0x51: {
        // 'Q' back reference
        const ref = this.int();
        if (ref < 0 || ref >= this.refs.length) throw this.fail(`reference ${ref} to no value`);
        return this.refs[ref];
      }
      case 0x52: // 'R' non-final string chunk
      case 0x53: // 'S'
        return this.stringChunks((this.u8() << 8) | this.u8(), code === 0x53);
      case 0x54:
        return true;
      case 0x55: // 'U' variable typed list
        this.type();
        return this.variableList(depth);
      case 0x56: // 'V' fixed typed list
        this.type();
        return this.fixedList(this.int(), depth);
      case 0x57: // 'W'
        return this.variableList(depth);
      case 0x58: // 'X'
        return this.fixedList(this.int(), depth);
      case 0x59: // 'Y' long in 32 bits
        return this.need(4).readInt32BE(this.pos - 4);
      case 0x5b:
        return 0;
      case 0x5c:
        return 1;
      case 0x5d:
        return this.need(1).readInt8(this.pos - 1);
      case 0x5e:
        return this.need(2).readInt16BE(this.pos - 2);
      case 0x5f:
        return this.need(4).readInt32BE(this.pos - 4) / 1000;
      default:
        throw this.fail(`code 0x${code.toString(16)} starts no value`, this.pos - 1);
    }
  }

  private fail(message: string, at = this.pos): HessianDecodeError {
    return new HessianDecodeError(message, at);
  }

  private u8(): number {
    if (this.pos >= this.buf.length) throw this.fail('body ends inside a value');
    return this.buf[this.pos++];
  }

  /** Checks that `n` more bytes are there and steps over them; the caller reads them behind `pos`. */
  private need(n: number): Buffer {
    if (this.pos + n > this.buf.length) throw this.fail('body ends inside a value');
    this.pos += n;
    return this.buf;
  }

  private take(n: number): Buffer {
    this.need(n);
    return Buffer.from(this.buf.subarray(this.pos - n, this.pos));
  }

  private int(): number {
    const v = this.read(MAX_DEPTH);
    if (typeof v !== 'number' || !Number.isInteger(v)) throw this.fail('expected an int');
    return v;
  }

  /** String chunks: `units` UTF-16 units of CESU-8 in this chunk, more chunks follow unless `final`. */
  private stringChunks(units: number, final: boolean): string {
    let out = '';
    for (;;) {
      for (let n = 0; n < units; n++) {
        const b = this.u8();
        let unit: number;
        if (b < 0x80) unit = b;
        else if (b >= 0xc0 && b < 0xe0) unit = ((b & 0x1f) << 6) | (this.u8() & 0x3f);
        else if (b >= 0xe0 && b < 0xf0) unit = ((b & 0x0f) << 12) | ((this.u8() & 0x3f) << 6) | (this.u8() & 0x3f);
        else throw this.fail(`byte 0x${b.toString(16)} starts no character`, this.pos - 1);
        out += String.fromCharCode(unit);
      }
      if (final) return out;
      const c = this.u8();
      if (c <= 0x1f) [units, final] = [c, true];
      else if (c >= 0x30 && c <= 0x33) [units, final] = [((c - 0x30) << 8) | this.u8(), true];
      else if (c === 0x52 || c === 0x53) [units, final] = [(this.u8() << 8) | this.u8(), c === 0x53];
      else throw this.fail('a string chunk is followed by no string chunk', this.pos - 1);
    }
  }

  private binaryChunks(final: boolean): Buffer {
    const parts: Buffer[] = [];
    for (;;) {
      parts.push(this.take((this.u8() << 8) | this.u8()));
      if (final) return Buffer.concat(parts);
      const c = this.u8();
      if (c >= 0x20 && c <= 0x2f) return Buffer.concat([...parts, this.take(c - 0x20)]);
      if (c >= 0x34 && c <= 0x37) return Buffer.concat([...parts, this.take(((c - 0x34) << 8) | this.u8())]);
      if (c !== 0x41 && c !== 0x42) throw this.fail('a binary chunk is followed by no binary chunk', this.pos - 1);
      final = c === 0x42;
    }
  }

  /** A type: a string, defined here, or an int naming one defined earlier. */
  private type(): string {
    const v = this.read(MAX_DEPTH);
    if (typeof v === 'string') {
      this.types.push(v);
      return v;
    }
    if (typeof v === 'number' && v >= 0 && v < this.types.length) return this.types[v];
    throw this.fail('expected a type');
  }

  private classDef(): void {
    const name = this.read(MAX_DEPTH);
    if (typeof name !== 'string') throw this.fail('a class definition has no name');
    const count = this.int();
    if (count < 0 || count > this.buf.length - this.pos) throw this.fail(`a class definition claims ${count} fields`);
    const fields: string[] = [];
    for (let i = 0; i < count; i++) {
      const field = this.read(MAX_DEPTH);
      if (typeof field !== 'string') throw this.fail('a field name is not a string');
      fields.push(field);
    }
    this.classDefs.push({ name, fields });
  }

  private instance(ref: number, depth: number): HessianObject {
    const def = this.classDefs[ref];
    if (!def) throw this.fail(`an instance of class definition ${ref}, which was never defined`);
    const fields: Record<string, unknown> = Object.create(null);
    const obj: HessianObject = { $class: def.name, fields };
    this.refs.push(obj);
    for (const name of def.fields) fields[name] = this.read(depth + 1);
    return obj;
  }

  private fixedList(length: number, depth: number): unknown[] {
    // Each item takes at least one byte: a length beyond what is left is a lie, refused before allocating.
    if (length < 0 || length > this.buf.length - this.pos) throw this.fail(`a list claims ${length} items`);
    const list: unknown[] = [];
    this.refs.push(list);
    for (let i = 0; i < length; i++) list.push(this.read(depth + 1));
    return list;
  }

  private variableList(depth: number): unknown[] {
    const list: unknown[] = [];
    this.refs.push(list);
    while (this.peek() !== 0x5a) list.push(this.read(depth + 1));
    this.pos++;
    return list;
  }

  private mapEntries(depth: number): Map<unknown, unknown> {
    const map = new Map<unknown, unknown>();
    this.refs.push(map);
    while (this.peek() !== 0x5a) {
      const key = this.read(depth + 1);
      map.set(key, this.read(depth + 1));
    }
    this.pos++;
    return map;
  }

  private peek(): number {
    if (this.pos >= this.buf.length) throw this.fail('body ends inside a list or map');
    return this.buf[this.pos];
  }
}

/** Reads a body that must be one instance of `className`. */
export function decodeInstance(body: Buffer, className: string): Record<string, unknown> {
  const value = new HessianReader(body).read();
  if (!isHessianObject(value)) throw new HessianDecodeError(`expected an instance of ${className}`, 0);
  if (value.$class !== className) throw new HessianDecodeError(`expected ${className}, found ${value.$class}`, 0);
  return value.fields;
}

export function isHessianObject(v: unknown): v is HessianObject {
  return typeof v === 'object' && v !== null && typeof (v as HessianObject).$class === 'string' && 'fields' in v;
}

const str = (v: unknown): string | null => (typeof v === 'string' ? v : null);
/** A Java long as read: a number within 2^53 (exact there), a bigint beyond; always a bigint out. */
const long = (v: unknown): bigint | null => (typeof v === 'bigint' ? v : typeof v === 'number' && Number.isInteger(v) ? BigInt(v) : null);

export function decodeRegisterResponse(body: Buffer): RegisterResponse {
  const f = decodeInstance(body, SOFA_REGISTRY_CLASSES.registerResponse);
  return {
    success: f.success === true,
    registId: str(f.registId),
    version: long(f.version) ?? 0n,
    refused: f.refused === true,
    message: str(f.message),
  };
}

export function decodeResult(body: Buffer): Result {
  const f = decodeInstance(body, SOFA_REGISTRY_CLASSES.result);
  return { success: f.success === true, message: str(f.message) };
}

/**
 * A ReceivedData push. Lenient where Java is (a missing data map is "no data"); strict where a wrong shape would
 * otherwise turn into a wrong provider list: a zone's entry must be a list of DataBox (or null, skipped).
 */
export function decodeReceivedData(body: Buffer): ReceivedData {
  const f = decodeInstance(body, SOFA_REGISTRY_CLASSES.receivedData);
  const ids = Array.isArray(f.subscriberRegistIds) ? f.subscriberRegistIds.filter((id) => typeof id === 'string') : [];
  let data: Map<string, string[]> | null = null;
  if (f.data instanceof Map) {
    data = new Map();
    for (const [zone, boxes] of f.data) {
      if (typeof zone !== 'string') throw new HessianDecodeError('a zone of ReceivedData.data is not a string', 0);
      if (boxes === null) continue;
      if (!Array.isArray(boxes)) throw new HessianDecodeError(`ReceivedData.data[${zone}] is not a list`, 0);
      const list: string[] = [];
      for (const box of boxes) {
        if (box === null) continue;
        if (!isHessianObject(box) || box.$class !== SOFA_REGISTRY_CLASSES.dataBox) {
          throw new HessianDecodeError(`ReceivedData.data[${zone}] holds something other than a DataBox`, 0);
        }
        const text = str(box.fields.data);
        if (text !== null) list.push(text);
      }
      data.set(zone, list);
    }
  } else if (f.data !== null && f.data !== undefined) {
    throw new HessianDecodeError('ReceivedData.data is not a map', 0);
  }
  return {
    dataId: str(f.dataId),
    group: str(f.group),
    instanceId: str(f.instanceId),
    segment: str(f.segment),
    scope: str(f.scope),
    subscriberRegistIds: ids as string[],
    data,
    version: long(f.version),
    localZone: str(f.localZone),
  };
}
