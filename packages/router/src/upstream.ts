// Upstream connections: multiplexed, with request ids rewritten to be unique per connection, idle heartbeats, pooling.

import net from 'node:net';
import type tls from 'node:tls';
import {
  FrameSplitter,
  ProtocolError,
  decodeFrame,
  encodeBoltHeartbeat,
  encodeDubboHeartbeat,
  peek,
  restoreRequestId,
  setRequestId,
  type ProtocolName,
} from '@meshport/protocol';
import type { Host } from './cluster';
import { heartbeatAck, identityOf } from './responses';
import type { Call } from './call';
import { HandshakeError, connectTls, handshakeErrorOf, verifyPeer } from './mtls';

export interface UpstreamOptions {
  maxFrameSize: number;
  connectTimeoutMs: number;
  /** Idle time after which a heartbeat is sent. */
  heartbeatIntervalMs: number;
  /** How long the ack may take; a missed ack closes the connection. */
  heartbeatTimeoutMs: number;
}

/** What the router hears from its upstream connections. */
export interface UpstreamEvents {
  /** A response for a call, its id already restored. */
  response(call: Call, frame: Buffer, status: number | undefined): void;
  /**
   * The connection never came up: this call never left and may go elsewhere. `counted` is shared by all the calls of
   * one connection's end, so the endpoint is charged one failure per event, not one per call caught in it.
   */
  neverSent(call: Call, reason: Error, counted: Set<Host>): void;
  /** The connection went away with this call in flight (`counted` as for neverSent). */
  lost(call: Call, reason: string, counted: Set<Host>): void;
  /** Bytes moved on upstream connections, for stats. */
  upstreamBytes(direction: 'in' | 'out', n: number): void;
  /**
   * A mutual-TLS connection's handshake with `host`: completed and verified (error undefined), or failed after the
   * TCP connection was up (a refused connect is no handshake).
   */
  tlsHandshake(host: Host, error: HandshakeError | undefined): void;
}

// Bolt ids are int32; Dubbo's are int64 but we stay below 2^31 so one counter serves both.
const MAX_ID = 0x7fffffff;

export class UpstreamConnection {
  readonly socket: net.Socket;
  /**
   * Over mutual TLS: what is written before the provider's certificate is verified waits here, so no request leaves
   * for an endpoint that turns out not to be the one the registry named. Undefined once verified, and for plaintext.
   */
  private held: Buffer[] | undefined;
  readonly calls = new Map<number, Call>();
  connected = false;
  closed = false;
  private nextId = 1;
  private lastReadAt = Date.now();
  private heartbeatId: number | undefined;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  /** Callers paused because this socket's write buffer is full; resumed on 'drain'. */
  readonly blockedCallers = new Set<{ unblock(by: unknown): void }>();

  constructor(
    readonly host: Host,
    readonly protocol: ProtocolName,
    private readonly options: UpstreamOptions,
    private readonly events: UpstreamEvents,
    private readonly onClosed: (conn: UpstreamConnection) => void,
    /** Set: the endpoint has an identity and this is the context to dial it with mutual TLS. */
    secure?: tls.SecureContext,
  ) {
    const { host: address, port, identity } = host.endpoint;
    const overTls = secure !== undefined && identity !== undefined;
    const socket = overTls ? connectTls(secure, address, port) : net.connect({ host: address, port });
    socket.setNoDelay(true);
    socket.setTimeout(options.connectTimeoutMs, () =>
      socket.destroy(
        Object.assign(new Error(`connect timeout after ${options.connectTimeoutMs} ms`), { code: 'ETIMEDOUT' }),
      ),
    );
    this.socket = socket;
    const splitter = new FrameSplitter((frame) => this.onFrame(frame), { maxFrameSize: options.maxFrameSize });
    if (overTls) this.dialTls(socket as tls.TLSSocket, identity);
    else socket.on('connect', () => this.up());
    socket.on('data', (chunk: Buffer) => {
      this.lastReadAt = Date.now();
      this.events.upstreamBytes('in', chunk.length);
      try {
        splitter.write(chunk);
      } catch (err) {
        if (!(err instanceof ProtocolError)) throw err;
        socket.destroy(new Error(`upstream sent a bad frame: ${err.code}: ${err.message}`));
      }
    });
    socket.on('drain', () => {
      for (const c of this.blockedCallers) c.unblock(this);
      this.blockedCallers.clear();
    });
    socket.on('error', () => {}); // 'close' follows with the outcome
    socket.on('close', () => this.teardown(socket.errored ?? undefined));
  }

