// A raw Bolt/Dubbo provider on loopback that answers every request with its own body (an echo), for suites that test
// what sits between an app and a provider: it counts what reached it, and can be told to answer late, drop, reset or
// answer with other bytes. Built on the protocol package's framer, so it reads what a real provider reads.

import { once } from 'node:events';
import net from 'node:net';
import {
  FrameSplitter,
  decodeFrame,
  encodeBoltHeartbeatAck,
  encodeDubboHeartbeatAck,
  type FrameHeader,
} from '@meshport/protocol';
import { HOST } from './ports';

/** The success response to a request: same id, its body echoed (or `body` when given). */
export function echoResponse(frame: Buffer, header: FrameHeader, body?: Buffer): Buffer {
  const content = body ?? frame.subarray(header.bodyOffset, header.bodyOffset + header.bodyLength);
  if (header.protocol === 'dubbo') {
    const head = Buffer.from(frame.subarray(0, 16));
    head[2] = 0x02; // response, hessian2
    head[3] = 20; // OK
    head.writeInt32BE(content.length, 12);
    return Buffer.concat([head, content]);
  }
  const fixed = Buffer.alloc(20);
  fixed[0] = 1; // Bolt v1
  fixed[1] = 0; // response
  fixed.writeUInt16BE(2, 2); // RPC response
  fixed[4] = 1;
  fixed.writeInt32BE(header.requestId, 5);
  fixed[9] = 1; // hessian2
  fixed.writeUInt16BE(0, 10); // SUCCESS
  fixed.writeInt32BE(content.length, 16);
  return Buffer.concat([fixed, content]);
}

/** What the provider does with one request: answer (after its service time), drop it, answer late, or reset. */
export type EchoBehaviour = 'answer' | 'drop' | 'reset' | { delayMs: number };

export interface EchoProvider {
  port: number;
  /** Every request and one-way frame's header, in arrival order. */
  seen: FrameHeader[];
  connections: Set<net.Socket>;
  /** Decides per request. @default () => 'answer' */
  behave: (header: FrameHeader) => EchoBehaviour;
  /** Heartbeats received, and whether they are acknowledged (default true). */
  heartbeats: number;
  answerHeartbeats: boolean;
  /** Requests being served now, and the most ever at once: the provider's own view of what was let through. */
  active: number;
  maxActive: number;
  served: number;
  /** Answers each request after this long (a fixed service time, so the provider's capacity is known). */
  serviceTimeMs: number;
  /** Answers with these bytes instead of an echo (a recorded response, say). */
  respond?: (frame: Buffer, header: FrameHeader) => Buffer;
  /** Keep every request frame in `frames`. @default false */
  keepFrames: boolean;
  frames: Buffer[];
  close(): Promise<void>;
}

/** A raw Bolt/Dubbo echo provider on 127.0.0.1 (a port of its own); every request answered after `serviceTimeMs`. */
export async function startEchoProvider(serviceTimeMs = 0): Promise<EchoProvider> {
  const connections = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    connections.add(socket);
    socket.on('close', () => connections.delete(socket));
    socket.on('error', () => {});
    const splitter = new FrameSplitter((frame) => {
      const header = decodeFrame(frame);
      if (header.kind === 'heartbeat') {
        state.heartbeats++;
        if (state.answerHeartbeats) {
          socket.write(
            header.protocol === 'dubbo'
              ? encodeDubboHeartbeatAck(header.requestId)
              : encodeBoltHeartbeatAck(header.requestId),
          );
        }
        return;
      }
      if (header.kind !== 'request' && header.kind !== 'oneway') return;
      state.seen.push(header);
      const copy = Buffer.from(frame);
      if (state.keepFrames) state.frames.push(copy);
      if (header.kind === 'oneway') return;
      const what = state.behave(header);
      if (what === 'drop') return;
      if (what === 'reset') {
        socket.resetAndDestroy();
        return;
      }
      const delayMs = typeof what === 'object' ? what.delayMs : state.serviceTimeMs;
      state.active++;
      state.maxActive = Math.max(state.maxActive, state.active);
      const answer = () => {
        state.active--;
        state.served++;
        if (!socket.destroyed) socket.write(state.respond ? state.respond(copy, header) : echoResponse(copy, header));
      };
      if (delayMs > 0) setTimeout(answer, delayMs);
      else answer();
    });
    socket.on('data', (c) => splitter.write(c));
  });
  const state: EchoProvider = {
    port: 0,
    seen: [],
    connections,
    behave: () => 'answer',
    heartbeats: 0,
    answerHeartbeats: true,
    active: 0,
    maxActive: 0,
    served: 0,
    serviceTimeMs,
    keepFrames: false,
    frames: [],
    close: async () => {
      for (const s of connections) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
  server.listen(0, HOST);
  await once(server, 'listening');
  state.port = (server.address() as net.AddressInfo).port;
  return state;
}
