// Hand-built frames for tests: every byte placed by the wire facts of PROTOCOLS.md, independent of the codec.

import { crc32 } from 'node:zlib';
import { hessianString } from '../../src/hessian';

export interface BoltBuild {
  version?: 1 | 2;
  ver1?: 1 | 2;
  switchFlags?: number;
  type?: number; // 0 response, 1 request, 2 oneway
  cmd?: number; // 0 heartbeat, 1 request, 2 response
  id?: number;
  codec?: number;
  timeout?: number;
  status?: number;
  className?: string;
  headers?: Record<string, string | null>;
  rawHeader?: Buffer;
  content?: Buffer;
}

export function headerMap(headers: Record<string, string | null>): Buffer {
  const parts: Buffer[] = [];
  for (const [k, v] of Object.entries(headers)) {
    const key = Buffer.from(k);
    const len = Buffer.alloc(4);
    len.writeInt32BE(key.length);
    parts.push(len, key);
    const vlen = Buffer.alloc(4);
    if (v === null) {
      vlen.writeInt32BE(-1);
      parts.push(vlen);
    } else {
      const val = Buffer.from(v);
      vlen.writeInt32BE(val.length);
      parts.push(vlen, val);
    }
  }
  return Buffer.concat(parts);
}

export function bolt(b: BoltBuild = {}): Buffer {
  const v2 = b.version === 2;
  const type = b.type ?? 1;
  const isResponse = type === 0;
  const cmd = b.cmd ?? (isResponse ? 2 : 1);
  const className = Buffer.from(
    b.className ??
      (isResponse ? 'com.alipay.sofa.rpc.core.response.SofaResponse' : 'com.alipay.sofa.rpc.core.request.SofaRequest'),
  );
  const header = b.rawHeader ?? headerMap(b.headers ?? (isResponse ? {} : { service: 'com.example.EchoService:1.0' }));
  const content = b.content ?? Buffer.from('content-bytes');
  const head: number[] = [v2 ? 2 : 1];
  if (v2) head.push(b.ver1 ?? 1);
  head.push(type, cmd >> 8, cmd & 0xff, 1);
  const id = Buffer.alloc(4);
  id.writeInt32BE(b.id ?? 7);
  head.push(...id, b.codec ?? 1);
  if (v2) head.push(b.switchFlags ?? 0);
  const tail = Buffer.alloc(isResponse ? 10 : 12);
  if (isResponse) {
    tail.writeUInt16BE(b.status ?? 0, 0);
    tail.writeInt16BE(className.length, 2);
    tail.writeInt16BE(header.length, 4);
    tail.writeInt32BE(content.length, 6);
  } else {
    tail.writeInt32BE(b.timeout ?? 3000, 0);
    tail.writeInt16BE(className.length, 4);
    tail.writeInt16BE(header.length, 6);
    tail.writeInt32BE(content.length, 8);
  }
  const frame = Buffer.concat([Buffer.from(head), tail, className, header, content]);
  if (v2 && (b.ver1 ?? 1) === 2 && ((b.switchFlags ?? 0) & 1) === 1) {
    const crc = Buffer.alloc(4);
    crc.writeInt32BE(crc32(frame) | 0);
    return Buffer.concat([frame, crc]);
  }
  return frame;
}

export interface DubboBuild {
  flag?: number;
  status?: number;
  id?: bigint;
  dubboVersion?: string;
  service?: string;
  version?: string | null;
  method?: string;
  /** Replaces the whole body. */
  body?: Buffer;
}

export function dubbo(d: DubboBuild = {}): Buffer {
  const str = (s: string | null) => (s === null ? Buffer.from([0x4e]) : hessianString(s));
  const body =
    d.body ??
    Buffer.concat([
      str(d.dubboVersion ?? '2.0.2'),
      str(d.service ?? 'org.apache.dubbo.demo.DemoService'),
      str(d.version === undefined ? '1.0.0' : d.version),
      str(d.method ?? 'sayHello'),
      str('Ljava/lang/String;'),
      str('world'),
      Buffer.from('H', 'latin1'), // an attachments map would follow; its bytes are never read
      Buffer.from('Z', 'latin1'),
    ]);
  const head = Buffer.alloc(16);
  head.writeUInt16BE(0xdabb, 0);
  head[2] = d.flag ?? 0xc2;
  head[3] = d.status ?? 0;
  head.writeBigInt64BE(d.id ?? 42n, 4);
  head.writeInt32BE(body.length, 12);
  return Buffer.concat([head, body]);
}

/** Every way of cutting `input` the ioredis decoder tests use: whole, byte by byte, and in two at every point. */
export function* chunkings(input: Buffer, maxSplits = Infinity): Generator<{ name: string; chunks: Buffer[] }> {
  yield { name: 'whole', chunks: [input] };
  yield { name: 'byte by byte', chunks: [...input].map((b) => Buffer.from([b])) };
  const step = Math.max(1, Math.ceil(input.length / maxSplits));
  for (let i = 1; i < input.length; i += step) {
    yield { name: `split at ${i}`, chunks: [input.subarray(0, i), input.subarray(i)] };
  }
}
