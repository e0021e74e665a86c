// One Bolt connection to a SOFA Registry session server: the dial, the frames, requests and their answers, the
// server's requests answered, and Bolt's idle heartbeat; what lives and dies with one TCP connection, and nothing of
// what must be sent again over the next one.

import net from 'node:net';
import {
  BoltStatus,
  FrameSplitter,
  decodeFrame,
  encodeBoltHeartbeat,
  encodeBoltHeartbeatAck,
  peekFrameIdentity,
  type BoltFrameOptions,
  type FrameHeader,
} from '@meshport/protocol';
import { RegistryError, type RegistryLogger } from '@meshport/registry-core';
import { loggable } from './loggable';
import { endpointText, type ServerAddress } from './session-discovery';
import { encodeBoltRequest, encodeBoltResponse } from './session-bolt';

export interface SessionConnectionOptions {
  requestTimeoutMs: number;
  connectTimeoutMs: number;
  heartbeatIntervalMs: number;
  heartbeatTimeoutMs: number;
  maxMissedHeartbeats: number;
  logger: RegistryLogger;
}

/** What the owner of a connection hears of it. */
export interface SessionConnectionEvents {
  /** The TCP connection is up: requests can go. */
  connected(conn: SessionConnection): void;
  /** The socket failed (the connection closes next). */
  error(conn: SessionConnection, error: Error): void;
  /** The connection is gone; every request waiting on it has been rejected. */
  closed(conn: SessionConnection): void;
  /** A request (or oneway) of the server, and the answer Bolt's Java side would give it. */
  serverRequest(conn: SessionConnection, className: string, codec: number, body: Buffer): BoltAnswer;
}

/** An answer to the server: a class and a body, or an empty one with a Bolt error status. */
export interface BoltAnswer {
  className: string;
  content: Buffer;
  status?: number;
}

/** A request the session server answered with a Bolt status other than SUCCESS. */
export class SofaBoltStatusError extends RegistryError {
  constructor(readonly boltStatus: number) {
    super('MESHPORT_REGISTRY_SOFA_BOLT_STATUS', `Bolt response status 0x${boltStatus.toString(16)}`);
  }
}

interface PendingRequest {
  resolve: (answer: { className: string; body: Buffer }) => void;
  reject: (error: Error) => void;
  timer: NodeJS.Timeout;
}

export class SessionConnection {
  private readonly socket: net.Socket;
  private readonly pending = new Map<number, PendingRequest>();
  private up = false;
  private dropped = false;
  private lastActivity = Date.now();
  private requestIds = 0;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private heartbeat: { id: number; timer: NodeJS.Timeout } | undefined;
  private missedHeartbeats = 0;

  /**
   * Dials `server`. `generation` increases with every connection of one client: what was sent or seen on an older
   * one no longer counts.
   */
  constructor(
    readonly server: ServerAddress,
    readonly generation: number,
    private readonly options: SessionConnectionOptions,
    private readonly events: SessionConnectionEvents,
  ) {
    const socket = net.connect({ host: server.host, port: server.port });
    this.socket = socket;
    socket.setNoDelay(true);
    const connectTimer = setTimeout(
      () =>
        socket.destroy(
          new RegistryError(
            'MESHPORT_REGISTRY_SOFA_CONNECT_TIMEOUT',
            `connect timed out after ${options.connectTimeoutMs} ms`,
          ),
        ),
      options.connectTimeoutMs,
    );
    const splitter = new FrameSplitter((frame) => this.onFrame(frame));
    socket.on('connect', () => {
      clearTimeout(connectTimer);
      if (this.dropped) return;
      this.up = true;
      this.lastActivity = Date.now();
      this.heartbeatTimer = setInterval(
        () => this.heartbeatTick(),
        Math.max(50, Math.floor(options.heartbeatIntervalMs / 3)),
      );
      events.connected(this);
    });
    socket.on('data', (chunk: Buffer) => {
      this.lastActivity = Date.now();
      try {
        splitter.write(chunk);
      } catch (error) {
        // The stream has lost its framing: nothing later on it can be trusted. A new connection starts clean.
        options.logger.warn(
          { error: loggable(error), server: endpointText(server) },
          'SOFA Registry sent bytes that are not Bolt; reconnecting',
        );
        socket.destroy();
      }
    });
    socket.on('error', (error) => events.error(this, error));
    socket.on('close', () => {
      clearTimeout(connectTimer);
      this.drop(new RegistryError('MESHPORT_REGISTRY_SOFA_DISCONNECTED', 'SOFA Registry connection closed'));
      events.closed(this);
    });
  }

  /** Up, and not yet dropped. */
  get connected(): boolean {
    return this.up;
  }

  /** The address this end has, written into every register as its `ip`. */
  get localAddress(): string | null {
    return this.socket.localAddress ?? null;
  }

