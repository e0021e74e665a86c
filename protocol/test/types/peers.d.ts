// The slices of the npm peers (sofa-bolt-node 2.0.1, dubbo-remoting 2.1.4, hessian.js 2.11.0) that the differential
// and fixture tests call. None of them ships types. Only what the tests use is declared.

declare module 'sofa-bolt-node/lib/protocol' {
  export interface BoltPeerOptions {
    /** 'bolt' writes v1 frames (proto 0x01), 'bolt2' v2 frames (proto 0x02). */
    protocolType: 'bolt' | 'bolt2';
    /** v2 only: the ver1 byte. */
    boltVersion?: number;
    /** v2 only: sets the switch byte to 1 and appends a CRC32. */
    crcEnable?: boolean;
    codecType: 'hessian2' | 'protobuf';
  }

  export interface BoltPeerRequest {
    serverSignature: string;
    methodName: string;
    args: unknown[];
    timeout: number;
    oneway?: boolean;
    targetAppName?: string;
    requestProps?: Record<string, unknown>;
  }

  export interface BoltPeerResponse {
    isError?: boolean;
    errorMsg?: string;
    appResponse?: unknown;
    /** A Bolt respStatus; defaults to SUCCESS or SERVER_EXCEPTION from isError. */
    status?: number;
    responseProps?: Record<string, string>;
  }

  export interface BoltPeerPacket {
    packetId: number;
    packetType: 'request' | 'response' | 'heartbeat' | 'heartbeat_ack';
    data?: any;
    className?: string;
    options: {
      protocolType: 'bolt' | 'bolt2';
      boltVersion?: number;
      codecType: string;
      timeout?: number;
      crcEnable?: boolean;
    };
  }

  /** The growable buffer (npm `byte`) a command serializes into. */
  export interface BoltPeerByteBuffer {
    put(bytes: Buffer): unknown;
  }

  /** A hand-made command: requestEncode/responseEncode use it as is when it has a className. */
  export interface BoltPeerCommand {
    className: string;
    timeout?: number;
    oneway?: boolean;
    responseStatus?: number;
    serializeClazz(bb: BoltPeerByteBuffer): void;
    serializeHeader(bb: BoltPeerByteBuffer): void;
    serializeContent(bb: BoltPeerByteBuffer): void;
  }

  /** The part of a protobufjs Root the protobuf codec calls (lookupService(name).get(method).resolve()). */
  export interface BoltPeerProto {
    lookupService(name: string): { get(method: string): { resolve(): object } | null };
  }

  export interface BoltPeerCodecOptions extends BoltPeerOptions {
    proto?: BoltPeerProto;
  }

  export function requestEncode(id: number, req: BoltPeerRequest | BoltPeerCommand, options: BoltPeerCodecOptions): Buffer;
  export function responseEncode(
    id: number,
    res: BoltPeerResponse | BoltPeerCommand | (BoltPeerResponse & { appRequest: { serverSignature: string; methodName: string } }),
    options: BoltPeerCodecOptions,
  ): Buffer;
  export function heartbeatEncode(id: number, hb: { timeout?: number }, options: BoltPeerOptions): Buffer;
  export function heartbeatAckEncode(id: number, options: BoltPeerOptions): Buffer;
  /** Throws `CRC check failed!` when the switch byte is 1 and the last four bytes are not the CRC32. */
  export function decode(
    buf: Buffer,
    options?: { proto?: BoltPeerProto; sentReqs?: Map<number, { req: { serverSignature: string; methodName: string } }> },
  ): BoltPeerPacket;
}

declare module 'sofa-bolt-node/lib/simple_map_serializer' {
  /** The Bolt header map as sofa-bolt-node writes it: `[i32 len][key][i32 len][value]`, -1 for a null value. */
  export function encode(map: Record<string, string | null>): Buffer;
  export function decode(buf: Buffer): Record<string, string | null> | null;
}