  /** The connection is up (and, over TLS, the provider verified): calls are no longer pending. */
  private up(): void {
    this.connected = true;
    this.socket.setTimeout(0);
    for (const call of this.calls.values()) call.onConnected();
    this.heartbeatTimer = setInterval(
      () => this.checkIdle(),
      Math.max(10, Math.min(this.options.heartbeatIntervalMs, this.options.heartbeatTimeoutMs) / 2),
    );
    this.heartbeatTimer.unref();
  }

  /**
   * The client side of mutual TLS: after the handshake the provider's chain must verify against the trust bundle and
   * its certificate carry exactly `identity`; else the connection fails as a connect failure would (its calls never
   * left) and the reason is counted. The connect timeout covers the handshake.
   */
  private dialTls(socket: tls.TLSSocket, identity: string): void {
    this.held = [];
    let tcpUp = false;
    let settled = false;
    socket.once('connect', () => {
      tcpUp = true;
    });
    socket.once('secureConnect', () => {
      settled = true;
      const verified = verifyPeer(socket, identity);
      if (verified instanceof HandshakeError) {
        this.events.tlsHandshake(this.host, verified);
        socket.destroy(verified);
        return;
      }
      this.events.tlsHandshake(this.host, undefined);
      const held = this.held ?? [];
      this.held = undefined;
      this.up();
      if (held.length > 0) {
        this.batchWrites();
        for (const frame of held) this.socket.write(frame);
      }
    });
    socket.once('error', (err: Error) => {
      if (settled || !tcpUp) return; // a refused connect is no handshake; a verified one failed later
      settled = true;
      this.events.tlsHandshake(this.host, handshakeErrorOf(err));
    });
  }

  /** Writes a frame, or holds it while the provider of a TLS connection is not verified yet. */
  private write(frame: Buffer): boolean {
    if (this.held !== undefined) {
      this.held.push(frame);
      return true;
    }
    return this.socket.write(frame);
  }

  /** Requests in flight here, for choosing the least loaded connection of a pool. */
  get load(): number {
    return this.calls.size;
  }

  /** Sends a call's frame with an id unique on this connection; false when the write buffer is full. */
  send(call: Call): boolean {
    const id = this.allocateId();
    call.upstreamId = id;
    call.connection = this;
    setRequestId(call.frame, id);
    this.calls.set(id, call);
    this.events.upstreamBytes('out', call.frame.length);
    this.batchWrites();
    return this.write(call.frame);
  }

  /** Oneway frames go out as they came: nothing will answer them, so their ids need not be unique. */
  sendOneway(frame: Buffer): boolean {
    this.events.upstreamBytes('out', frame.length);
    this.batchWrites();
    return this.write(frame);
  }

  /**
   * Holds this tick's writes and sends them as one writev on the next: the frames of one caller chunk go out in one
   * syscall instead of one each.
   */
  private batchWrites(): void {
    if (this.corked) return;
    this.corked = true;
    this.socket.cork();
    process.nextTick(this.flush);
  }

  private corked = false;
  private readonly flush = () => {
    this.corked = false;
    this.socket.uncork();
  };

  /** Forgets a call (its timeout fired): a late response for its id is dropped. */
  forget(call: Call): void {
    if (this.calls.get(call.upstreamId) === call) this.calls.delete(call.upstreamId);
  }

  close(): void {
    this.socket.destroy();
  }

  private allocateId(): number {
    for (;;) {
      const id = this.nextId;
      this.nextId = id >= MAX_ID ? 1 : id + 1;
      if (!this.calls.has(id) && id !== this.heartbeatId) return id;
    }
  }

