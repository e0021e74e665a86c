// Dubbo: frame measuring, header-only decode (route key from the leading hessian2 strings), id rewrite, made frames.

import { i32, u32 } from './bytes';
import { ProtocolError, hexByte } from './errors';
import { HessianStringReader, hessianString } from './hessian';
import { DubboAttachmentScanner } from './hessian-skip';
import type { FrameKind } from './types';

export const DUBBO_MAGIC = 0xdabb;
export const DUBBO_HEADER_LENGTH = 16;

const FLAG_REQUEST = 0x80;
const FLAG_TWO_WAY = 0x40;
const FLAG_EVENT = 0x20;
const SERIALIZATION_MASK = 0x1f;

/** Serialization ids of the Dubbo flag byte. */
export const DubboSerialization = { HESSIAN2: 2 } as const;

const serializationNames: Record<number, string> = {
  2: 'hessian2',
  3: 'java',
  4: 'compactedjava',
  6: 'fastjson',
  7: 'nativejava',
  8: 'kryo',
  9: 'fst',
  10: 'native-hessian',
  11: 'avro',
  12: 'protostuff',
  16: 'gson',
  21: 'protobuf-json',
  22: 'protobuf',
  23: 'fastjson2',
  25: 'kryo2',
};

export function dubboSerializationName(id: number): string {
  return serializationNames[id] ?? `serialization-${id}`;
}

/** Dubbo response status byte. */
export const DubboStatus = {
  OK: 20,
  SERIALIZATION_ERROR: 25,
  CLIENT_TIMEOUT: 30,
  SERVER_TIMEOUT: 31,
  CHANNEL_INACTIVE: 35,
  BAD_REQUEST: 40,
  BAD_RESPONSE: 50,
  SERVICE_NOT_FOUND: 60,
  SERVICE_ERROR: 70,
  SERVER_ERROR: 80,
  CLIENT_ERROR: 90,
  SERVER_THREADPOOL_EXHAUSTED_ERROR: 100,
} as const;

/** Checks the magic and returns the total frame length; the 16-byte header must be available at `off`. */
export function dubboFrameLength(buf: Buffer, off: number): number {
  if (buf[off + 1] !== 0xbb) {
    throw new ProtocolError('MESHPORT_BAD_MAGIC', `Dubbo magic 0xda${hexByte(buf[off + 1])} is not 0xdabb`, off + 1);
  }
  const bodyLength = i32(buf, off + 12);
  if (bodyLength < 0) {
    throw new ProtocolError('MESHPORT_DUBBO_BAD_LENGTH', `Dubbo body length ${bodyLength} is negative`, off + 12);
  }
  return DUBBO_HEADER_LENGTH + bodyLength;
}

const reader = new HessianStringReader();
const attachments = new DubboAttachmentScanner();

/**
 * The header-only view of one Dubbo frame; for hessian2 requests, the route key: interface, version and method from
 * the body's first strings, and the group from the attachments map behind the arguments, which are stepped over
 * without building any value.
 */
export class DubboFrameHeader {
  readonly protocol = 'dubbo' as const;
  readonly kind: FrameKind;
  /** Dubbo ids are int64: kept as a decimal string so no precision is lost. */
  readonly requestId: string;
  readonly serialization: string;
  readonly serializationId: number;
  readonly status: number | undefined;
  readonly frameLength: number;
  readonly bodyLength: number;
  readonly bodyOffset = DUBBO_HEADER_LENGTH;
  readonly dubboVersion: string | null | undefined;
  readonly service: string | undefined;
  readonly version: string | null | undefined;
  readonly method: string | undefined;
  /**
   * Hessian2 requests: the `group` attachment, the last one if repeated (as the provider's HashMap keeps it);
   * undefined when there is none, or it is null, not a string, or ''.
   */
  readonly group: string | undefined;
  /** Hessian2 requests: the `interface` attachment, by the same rules as `group`. */
  readonly interfaceName: string | undefined;
  /**
   * Hessian2 requests whose body cannot be read past the leading strings (descriptor, arguments, attachments map): what
   * and where, as `<reason>, in <part> (at byte <offset in the frame>)`. Not thrown, because the frame itself is
   * sound: the one request can be answered (BAD_REQUEST) and the connection kept. Also set when the `path` or
   * `version` attachment names another service than the leading strings (a Java provider would serve the one the
   * attachments name). Undefined when the body was read, including one that ends cleanly right after the leading
   * strings or right after the arguments (no attachments).
   */
  readonly attachmentsError: string | undefined;

