// SOFA Registry's wire classes (core/model) and their Hessian 2.0 Bolt bodies, written and read with hessian.js.
//
// Facts this file rests on (sofastack/sofa-registry, sofastack/sofa-hessian):
// - Client and session server both use Bolt's default serializer, com.alipay.remoting.serialization.HessianSerializer
//   (codec byte 1), whose Hessian2Output comes from sofa-hessian, "based on Hessian v4.0.51": Hessian 2.0 proper,
//   i.e. `C` class definitions, `0x60+n` instances, `H` maps, `0x30` medium and `R` chunked strings. Not the 3.1.3
//   draft grammar (`O`/`o`, `M`...`z`) that hessian.js-1 speaks; hessian.js 2.x speaks this one, and does the grammar
//   here both ways.
// - Hessian's Java serializer writes first the fields of a primitive or java.lang type (String, Long, Integer...), then
//   the others (List, Map, objects), each group subclass first and in declaration order, skipping static and
//   transient ones. Order is cosmetic (the reader matches by name); we keep Java's, which session-java.test.ts checks
//   against what Caucho's Hessian writes for the same classes.
//
// What is written by hand around hessian.js (2.11), and why each part cannot be left to it:
// - Java types on the way out. hessian.js picks the Hessian type from the JavaScript one (a number becomes an int or
//   a double), so every long is handed over as `{ $class: 'long', $: decimal text }`: Java reads a long field only
//   from a long code, and text is what hessian.js writes exactly past 2^53.
// - A body cut short. hessian.js reads past the end of its buffer without failing where it reads a byte at a time
//   (`byte`'s get() answers undefined; an int then reads as NaN): the position after the read is checked.
// - Longs on the way in. A long past 2^53 comes back as its decimal text, the value a String of digits also reads
//   as: a long field takes both, always as a bigint (Java's reader would refuse the String; no server sends one).
// - Names from the stream as property names. hessian.js stores map entries and object fields as properties of plain
//   objects, so an entry or field named `__proto__` sets the object's prototype instead of being one: maps are read
//   from the `$map` Map it keeps beside them, and fields only as own properties.
// hessian.js never constructs a class the stream names: an object is `{ $class, $: fields }`, and a class name
// ending in Exception becomes its own JavaExceptionError, which no field here accepts. A decode handler registered
// with hessian.js (process-wide) for one of these classes would change that shape, and its bodies would be refused.
// It has no depth limit either: a body nested deep enough overflows the stack, a RangeError refused like any other.
// Its decode(buf, '2.0', { classCache }) is not used: that cache, keyed by class name and field count, skips the field
// names of every later body and trusts the first body's; a DecoderV2 per body reads each as it is.

import { RegistryError } from '@meshport/registry-core';

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

/** The hessian.js calls used here (the package ships no types). */
interface HessianJs {
  EncoderV2: new () => { write(value: unknown): unknown; get(): Buffer };
  DecoderV2: new (body: Buffer) => { read(withType: boolean): unknown; byteBuffer: { position(): number } };
}
// eslint-disable-next-line @typescript-eslint/no-require-imports
const hessian = require('hessian.js') as HessianJs;

/** A Java `long` field (see the top of this file). */
const javaLong = (value: number | bigint) => ({ $class: 'long', $: BigInt(value).toString() });

/**
 * An instance of a Java class: fields in writing order. Each body gets fresh objects and arrays: hessian.js writes a
 * value it has already written as a back reference, which Java would only write for one shared instance.
 */
const javaObject = (className: string, fields: Record<string, unknown>) => ({ $class: className, $: fields });

function body(value: unknown): Buffer {
  const encoder = new hessian.EncoderV2();
  encoder.write(value);
  return encoder.get();
}

const dataBox = (data: string) => javaObject(SOFA_REGISTRY_CLASSES.dataBox, { data });

/** BaseRegister's fields of java.lang types; its one Map, `attributes`, Java writes after every subclass's List. */
function baseFields(r: BaseRegister): Record<string, unknown> {
  return {
    instanceId: r.instanceId,
    zone: r.zone,
    appName: r.appName,
    dataId: r.dataId,
    group: r.group,
    processId: null,
    registId: r.registId,
    clientId: null,
    dataInfoId: null,
    ip: r.ip,
    port: null,
    eventType: r.eventType,
    version: javaLong(r.version),
    timestamp: javaLong(r.timestamp),
  };
}

export function encodePublisherRegister(r: PublisherRegister): Buffer {
  return body(
    javaObject(SOFA_REGISTRY_CLASSES.publisherRegister, {
      ...baseFields(r),
      // An untyped list, as Java writes an ArrayList.
      dataList: r.dataList === null ? null : r.dataList.map(dataBox),
      attributes: null,
    }),
  );
}

export function encodeSubscriberRegister(r: SubscriberRegister): Buffer {
  return body(
    javaObject(SOFA_REGISTRY_CLASSES.subscriberRegister, {
      scope: r.scope,
      // Multi-segment pushes (acceptMulti) and compressed ones (acceptEncoding) are not asked for: plain ReceivedData.
      acceptEncoding: null,
      acceptMulti: false,
      ...baseFields(r),
      attributes: null,
    }),
  );
}

export function encodeResult(r: Result): Buffer {
  return body(javaObject(SOFA_REGISTRY_CLASSES.result, { success: r.success, message: r.message }));
}

// ---------------------------------------------------------------------------------------------------------------
// Reading.