  private onFrame(frame: Buffer): void {
    // Answers to ids we assigned are read from the fixed header alone: no header object, no id string.
    const kind = peek.kind(frame);
    const id = peek.smallRequestId(frame);
    switch (kind) {
      case 'response': {
        const call = this.calls.get(id);
        if (call === undefined) return; // timed out earlier: the late response is dropped
        this.calls.delete(id);
        restoreRequestId(frame, call.idHigh, call.idLow);
        this.events.response(call, frame, peek.status(frame));
        return;
      }
      case 'heartbeat-ack':
        if (id === this.heartbeatId) this.heartbeatId = undefined;
        return;
      case 'heartbeat':
        this.socket.write(heartbeatAck(identityOf(decodeFrame(frame, { crc: 'skip' }), frame)));
        return;
      case undefined:
        this.socket.destroy(new Error('upstream sent a Bolt frame with a meaningless cmdcode and type'));
        return;
      default:
        return; // a provider's own requests to us are not part of the proxy's job
    }
  }

  /** Sends a heartbeat after an idle spell; closes the connection if the last one went unanswered. */
  private checkIdle(): void {
    const now = Date.now();
    if (this.heartbeatId !== undefined) {
      if (now - this.heartbeatSentAt > this.options.heartbeatTimeoutMs) {
        this.socket.destroy(new Error(`no heartbeat ack within ${this.options.heartbeatTimeoutMs} ms`));
      }
      return;
    }
    if (now - this.lastReadAt < this.options.heartbeatIntervalMs) return;
    const id = this.allocateId();
    this.heartbeatId = id;
    this.heartbeatSentAt = now;
    this.socket.write(this.protocol === 'bolt' ? encodeBoltHeartbeat(id) : encodeDubboHeartbeat(id));
  }

  private heartbeatSentAt = 0;

  private teardown(error: Error | undefined): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.heartbeatTimer);
    this.onClosed(this);
    const calls = [...this.calls.values()];
    this.calls.clear();
    const reason = error?.message ?? 'upstream closed the connection';
    const counted = new Set<Host>();
    for (const call of calls) {
      if (!this.connected) this.events.neverSent(call, error ?? new Error(reason), counted);
      else this.events.lost(call, reason, counted);
    }
    for (const c of this.blockedCallers) c.unblock(this);
    this.blockedCallers.clear();
  }
}

/** Connections per endpoint and protocol, opened lazily up to the configured count, least loaded first. */
export class UpstreamPool {
  /** By endpoint key, then protocol (a remote sidecar tells protocols apart per connection). */
  private readonly connections = new Map<string, Record<ProtocolName, UpstreamConnection[]>>();

  constructor(
    private readonly perEndpoint: number,
    private readonly options: UpstreamOptions,
    private readonly events: UpstreamEvents,
    /** The client context of mutual TLS now (it changes with setSecurity); undefined: no TLS material, plaintext. */
    private readonly clientTls: () => tls.SecureContext | undefined = () => undefined,
  ) {}

  /**
   * A connection to `host` for `protocol`. An endpoint with an identity is dialled with mutual TLS when the router has
   * TLS material; its connections are pooled under the address and the identity, so a new identity gets new ones.
   */
  connectionFor(host: Host, protocol: ProtocolName): UpstreamConnection {
    const secure = host.endpoint.identity === undefined ? undefined : this.clientTls();
    const key = secure === undefined ? host.key : host.tlsKey;
    let byProtocol = this.connections.get(key);
    if (byProtocol === undefined) this.connections.set(key, (byProtocol = { bolt: [], dubbo: [] }));
    const list = byProtocol[protocol];
    let best: UpstreamConnection | undefined;
    for (const c of list) if (best === undefined || c.load < best.load) best = c;
    if (best !== undefined && (best.load === 0 || list.length >= this.perEndpoint)) return best;
    const conn = new UpstreamConnection(
      host,
      protocol,
      this.options,
      this.events,
      (closed) => {
        const i = list.indexOf(closed);
        if (i >= 0) list.splice(i, 1);
      },
      secure,
    );
    list.push(conn);
    return conn;
  }

  /** Every open connection. */
  all(): UpstreamConnection[] {
    return [...this.connections.values()].flatMap((p) => [...p.bolt, ...p.dubbo]);
  }

  closeAll(): void {
    for (const c of this.all()) c.close();
  }
}
