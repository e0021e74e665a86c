// `hijack` suite: the sidecar's outbound capture port, as uid 1337. The real CaptureListener of @meshport/sidecar
// with an empty route table: the bench's 64-byte pings are neither Bolt nor Dubbo, so every captured connection is
// relayed to its original destination (SO_ORIGINAL_DST: conntrack for REDIRECT, the BPF record for the connect hook).
// The pass-through runs where the sidecar runs it: on the native engine's thread (createRouter's default), or piped
// in Node with MESHPORT_ENGINE=js.
// argv: HOST PORT. Prints {"ready":"relay","engine"}; on stdin line "stats" prints the listener's counters; exits on stdin end.

import * as net from 'node:net';
import * as path from 'node:path';
import { createInterface } from 'node:readline';
import { MemoryRouteTable, createRouter } from '@meshport/router';
import pino from 'pino';
import { getOriginalDst } from '@meshport/socket';

interface HostPort {
  host: string;
  port: number;
}

interface CaptureListenerLike {
  readonly counters: { routed: number; passedThrough: number; refused: number };
  start(): Promise<void>;
}

// capture.ts is not in @meshport/sidecar's public exports; load the built module next to its entry point.
const capture = require(path.join(path.dirname(require.resolve('@meshport/sidecar')), 'capture.js')) as {
  CaptureListener: new (options: object) => CaptureListenerLike;
};

const [host, port] = process.argv.slice(2);
const emptyRoutes = { outbound: () => undefined, inbound: () => undefined };
// A router with no listeners of its own: only its relay is used (undefined on the TypeScript engine).
const router = createRouter({
  routeTable: new MemoryRouteTable(),
  outbound: false,
  inbound: false,
  admin: false,
  // stdout carries this process's JSON lines: the router's own log goes to stderr.
  logger: pino({ name: 'relay', level: 'warn' }, pino.destination(2)),
});
const server = net.createServer({ noDelay: true });
server.listen({ host, port: Number(port), backlog: 4096 });
const listener = new capture.CaptureListener({
  direction: 'outbound',
  listen: { host, port: Number(port) },
  server,
  routeTable: emptyRoutes,
  originalDestination(socket: net.Socket): HostPort {
    const o = getOriginalDst(socket);
    return { host: o.address, port: o.port };
  },
  adopt(socket: net.Socket) {
    socket.destroy();
  },
  relay: router.relay?.bind(router),
  connectUpstream(to: HostPort) {
    const s = net.connect({ host: to.host, port: to.port, noDelay: true });
    return s;
  },
  logger: {
    warn: (detail: object, message: string) => process.stderr.write(`relay: ${message} ${JSON.stringify(detail)}\n`),
  },
});

listener.start().then(
  () => process.stdout.write(`${JSON.stringify({ ready: 'relay', pid: process.pid, engine: router.engine })}\n`),
  (err: Error) => {
    process.stderr.write(`relay: ${err.message}\n`);
    process.exit(1);
  },
);
const lines = createInterface({ input: process.stdin });
lines.on('line', (line) => {
  if (line.trim() === 'stats') process.stdout.write(`${JSON.stringify({ stats: listener.counters })}\n`);
});
lines.on('close', () => process.exit(0));