/** What hessian.js gives for an object, a typed list or map, or a boolean when asked for types. */
interface Typed {
  $class: string;
  $: unknown;
}

const isTyped = (v: unknown): v is Typed =>
  typeof v === 'object' && v !== null && typeof (v as Typed).$class === 'string' && Object.hasOwn(v, '$');

function badBody(message: string, cause?: unknown): RegistryError {
  return new RegistryError('MESHPORT_REGISTRY_SOFA_BAD_BODY', message, cause === undefined ? undefined : { cause });
}

/** One Hessian 2.0 value with its types, refused when hessian.js fails or reads past the end. */
function readValue(content: Buffer): unknown {
  const decoder = new hessian.DecoderV2(content);
  let value: unknown;
  try {
    value = decoder.read(true);
  } catch (error) {
    throw badBody(
      `not Hessian 2.0: ${(error as Error)?.message ?? String(error)} (near byte ${decoder.byteBuffer.position()})`,
      error,
    );
  }
  if (decoder.byteBuffer.position() > content.length)
    throw badBody(`the body ends inside a value (${content.length} bytes)`);
  return value;
}

/** The fields of an instance of `className`, as a function that reads only the instance's own ones. */
function instanceOf(value: unknown, className: string, what: string): (field: string) => unknown {
  if (
    !isTyped(value) ||
    typeof value.$ !== 'object' ||
    value.$ === null ||
    Array.isArray(value.$) ||
    value.$ instanceof Error
  ) {
    throw badBody(`${what} is not an instance of ${className}`);
  }
  if (value.$class !== className) throw badBody(`${what} is a ${value.$class}, not a ${className}`);
  const fields = value.$ as Record<string, unknown>;
  return (field) => (Object.hasOwn(fields, field) ? fields[field] : undefined);
}

/** Reads a body that must be one instance of `className`. */
function decodeInstance(content: Buffer, className: string): (field: string) => unknown {
  return instanceOf(readValue(content), className, 'the body');
}

const str = (v: unknown): string | null => (typeof v === 'string' ? v : null);
const bool = (v: unknown): boolean => v === true || (isTyped(v) && v.$class === 'boolean' && v.$ === true);
/** A Java long as hessian.js reads it: a number within 2^53, its decimal text beyond; always a bigint out. */
const long = (v: unknown): bigint | null =>
  typeof v === 'number' && Number.isInteger(v)
    ? BigInt(v)
    : typeof v === 'string' && /^-?\d{1,19}$/.test(v)
      ? BigInt(v)
      : null;
/** A list, untyped (an ArrayList) or typed (what Java writes for other List classes). */
const list = (v: unknown): unknown[] | undefined =>
  Array.isArray(v) ? v : isTyped(v) && Array.isArray(v.$) ? v.$ : undefined;

/** A map's entries: hessian.js keeps them in a Map beside the plain object (a back reference gives that object). */
function mapEntries(v: unknown): Map<unknown, unknown> | undefined {
  const holder = isTyped(v) ? v.$ : v;
  if (typeof holder !== 'object' || holder === null || !Object.hasOwn(holder, '$map')) return undefined;
  const map = (holder as { $map: unknown }).$map;
  return map instanceof Map ? map : undefined;
}

export function decodeRegisterResponse(content: Buffer): RegisterResponse {
  const f = decodeInstance(content, SOFA_REGISTRY_CLASSES.registerResponse);
  return {
    success: bool(f('success')),
    registId: str(f('registId')),
    version: long(f('version')) ?? 0n,
    refused: bool(f('refused')),
    message: str(f('message')),
  };
}

export function decodeResult(content: Buffer): Result {
  const f = decodeInstance(content, SOFA_REGISTRY_CLASSES.result);
  return { success: bool(f('success')), message: str(f('message')) };
}

/**
 * A ReceivedData push. Lenient where Java is (a missing data map is "no data"); strict where a wrong shape would
 * otherwise turn into a wrong provider list: a zone's entry must be a list of DataBox (or null, skipped).
 */
export function decodeReceivedData(content: Buffer): ReceivedData {
  const f = decodeInstance(content, SOFA_REGISTRY_CLASSES.receivedData);
  const ids = (list(f('subscriberRegistIds')) ?? []).filter((id): id is string => typeof id === 'string');
  let data: Map<string, string[]> | null = null;
  const raw = f('data');
  const entries = mapEntries(raw);
  if (entries) {
    data = new Map();
    for (const [zone, boxes] of entries) {
      if (typeof zone !== 'string') throw badBody('a zone of ReceivedData.data is not a string');
      if (boxes === null) continue;
      const items = list(boxes);
      if (!items) throw badBody(`ReceivedData.data[${zone}] is not a list`);
      const texts: string[] = [];
      for (const box of items) {
        if (box === null) continue;
        const text = str(
          instanceOf(box, SOFA_REGISTRY_CLASSES.dataBox, `an item of ReceivedData.data[${zone}]`)('data'),
        );
        if (text !== null) texts.push(text);
      }
      data.set(zone, texts);
    }
  } else if (raw !== null && raw !== undefined) {
    throw badBody('ReceivedData.data is not a map');
  }
  return {
    dataId: str(f('dataId')),
    group: str(f('group')),
    instanceId: str(f('instanceId')),
    segment: str(f('segment')),
    scope: str(f('scope')),
    subscriberRegistIds: ids,
    data,
    version: long(f('version')),
    localZone: str(f('localZone')),
  };
}
