// The part of the peer libraries the benchmarks call. None of them ships types; these describe only what
// packages/bench uses, as read from the installed sources (sofa-bolt-node 2.0.1, dubbo-remoting 2.1.4, hessian.js 2.11.0).

declare module 'sofa-bolt-node/lib/protocol' {
  /** What sofa-bolt-node's RpcRequestCommand reads from a request. */
  export interface SofaRequestInput {
    serverSignature: string;
    methodName: string;
    /** Arguments; `{ $class, $ }` gives the Java type explicitly. */
    args: unknown[];
    timeout: number;
    targetAppName?: string;
    requestProps?: Record<string, unknown> | null;
    oneway?: boolean;
  }

  export interface BoltEncodeOptions {
    /** 'bolt' is v1, 'bolt2' is v2. */
    protocolType: 'bolt' | 'bolt2';
    codecType: 'hessian2' | 'protobuf';
    boltVersion?: number;
    crcEnable?: boolean;
  }

  /** The options sofa-bolt-node's stream decoder passes on (sofa-rpc-node's server sets these). */
  export interface BoltDecodeOptions {
    sentReqs?: Map<number, unknown>;
    classCache?: Map<string, unknown> & { enableCompile?: boolean };
    classMap?: object;
    proto?: object;
  }

  export interface BoltDecodedRequest {
    targetAppName: string | null;
    methodName: string;
    serverSignature: string;
    args: unknown[];
    methodArgSigs: string[];
    requestProps: Record<string, unknown> | null;
  }

  export interface BoltDecodedPacket {
    packetId: number;
    packetType: 'request' | 'response' | 'heartbeat' | 'heartbeat_ack';
    data?: BoltDecodedRequest;
    className?: string;
    options: object;
    meta: { size: number; start: number; rt: number } | null;
  }

  /** A whole request frame (class, header map, hessian content). */
  export function requestEncode(id: number, req: SofaRequestInput, options: BoltEncodeOptions): Buffer;
  /** Decodes one whole frame, body included (the peer's only decode path). */
  export function decode(buf: Buffer, options?: BoltDecodeOptions): BoltDecodedPacket;
}

declare module 'dubbo-remoting/lib/protocol' {
  export interface DubboRequestInput {
    /** `interface:version` (or just the interface). */
    serverSignature: string;
    methodName: string;
    args: unknown[];
    group?: string;
    requestProps?: Record<string, unknown>;
  }

  export interface DubboEncodeOptions {
    codecType?: 'hessian2';
    classMap?: object;
  }

  /** A whole request frame: 16-byte header, hessian2 body (version, path, version, method, desc, args, attachments). */
  export function requestEncode(id: number, data: DubboRequestInput, options: DubboEncodeOptions): Buffer;
}

declare module 'hessian.js' {
  /** Hessian 2.0 decoder. */
  export class DecoderV2 {
    constructor(buf?: Buffer, classCache?: Map<string, unknown>);
    read(withType?: boolean): unknown;
    position(): number;
    position(num: number): this;
    byteBuffer: { position(): number; limit(): number };
  }
}
