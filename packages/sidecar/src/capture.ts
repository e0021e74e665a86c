// Capture listeners for transparently hijacked connections: find where the app meant to go, then either hand the
// connection to the router (a Bolt/Dubbo call for a service in the route table) or pass its bytes through unchanged.

import net from 'node:net';
import { decodeFrame, detectProtocol, FrameSplitter } from '@meshport/protocol';
import { routeKey, type RouteTable } from '@meshport/router';
import { isLoopback, type HostPort } from './config';

export type CaptureDirection = 'outbound' | 'inbound';

export interface CaptureListenerOptions {
  direction: CaptureDirection;
  listen: HostPort;
  /** Where the app meant to go: SO_ORIGINAL_DST (REDIRECT, the connect hook) or the local address (TPROXY). */
  originalDestination(socket: net.Socket): HostPort;
  routeTable: RouteTable;
  /** Hands an accepted connection, its first bytes put back, to the router's listener of the same direction. */
  adopt(socket: net.Socket): void;
  /** Opens the pass-through connection; the default is a plain connect (the capture rules exclude meshport's uid). */
  connectUpstream?(to: HostPort): net.Socket;
  /**
   * Takes the pass-through over (the native engine relays on its own thread), given the bytes already read; the
   * socket is the relay's from then on. Absent: relayed here, through two piped sockets.
   */
  relay?(socket: net.Socket, to: HostPort, head: Buffer): void;
  /** How long to wait for the app's first bytes before passing through (protocols where the server speaks first). @default 200 */
  peekTimeoutMs?: number;
  /** Bytes read while looking for the first request before giving up and passing through. @default 65536 */
  maxPeekBytes?: number;
  /** A server already bound elsewhere (a transparent one, bound by fd); `listen` is then only what logs show. */
  server?: net.Server;
  logger?: { warn(detail: object, message: string): void; debug?(detail: object, message: string): void };
}

export const CAPTURE_DEFAULTS = {
  outboundPort: 15001,
  inboundPort: 15006,
  peekTimeoutMs: 200,
  maxPeekBytes: 64 * 1024,
} as const;

/** What became of captured connections, for /stats and tests. */
export interface CaptureCounters {
  routed: number;
  passedThrough: number;
  refused: number;
}

/**
 * One capture port. The decision is made once per connection, on its first request frame: the router then owns the
 * connection (every later call on it is routed by its own header, as on the outbound listener), or the connection is
 * a plain TCP relay to the original destination. Heartbeats before the first request are kept and replayed either way.
 */
export class CaptureListener {
  readonly counters: CaptureCounters = { routed: 0, passedThrough: 0, refused: 0 };
  private readonly server: net.Server;
  private readonly sockets = new Set<net.Socket>();
  private readonly peekTimeoutMs: number;
  private readonly maxPeekBytes: number;

  constructor(private readonly options: CaptureListenerOptions) {
    this.peekTimeoutMs = options.peekTimeoutMs ?? CAPTURE_DEFAULTS.peekTimeoutMs;
    this.maxPeekBytes = options.maxPeekBytes ?? CAPTURE_DEFAULTS.maxPeekBytes;
    this.server = options.server ?? net.createServer();
    this.server.on('connection', (socket: net.Socket) => this.accept(socket));
  }

