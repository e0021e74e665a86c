// The forward suite's echo provider, in a process of its own: `node echo-process.js`; prints {"ready": ..., "port"}.
//
// Answers every Bolt or Dubbo request with a success response carrying the same id and the request's body. The
// answers to one read are copied into one buffer and written with one write, so the echo costs the same whichever
// target (direct, haproxy, meshport) the requests came through.

import net from 'node:net';
import { FrameSplitter, decodeFrame, encodeBoltHeartbeatAck, encodeDubboHeartbeatAck } from '@meshport/protocol';

function serve(socket: net.Socket): void {
  socket.setNoDelay(true);
  socket.on('error', () => {});
  let out: Buffer = Buffer.alloc(0);
  let at = 0;
  const splitter = new FrameSplitter((frame) => {
    const h = decodeFrame(frame, { crc: 'skip' });
    if (h.kind === 'heartbeat') {
      // meshport's pool sends these after an idle spell (between rounds); unanswered, it would close the connection.
      socket.write(h.protocol === 'bolt' ? encodeBoltHeartbeatAck(h.requestId) : encodeDubboHeartbeatAck(h.requestId));
      return;
    }
    if (h.kind !== 'request') return;
    const body = frame.subarray(h.bodyOffset, h.bodyOffset + h.bodyLength);
    if (h.protocol === 'bolt') {
      // Bolt v1 response: proto, type 0, cmd 2, ver2, id, codec, status 0, classLen 0, headerLen 0, contentLen.
      out[at] = 1;
      out[at + 1] = 0;
      out.writeUInt16BE(2, at + 2);
      out[at + 4] = 1;
      frame.copy(out, at + 5, 5, 9); // the id, as it came
      out[at + 9] = frame[9];
      out.writeUInt32BE(0, at + 10); // status 0, classLen 0
      out.writeUInt16BE(0, at + 14); // headerLen 0
      out.writeInt32BE(body.length, at + 16);
      at += 20;
    } else {
      frame.copy(out, at, 0, 16);
      out[at + 2] = frame[2] & 0x1f; // response, same serialization
      out[at + 3] = 20; // OK
      out.writeInt32BE(body.length, at + 12);
      at += 16;
    }
    body.copy(out, at);
    at += body.length;
  });
  socket.on('data', (chunk: Buffer) => {
    // Every answer is no longer than its request, so this read's answers fit in what this read completes.
    out = Buffer.allocUnsafe(chunk.length + splitter.buffered);
    at = 0;
    splitter.write(chunk);
    if (at > 0) socket.write(at === out.length ? out : out.subarray(0, at));
  });
}

const server = net.createServer(serve);
server.listen(0, '127.0.0.1', () => {
  const port = (server.address() as net.AddressInfo).port;
  process.stdout.write(`${JSON.stringify({ ready: 'echo', pid: process.pid, port })}\n`);
});
process.on('SIGTERM', () => process.exit(0));
process.on('disconnect', () => process.exit(0));
