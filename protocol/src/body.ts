// Full body decode for the CLI only (`meshport decode --body`): never imported by the data path.

import * as hessian4 from 'hessian.js';
import * as hessianDraft from 'hessian.js-1';
import { BoltCodec } from './bolt';
import { DubboSerialization } from './dubbo';
import { ProtocolError } from './errors';
import type { FrameHeader } from './frame';

/**
 * Every value in the body, in order, as plain JSON-safe data. SOFA (Bolt) bodies use the Hessian 3.1.3 draft grammar
 * and are read with hessian.js-1; Dubbo bodies use Hessian 2.0 and are read with hessian.js. Neither library calls a
 * constructor named by the stream; decoded exceptions and typed values are flattened to plain objects here.
 */
export function decodeBody(frame: Buffer, header: FrameHeader): unknown[] {
  const body = frame.subarray(header.bodyOffset, header.bodyOffset + header.bodyLength);
  if (body.length === 0) return [];
  let decoder: HessianReader;
  if (header.protocol === 'bolt') {
    if (header.codec !== BoltCodec.HESSIAN2) throw undecodable(header.serialization, header.bodyOffset);
    decoder = new hessianDraft.DecoderV2(body);
  } else {
    if (header.serializationId !== DubboSerialization.HESSIAN2)
      throw undecodable(header.serialization, header.bodyOffset);
    decoder = new hessian4.DecoderV2(body);
  }
  const values: unknown[] = [];
  try {
    while (decoder.byteBuffer.position() < body.length) values.push(toPlain(decoder.read(), 0));
  } catch (err) {
    if (err instanceof ProtocolError) throw err;
    const at = header.bodyOffset + decoder.byteBuffer.position();
    throw new ProtocolError('MESHPORT_BODY_UNDECODABLE', `hessian body: ${(err as Error).message}`, at);
  }
  return values;
}

/** What both hessian libraries' DecoderV2 offer that we use. */
interface HessianReader {
  read(): unknown;
  byteBuffer: { position(): number };
}

function undecodable(serialization: string, at: number): ProtocolError {
  return new ProtocolError('MESHPORT_BODY_UNDECODABLE', `no body decoder for serialization ${serialization}`, at);
}

const MAX_DEPTH = 64;

/** Plain data only: own enumerable keys copied with define semantics (a `__proto__` key stays a key). */
function toPlain(value: unknown, depth: number): unknown {
  if (value === null || value === undefined) return null;
  if (typeof value === 'bigint') return value.toString();
  if (typeof value !== 'object') return value;
  if (depth > MAX_DEPTH) return '[too deep]';
  if (Buffer.isBuffer(value)) return { $binary: value.toString('base64') };
  if (value instanceof Date) return value.toISOString();
  if (Array.isArray(value)) return value.map((v) => toPlain(v, depth + 1));
  if (value instanceof Map) {
    return Object.fromEntries([...value].map(([k, v]) => [String(k), toPlain(v, depth + 1)]));
  }
  if (value instanceof Error) {
    return { $exception: value.name, message: value.message };
  }
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, toPlain(v, depth + 1)]));
}