  constructor(frame: Buffer) {
    if (frame.length < DUBBO_HEADER_LENGTH) {
      throw new ProtocolError(
        'MESHPORT_FRAME_TRUNCATED',
        `Dubbo header needs 16 bytes, got ${frame.length}`,
        frame.length,
      );
    }
    this.frameLength = dubboFrameLength(frame, 0);
    if (frame.length < this.frameLength) {
      throw new ProtocolError(
        'MESHPORT_FRAME_TRUNCATED',
        `Dubbo frame declares ${this.frameLength} bytes, got ${frame.length}`,
        frame.length,
      );
    }
    const flag = frame[2];
    const isRequest = (flag & FLAG_REQUEST) !== 0;
    const isEvent = (flag & FLAG_EVENT) !== 0;
    this.kind = isEvent
      ? isRequest
        ? 'heartbeat'
        : 'heartbeat-ack'
      : !isRequest
        ? 'response'
        : (flag & FLAG_TWO_WAY) !== 0
          ? 'request'
          : 'oneway';
    this.serializationId = flag & SERIALIZATION_MASK;
    this.serialization = dubboSerializationName(this.serializationId);
    this.status = isRequest ? undefined : frame[3];
    this.requestId = readDubboId(frame);
    this.bodyLength = this.frameLength - DUBBO_HEADER_LENGTH;
    if (isRequest && !isEvent && this.serializationId === DubboSerialization.HESSIAN2) {
      // Body order: dubbo version, service path, service version (may be null), method, parameter-types descriptor,
      // the arguments, the attachments map.
      reader.reset(frame, DUBBO_HEADER_LENGTH, this.frameLength);
      this.dubboVersion = reader.readString();
      this.service = reader.readString() ?? undefined;
      this.version = reader.readString();
      this.method = reader.readString() ?? undefined;
      attachments.scan(frame, reader.pos, this.frameLength);
      // Java providers serve the service the `path` and `version` attachments name, read over the leading strings:
      // a request whose attachments name another service than its leading strings is not routed by either.
      const disagreement =
        attachments.error === undefined ? this.disagreement(attachments.path, attachments.version) : undefined;
      this.group = disagreement === undefined ? attachments.group : undefined;
      this.interfaceName = disagreement === undefined ? attachments.interfaceName : undefined;
      this.attachmentsError = attachments.error ?? disagreement;
    }
  }

  private disagreement(path: string | undefined, version: string | undefined): string | undefined {
    if (path !== undefined && path !== this.service) {
      return `the path attachment names ${JSON.stringify(path)}, the request ${JSON.stringify(this.service ?? null)}`;
    }
    if (version !== undefined && version !== (this.version || undefined)) {
      return `the version attachment names ${JSON.stringify(version)}, the request ${JSON.stringify(this.version ?? null)}`;
    }
    return undefined;
  }
}

function readDubboId(frame: Buffer): string {
  // The common case, an id below 2^32, needs no BigInt.
  return i32(frame, 4) === 0 ? String(u32(frame, 8)) : frame.readBigInt64BE(4).toString();
}

/** Anything that names an int64 request id. */
export type DubboRequestId = string | bigint | number;

function writeDubboId(frame: Buffer, id: DubboRequestId): void {
  if (typeof id === 'number' && Number.isInteger(id) && id >= 0 && id <= 0xffffffff) {
    frame.writeUInt32BE(0, 4);
    frame.writeUInt32BE(id, 8);
  } else {
    frame.writeBigInt64BE(BigInt.asIntN(64, BigInt(id)), 4);
  }
}

export function setDubboRequestId(frame: Buffer, id: DubboRequestId): void {
  writeDubboId(frame, id);
}

function dubboFrame(flag: number, status: number, requestId: DubboRequestId, body: Buffer): Buffer {
  const frame = Buffer.allocUnsafe(DUBBO_HEADER_LENGTH + body.length);
  frame.writeUInt16BE(DUBBO_MAGIC, 0);
  frame[2] = flag;
  frame[3] = status;
  writeDubboId(frame, requestId);
  frame.writeInt32BE(body.length, 12);
  body.copy(frame, DUBBO_HEADER_LENGTH);
  return frame;
}

// Proxy-made frames always use hessian2 (id 2): a Dubbo peer picks the deserializer from the flag byte, and every
// Dubbo implementation ships hessian2, whatever the caller's own serialization was.
const HESSIAN2_NULL = Buffer.from([0x4e]);

/** A heartbeat request: event + two-way, body hessian2 null. */
export function encodeDubboHeartbeat(requestId: DubboRequestId): Buffer {
  return dubboFrame(
    FLAG_REQUEST | FLAG_TWO_WAY | FLAG_EVENT | DubboSerialization.HESSIAN2,
    0,
    requestId,
    HESSIAN2_NULL,
  );
}

/** The answer to a heartbeat: event response, status OK, body hessian2 null. */
export function encodeDubboHeartbeatAck(requestId: DubboRequestId): Buffer {
  return dubboFrame(FLAG_EVENT | DubboSerialization.HESSIAN2, DubboStatus.OK, requestId, HESSIAN2_NULL);
}

export interface DubboErrorResponseOptions {
  requestId: DubboRequestId;
  /** A DubboStatus other than OK. */
  status: number;
  message: string;
}

/** An error response: the status byte and, as Dubbo clients read it, the message as one hessian2 string. */
export function encodeDubboErrorResponse(options: DubboErrorResponseOptions): Buffer {
  return dubboFrame(DubboSerialization.HESSIAN2, options.status, options.requestId, hessianString(options.message));
}
