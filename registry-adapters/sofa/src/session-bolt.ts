// Bolt request and response frames with a class name and a body, as SOFA Registry's peers exchange them.
//
// @meshport/protocol only makes the frames a proxy needs (heartbeats, error answers); a registry client also sends
// requests of its own and answers pushes with a body. Header maps stay empty: SOFA Registry sets none.

import { crc32 } from 'node:zlib';
import { BoltCmdCode, BoltCodec, BoltStatus, BoltType, type BoltFrameOptions } from '@meshport/protocol';

export interface BoltMessageSpec extends BoltFrameOptions {
  requestId: number;
  /** The Java class of the body, e.g. com.alipay.sofa.registry.core.model.PublisherRegister. */
  className: string;
  content: Buffer;
}

/** A request (cmdcode 1, type request) with an empty header map. */
export function encodeBoltRequest(spec: BoltMessageSpec & { timeoutMs: number }): Buffer {
  return encode(spec, BoltType.REQUEST, BoltCmdCode.REQUEST, spec.timeoutMs);
}

/** A response (cmdcode 2) to `requestId`; `status` defaults to SUCCESS. */
export function encodeBoltResponse(spec: BoltMessageSpec & { status?: number }): Buffer {
  return encode(spec, BoltType.RESPONSE, BoltCmdCode.RESPONSE, spec.status ?? BoltStatus.SUCCESS);
}

function encode(spec: BoltMessageSpec, type: number, cmd: number, timeoutOrStatus: number): Buffer {
  const v2 = spec.protocolVersion === 2;
  const s = v2 ? 1 : 0;
  const isResponse = type === BoltType.RESPONSE;
  const className = Buffer.from(spec.className, 'utf8');
  // v1: request fixed part 22, response 20; v2 adds ver1 and switch bytes.
  const fixed = (isResponse ? 20 : 22) + 2 * s;
  const ver1 = spec.ver1 ?? 1;
  const switchFlags = spec.switchFlags ?? 0;
  const withCrc = v2 && ver1 === 2 && (switchFlags & 1) === 1;
  const end = fixed + className.length + spec.content.length;
  const frame = Buffer.alloc(end + (withCrc ? 4 : 0));
  frame[0] = v2 ? 0x02 : 0x01;
  if (v2) frame[1] = ver1;
  frame[1 + s] = type;
  frame.writeUInt16BE(cmd, 2 + s);
  frame[4 + s] = 1; // ver2
  frame.writeInt32BE(spec.requestId | 0, 5 + s);
  frame[9 + s] = spec.codec ?? BoltCodec.HESSIAN2;
  if (v2) frame[11] = switchFlags;
  const tail = 10 + 2 * s; // first field after codec (and switch)
  let p = tail;
  if (isResponse) {
    frame.writeUInt16BE(timeoutOrStatus, p);
    p += 2;
  } else {
    frame.writeInt32BE(timeoutOrStatus | 0, p);
    p += 4;
  }
  frame.writeInt16BE(className.length, p);
  frame.writeInt16BE(0, p + 2);
  frame.writeInt32BE(spec.content.length, p + 4);
  className.copy(frame, fixed);
  spec.content.copy(frame, fixed + className.length);
  if (withCrc) frame.writeInt32BE(crc32(frame.subarray(0, end)) | 0, end);
  return frame;
}