  /** Sends a request and waits for its answer; rejects with a RegistryError when there is none. */
  invoke(className: string, content: Buffer): Promise<{ className: string; body: Buffer }> {
    return new Promise((resolve, reject) => {
      if (!this.up || this.socket.destroyed) {
        reject(new RegistryError('MESHPORT_REGISTRY_SOFA_DISCONNECTED', 'not connected'));
        return;
      }
      const requestId = this.nextRequestId();
      const timeoutMs = this.options.requestTimeoutMs;
      const timer = setTimeout(() => {
        this.pending.delete(requestId);
        reject(new RegistryError('MESHPORT_REGISTRY_SOFA_TIMEOUT', `no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(requestId, { resolve, reject, timer });
      this.write(encodeBoltRequest({ requestId, className, content, timeoutMs }));
    });
  }

  /** Drops the connection at once (a later reconnect is its owner's business). */
  destroy(): void {
    this.socket.destroy();
  }

  /** Rejects every waiting request with `reason`, drops the connection and waits until its socket has closed. */
  async close(reason: Error): Promise<void> {
    this.drop(reason);
    if (!this.socket.closed) await new Promise<void>((resolve) => this.socket.once('close', () => resolve()));
  }

  private drop(reason: Error): void {
    this.dropped = true;
    clearInterval(this.heartbeatTimer);
    if (this.heartbeat) clearTimeout(this.heartbeat.timer);
    this.heartbeat = undefined;
    for (const pending of this.pending.values()) {
      clearTimeout(pending.timer);
      pending.reject(reason);
    }
    this.pending.clear();
    this.up = false;
    this.socket.destroy();
  }

  private write(frame: Buffer): void {
    if (this.socket.destroyed || !this.up) return;
    this.lastActivity = Date.now();
    this.socket.write(frame);
  }

  private nextRequestId(): number {
    this.requestIds = (this.requestIds + 1) & 0x7fffffff;
    return this.requestIds;
  }

  /** Bolt's client heartbeat: only on an idle connection; enough unanswered ones in a row drop it. */
  private heartbeatTick(): void {
    if (!this.up || this.heartbeat) return;
    if (Date.now() - this.lastActivity < this.options.heartbeatIntervalMs) return;
    const id = this.nextRequestId();
    const timer = setTimeout(() => {
      this.heartbeat = undefined;
      this.missedHeartbeats++;
      if (this.missedHeartbeats >= this.options.maxMissedHeartbeats) {
        this.options.logger.warn(
          { server: endpointText(this.server), missed: this.missedHeartbeats },
          'SOFA Registry stopped answering heartbeats; reconnecting',
        );
        this.socket.destroy();
      }
    }, this.options.heartbeatTimeoutMs);
    this.heartbeat = { id, timer };
    this.write(encodeBoltHeartbeat(id, { timeoutMs: this.options.heartbeatTimeoutMs }));
  }

  private onFrame(frame: Buffer): void {
    if (this.dropped) return;
    let header: FrameHeader;
    try {
      header = decodeFrame(frame);
    } catch (error) {
      // Framed, so the stream is still in step; only this frame is bad.
      this.options.logger.warn({ error: loggable(error) }, 'ignoring a Bolt frame that does not decode');
      return;
    }
    if (header.protocol !== 'bolt') return;
    const identity = peekFrameIdentity(frame);
    const answerOptions: BoltFrameOptions = {
      protocolVersion: header.protocolVersion,
      ver1: identity?.ver1 === 2 ? 2 : 1,
      switchFlags: identity?.switchFlags ?? 0,
      codec: header.codec,
    };
    switch (header.kind) {
      case 'heartbeat':
        this.write(encodeBoltHeartbeatAck(header.requestId, answerOptions));
        return;
      case 'heartbeat-ack':
        if (this.heartbeat?.id === header.requestId) {
          clearTimeout(this.heartbeat.timer);
          this.heartbeat = undefined;
          this.missedHeartbeats = 0;
        }
        return;
      case 'response': {
        const pending = this.pending.get(header.requestId);
        if (!pending) return;
        this.pending.delete(header.requestId);
        clearTimeout(pending.timer);
        const body = frame.subarray(header.bodyOffset, header.bodyOffset + header.bodyLength);
        // The status goes along as a field, for the log line of whatever waited for the answer.
        if (header.status !== BoltStatus.SUCCESS) pending.reject(new SofaBoltStatusError(header.status!));
        else pending.resolve({ className: header.className, body });
        return;
      }
      case 'request':
      case 'oneway': {
        const body = frame.subarray(header.bodyOffset, header.bodyOffset + header.bodyLength);
        const answer = this.events.serverRequest(this, header.className, header.codec, body);
        if (header.kind === 'request') {
          this.write(encodeBoltResponse({ ...answerOptions, requestId: header.requestId, ...answer }));
        }
        return;
      }
    }
  }
}