declare module 'sofa-bolt-node/lib/decoder' {
  import { Writable } from 'node:stream';
  /** The client's stream framer: emits `request`, `response`, `heartbeat`, `heartbeat_ack` per whole frame. */
  class ProtocolDecoder extends Writable {
    constructor(options?: object);
  }
  export = ProtocolDecoder;
}

declare module 'dubbo-remoting/lib/protocol' {
  export interface DubboPeerRequest {
    /** `path` or `path:version`. */
    serverSignature: string;
    methodName: string;
    args: unknown[];
    group?: string;
    requestProps?: Record<string, unknown>;
  }

  export interface DubboPeerPacket {
    /** A number when it fits 2^53, else a decimal string. */
    packetId: number | string;
    packetType: 'request' | 'response' | 'heartbeat' | 'heartbeat_ack';
    data: any;
    options: { protocolType: 'dubbo'; codecType: string };
  }

  export function requestEncode(id: number | string, data: DubboPeerRequest, options: object): Buffer;
  export function responseEncode(
    id: number | string,
    data: { isError?: boolean; errorMsg?: string; appResponse?: unknown },
    options: object,
  ): Buffer;
  export function heartbeatEncode(id: number | string, hb: object, options: object): Buffer;
  export function heartbeatAckEncode(id: number | string, options: object): Buffer;
  export function decode(buf: Buffer, options?: object): DubboPeerPacket;
}

declare module 'dubbo-remoting/lib/protocol/response' {
  class Response {
    constructor(id: number | string);
    id: number | string;
    status: number;
    errorMsg: string | null;
    data: unknown;
    event: unknown;
    encode(options?: object): Buffer;
  }
  export = Response;
}

declare module 'dubbo-remoting/lib/protocol/request' {
  class Request {
    constructor(id: number | string);
    isTwoWay: boolean;
    data: unknown;
    event: unknown;
    encode(options?: object): Buffer;
  }
  export = Request;
}

declare module 'dubbo-remoting/lib/protocol/invocation' {
  class Invocation {
    constructor(options: { methodName: string; args: unknown[]; attachments: Record<string, unknown> });
  }
  export = Invocation;
}

declare module 'dubbo-remoting/lib/serialize' {
  /** The hessian2 output dubbo-remoting's Request.encode writes with (a shared hessian.js EncoderV2). */
  export interface DubboPeerOutput {
    readonly bytes: {
      put(b: number): unknown;
      putLong(n: number | string): unknown;
      skip(n: number): unknown;
      position(): number;
      _bytes: Buffer;
    };
    readonly contentTypeId: number;
    writeUTF(s: string): unknown;
    writeObject(v: unknown): unknown;
    get(): Buffer;
  }
  export function getSerializationByName(name: 'hessian2'): { serialize(): DubboPeerOutput };
}

declare module 'dubbo-remoting/lib/utils' {
  /** `Ljava/lang/String;I...` for the given arguments, as dubbo-remoting writes it. */
  export function getJavaArgsDesc(args: unknown[]): string;
}

declare module 'dubbo-remoting' {
  import type { Writable } from 'node:stream';
  /** A Writable that emits `request`, `response`, `heartbeat`, `heartbeat_ack` per whole frame. */
  export function decoder(options?: object): Writable;
}

// hessian.js: the reference reader for the leading strings of a Dubbo body. Merges with src/vendor-types.
declare module 'hessian.js' {
  interface DecoderV2 {
    /** Moves the read position. */
    position(num: number): DecoderV2;
  }
}

// hessian.js's Hessian 2.0 writer, for requests built value by value (class definitions, refs and type refs shared
// across the whole body, as a real request has them).
declare module 'hessian.js' {
  export class EncoderV2 {
    constructor(options?: { size?: number; mapTypes?: Record<string, boolean> });
    write(value: unknown): EncoderV2;
    writeString(s: string): EncoderV2;
    writeNull(): EncoderV2;
    get(): Buffer;
  }
}