  async start(): Promise<void> {
    if (this.server.listening) return;
    const { host, port } = this.options.listen;
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.once('listening', () => {
        this.server.off('error', reject);
        resolve();
      });
      // A server handed in is binding already (listen({fd}) reports 'listening' on a later tick).
      if (!this.options.server) this.server.listen(port, host);
    });
  }

  address(): HostPort {
    const a = this.server.address() as net.AddressInfo;
    return { host: a.address, port: a.port };
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => (this.server.listening ? this.server.close(() => resolve()) : resolve()));
  }

  private accept(socket: net.Socket): void {
    let original: HostPort;
    try {
      original = this.options.originalDestination(socket);
    } catch (error) {
      this.refuse(socket, { error }, 'no original destination for a captured connection');
      return;
    }
    const me = this.address();
    if (original.port === me.port && (isLoopback(original.host) || original.host === me.host)) {
      // The rules captured a connection to the capture port itself: relaying it would loop forever.
      this.refuse(socket, { original }, 'a captured connection was addressed to the capture port; refusing the loop');
      return;
    }
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
    const chunks: Buffer[] = [];
    let seen = 0;
    let decided = false;
    const decide = (route: boolean, why: string) => {
      if (decided) return;
      decided = true;
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('end', onEnd);
      const client = { host: socket.remoteAddress, port: socket.remotePort };
      this.options.logger?.debug?.(
        { direction: this.options.direction, client, original, route, why },
        'captured connection',
      );
      if (route) this.route(socket, chunks);
      else this.passThrough(socket, original, chunks);
    };
    const splitter = new FrameSplitter((frame) => {
      if (decided) return;
      const header = decodeFrame(frame, { crc: 'skip' });
      if (header.kind === 'heartbeat' || header.kind === 'heartbeat-ack') return;
      const service = routeKey(header);
      const known =
        service !== undefined &&
        (this.options.direction === 'outbound'
          ? this.options.routeTable.outbound(service)
          : this.options.routeTable.inbound(service)) !== undefined;
      decide(
        known,
        known ? `service ${service} has a route` : `no route for ${service ?? 'a frame without a service'}`,
      );
    });
    const onData = (chunk: Buffer) => {
      chunks.push(chunk);
      seen += chunk.length;
      if (seen === chunk.length && detectProtocol(chunk) === null) return decide(false, 'not Bolt or Dubbo');
      try {
        splitter.write(chunk);
      } catch {
        return decide(false, 'not a well-formed Bolt or Dubbo stream');
      }
      if (!decided && seen > this.maxPeekBytes) decide(false, `no request in the first ${this.maxPeekBytes} bytes`);
    };
    const onEnd = () => decide(false, 'the app closed before a request');
    const timer = setTimeout(
      () => decide(false, `nothing to route within ${this.peekTimeoutMs} ms`),
      this.peekTimeoutMs,
    );
    socket.on('data', onData);
    socket.on('end', onEnd);
  }

  private route(socket: net.Socket, chunks: Buffer[]): void {
    this.counters.routed++;
    socket.pause();
    if (chunks.length > 0) socket.unshift(Buffer.concat(chunks));
    this.sockets.delete(socket);
    this.options.adopt(socket);
    // pause() above made the stream explicitly paused; the router's 'data' listener does not resume it by itself.
    socket.resume();
  }

  private passThrough(app: net.Socket, original: HostPort, chunks: Buffer[]): void {
    this.counters.passedThrough++;
    app.pause();
    if (this.options.relay && net.isIP(original.host) !== 0) {
      this.sockets.delete(app);
      // What the app sent after the peek and before the pause sits in the socket's buffer: it goes with the head.
      const pending = app.read() as Buffer | null;
      this.options.relay(app, original, Buffer.concat(pending ? [...chunks, pending] : chunks));
      return;
    }
    const upstream = this.options.connectUpstream?.(original) ?? net.connect(original.port, original.host);
    this.sockets.add(upstream);
    upstream.once('close', () => this.sockets.delete(upstream));
    for (const chunk of chunks) upstream.write(chunk);
    // Half-closes pass through as half-closes; an error or reset on either side ends both.
    app.pipe(upstream);
    upstream.pipe(app);
    app.resume();
    const end = () => {
      app.destroy();
      upstream.destroy();
    };
    app.once('error', end);
    upstream.once('error', (error) => {
      this.options.logger?.warn({ error, original }, 'pass-through connection to the original destination failed');
      end();
    });
    app.once('close', () => upstream.end());
    upstream.once('close', () => app.end());
  }

  private refuse(socket: net.Socket, detail: object, message: string): void {
    this.counters.refused++;
    this.options.logger?.warn(detail, message);
    socket.destroy();
  }
}
