// Test peers on loopback built on the protocol package: a pipelining client and a holding provider (request frames
// and the echo provider with knobs are @meshport/testkit's).

import net from 'node:net';
import { once } from 'node:events';
import { crc32 } from 'node:zlib';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  FrameSplitter,
  decodeFrame,
  encodeBoltHeartbeatAck,
  encodeDubboHeartbeatAck,
  type FrameHeader,
} from '@meshport/protocol';
import { echoResponse } from '@meshport/testkit';

/** A client that sends frames on one connection and collects every answer, decoded, with its frame. */
export class FrameClient {
  readonly socket: net.Socket;
  readonly answers: { header: FrameHeader; frame: Buffer }[] = [];
  closed = false;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    const splitter = new FrameSplitter((frame) =>
      this.answers.push({ header: decodeFrame(frame), frame: Buffer.from(frame) }),
    );
    socket.on('data', (c) => splitter.write(c));
    socket.on('close', () => (this.closed = true));
    socket.on('error', () => {});
  }

  /** `from`: the local address to connect from (any of 127.0.0.0/8 on Linux), to act as another source host. */
  static async connect(port: number, from?: string): Promise<FrameClient> {
    const socket = net.connect({ port, host: '127.0.0.1', localAddress: from });
    await once(socket, 'connect');
    return new FrameClient(socket);
  }

  send(frame: Buffer): void {
    this.socket.write(frame);
  }

  async waitFor(count: number, ms = 5000): Promise<void> {
    await until(() => this.answers.length >= count, `${count} answers (have ${this.answers.length})`, ms);
  }

  close(): void {
    this.socket.destroy();
  }
}

export async function until(check: () => boolean | Promise<boolean>, what: string, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

/** What a hand-made Bolt request carries: any header map (or raw, possibly broken, map bytes), v1 or v2, any CRC. */
export interface BoltRequestSpec {
  id: number;
  /** Written as the `service` header (before `headers`). */
  service?: string;
  headers?: Record<string, string>;
  /** Header-map bytes as given, instead of `service` and `headers`: for broken maps. */
  rawHeader?: Buffer;
  body?: string;
  /** @default 3000 */
  timeoutMs?: number;
  /** @default 1 */
  version?: 1 | 2;
  /** v2 only. @default 1 */
  ver1?: 1 | 2;
  /** v2 only: the switch byte; bit 0 with ver1 2 appends a CRC32. @default 0 */
  switchFlags?: number;
  /** When a CRC is appended: a right one, or one that does not match. @default 'good' */
  crc?: 'good' | 'bad';
}

/** A Bolt request frame built field by field (see PROTOCOLS.md), for the frames boltRequest cannot make. */
export function boltRequestFrame(spec: BoltRequestSpec): Buffer {
  const v2 = spec.version === 2;
  const s = v2 ? 1 : 0;
  const cls = Buffer.from('com.alipay.sofa.rpc.core.request.SofaRequest');
  let header = spec.rawHeader;
  if (header === undefined) {
    const entries: [string, string][] = [];
    if (spec.service !== undefined) entries.push(['service', spec.service]);
    entries.push(...Object.entries(spec.headers ?? {}));
    header = Buffer.concat(
      entries.flatMap(([k, v]) => {
        const key = Buffer.from(k);
        const val = Buffer.from(v);
        const kl = Buffer.alloc(4);
        kl.writeInt32BE(key.length);
        const vl = Buffer.alloc(4);
        vl.writeInt32BE(val.length);
        return [kl, key, vl, val];
      }),
    );
  }
  const content = Buffer.from(spec.body ?? '');
  const fixed = Buffer.alloc(22 + 2 * s);
  fixed[0] = v2 ? 2 : 1;
  if (v2) fixed[1] = spec.ver1 ?? 1;
  fixed[1 + s] = 1; // type: request
  fixed.writeUInt16BE(1, 2 + s); // cmdcode: request
  fixed[4 + s] = 1;
  fixed.writeInt32BE(spec.id, 5 + s);
  fixed[9 + s] = 1; // hessian2
  if (v2) fixed[11] = spec.switchFlags ?? 0;
  fixed.writeInt32BE(spec.timeoutMs ?? 3000, 10 + 2 * s);
  fixed.writeInt16BE(cls.length, 14 + 2 * s);
  fixed.writeInt16BE(header.length, 16 + 2 * s);
  fixed.writeInt32BE(content.length, 18 + 2 * s);
  const frame = Buffer.concat([fixed, cls, header, content]);
  if (!(v2 && spec.ver1 === 2 && ((spec.switchFlags ?? 0) & 1) === 1)) return frame;
  const crc = Buffer.alloc(4);
  crc.writeInt32BE(crc32(frame) | 0);
  if (spec.crc === 'bad') crc[3] ^= 0xff;
  return Buffer.concat([frame, crc]);
}

/** A provider that answers nothing until told: every request is held (in order) until `release`. */
export interface HoldingServer {
  port: number;
  /** Requests seen, in arrival order. */
  seen: FrameHeader[];
  /** Requests received and not yet answered. */
  readonly held: number;
  connections: Set<net.Socket>;
  /** Answers (echo) the `count` oldest held requests, all by default; returns how many were answered. */
  release(count?: number): number;
  close(): Promise<void>;
}

export async function startHoldingServer(): Promise<HoldingServer> {
  const connections = new Set<net.Socket>();
  const queue: { socket: net.Socket; reply: Buffer }[] = [];
  const state: HoldingServer = {
    port: 0,
    seen: [],
    get held() {
      return queue.length;
    },
    connections,
    release(count = queue.length) {
      const batch = queue.splice(0, count);
      for (const { socket, reply } of batch) if (!socket.destroyed) socket.write(reply);
      return batch.length;
    },
    close: async () => {
      queue.length = 0;
      for (const s of connections) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
  const server = net.createServer((socket) => {
    connections.add(socket);
    socket.on('close', () => connections.delete(socket));
    socket.on('error', () => {});
    const splitter = new FrameSplitter((frame) => {
      const header = decodeFrame(frame);
      if (header.kind === 'heartbeat') {
        socket.write(
          header.protocol === 'dubbo'
            ? encodeDubboHeartbeatAck(header.requestId)
            : encodeBoltHeartbeatAck(header.requestId),
        );
        return;
      }
      if (header.kind !== 'request') return;
      state.seen.push(header);
      queue.push({ socket, reply: echoResponse(Buffer.from(frame), header) });
    });
    socket.on('data', (c) => splitter.write(c));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  state.port = (server.address() as net.AddressInfo).port;
  return state;
}

/** A loopback port nothing listens on (bound once, then closed): connecting to it is refused. */
export async function closedPort(): Promise<number> {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as net.AddressInfo).port;
  await new Promise((r) => server.close(r));
  return port;
}

/**
 * The text a request's body names, which an echoed answer carries back: Bolt's content; Dubbo's one String argument
 * (the sixth value, after the leading strings and the descriptor; the attachments follow it).
 */
export function echoedText(frame: Buffer): string {
  const header = decodeFrame(frame);
  if (header.protocol === 'bolt')
    return frame.toString('utf8', header.bodyOffset, header.bodyOffset + header.bodyLength);
  let p = header.bodyOffset;
  const next = () => {
    const code = frame[p];
    const [start, length] = code < 0x20 ? [p + 1, code] : [p + 2, ((code - 0x30) << 8) | frame[p + 1]];
    p = start + length;
    return frame.toString('utf8', start, p);
  };
  for (let i = 0; i < 5; i++) next();
  return next();
}
