// The frames of the forward suite, and the few wire fields its load generator and echo server touch directly.

import {
  BOLT_SERVICE,
  DUBBO_INTERFACE,
  DUBBO_VERSION,
  TARGET_BODY,
  boltContentLength,
  boltRequest,
  dubboBodyLength,
  dubboRequest,
  fitArgument,
} from '../suites/decode';

export type BenchProtocol = 'bolt' | 'dubbo';

/** Route keys as the router reads them: Bolt's `service` header; Dubbo's `interface:version`. */
export const ROUTE_KEYS: Record<BenchProtocol, string> = {
  bolt: BOLT_SERVICE,
  dubbo: `${DUBBO_INTERFACE}:${DUBBO_VERSION}`,
};

/**
 * One request frame with a 256-byte body, as the peers' encoders make it (the decode suite's fixtures): a Bolt v1
 * SofaRequest by sofa-bolt-node, or a Dubbo hessian2 request by dubbo-remoting. Its id is rewritten per send.
 */
export function requestTemplate(protocol: BenchProtocol): { frame: Buffer; bodyBytes: number } {
  if (protocol === 'bolt') {
    const arg = fitArgument((a) => boltRequest(1, a), boltContentLength, TARGET_BODY);
    const frame = boltRequest(1, arg);
    return { frame, bodyBytes: boltContentLength(frame) };
  }
  const arg = fitArgument((a) => dubboRequest(1, a), dubboBodyLength, TARGET_BODY);
  const frame = dubboRequest(1, arg);
  return { frame, bodyBytes: dubboBodyLength(frame) };
}

// Wire layout (protocol/PROTOCOLS.md). Bolt v1: id int32 at 5; a response has status u16 at 10 and a 20-byte fixed
// header. Dubbo: 16-byte header, flag at 2 (0x80 = request), status at 3 (20 = OK), id int64 at 4, body length at 12.

/** Writes `id` (0 <= id < 2^31) as the request id of the frame at the start of `frame`. */
export function writeId(protocol: BenchProtocol, frame: Buffer, id: number): void {
  if (protocol === 'bolt') {
    frame.writeInt32BE(id, 5);
  } else {
    frame.writeUInt32BE(0, 4);
    frame.writeUInt32BE(id, 8);
  }
}

/** The id of a response frame, or -1 when it is not a successful response of the protocol. */
export function okResponseId(protocol: BenchProtocol, frame: Buffer): number {
  if (protocol === 'bolt') {
    if (frame[0] !== 1 || frame[1] !== 0 || frame.readUInt16BE(10) !== 0) return -1;
    return frame.readInt32BE(5);
  }
  if (frame[0] !== 0xda || (frame[2] & 0x80) !== 0 || frame[3] !== 20 || frame.readUInt32BE(4) !== 0) return -1;
  return frame.readUInt32BE(8);
}

/** Bytes of the echo server's answer to a request of `bodyBytes` body: Bolt 20-byte header, Dubbo 16. */
export function responseBytes(protocol: BenchProtocol, bodyBytes: number): number {
  return (protocol === 'bolt' ? 20 : 16) + bodyBytes;
}
