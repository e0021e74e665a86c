// A connection from a caller (the app, or a remote sidecar): frames in, requests to the router, answers back.

import type net from 'node:net';
import { FrameSplitter, ProtocolError, decodeFrame, peekFrameIdentity, type FrameHeader } from '@meshport/protocol';
import { errorResponse, heartbeatAck, identityOf } from './responses';

export type ListenerName = 'outbound' | 'inbound';

/** The block reason "too many calls in flight". */
const INFLIGHT = Symbol('inflight');

/** What a caller connection asks of the router. */
export interface CallerHandler {
  request(caller: CallerConnection, frame: Buffer, header: FrameHeader): void;
  bytes(listener: ListenerName, direction: 'in' | 'out', n: number): void;
  badFrame(caller: CallerConnection, error: ProtocolError): void;
}

export class CallerConnection {
  /** Calls of this caller still waiting for an answer. */
  inflight = 0;
  /**
   * Past this many calls in flight, reading pauses until answers come back: a pipelining caller is slowed, not
   * turned away by the cluster's limit, and what the router holds for one caller stays bounded.
   */
  maxInflight = Infinity;
  private closing = false;
  /** Reasons reading is paused: a full socket of ours, or a full upstream socket this caller writes to. */
  private readonly blockers = new Set<unknown>();
  private readonly splitter: FrameSplitter;

  constructor(
    readonly socket: net.Socket,
    readonly listener: ListenerName,
    private readonly handler: CallerHandler,
    maxFrameSize: number,
  ) {
    socket.setNoDelay(true);
    this.splitter = new FrameSplitter((frame) => this.onFrame(frame), { maxFrameSize });
    socket.on('data', (chunk: Buffer) => {
      handler.bytes(listener, 'in', chunk.length);
      try {
        this.splitter.write(chunk);
      } catch (err) {
        if (!(err instanceof ProtocolError)) throw err;
        this.reject(err, this.splitter.failedFrameHead);
      }
    });
    socket.on('drain', () => this.unblock(socket));
    socket.on('error', () => {}); // 'close' follows
  }

  /** Writes an answer; when the caller reads slower than we answer, stop reading its requests until it catches up. */
  reply(frame: Buffer): void {
    if (this.socket.destroyed) return;
    this.handler.bytes(this.listener, 'out', frame.length);
    if (!this.corked) {
      // Answers of one upstream chunk go back in one writev (see UpstreamConnection.batchWrites).
      this.corked = true;
      this.socket.cork();
      process.nextTick(this.flush);
    }
    if (!this.socket.write(frame)) this.block(this.socket);
  }

  private corked = false;
  private readonly flush = () => {
    this.corked = false;
    this.socket.uncork();
  };

  /** One of this caller's calls has its answer (or its error). */
  callDone(): void {
    this.inflight--;
    if (this.inflight < this.maxInflight) this.unblock(INFLIGHT);
    this.endIfIdle();
  }

  /** A call of this caller was accepted. */
  callStarted(): void {
    this.inflight++;
    if (this.inflight >= this.maxInflight) this.block(INFLIGHT);
  }

  block(by: unknown): void {
    this.blockers.add(by);
    this.socket.pause();
  }

  unblock(by: unknown): void {
    if (!this.blockers.delete(by)) return;
    if (this.blockers.size === 0 && !this.closing) this.socket.resume();
  }

  /** Stops taking requests and closes once every accepted call is answered: nothing already accepted is lost. */
  closeWhenIdle(): void {
    this.closing = true;
    this.socket.pause();
    this.endIfIdle();
  }

  private endIfIdle(): void {
    if (this.closing && this.inflight === 0 && !this.socket.destroyed) this.socket.end();
  }

  private onFrame(frame: Buffer): void {
    if (this.closing) return;
    let header: FrameHeader;
    try {
      header = decodeFrame(frame, { crc: 'reject' });
    } catch (err) {
      if (!(err instanceof ProtocolError)) throw err;
      this.reject(err, frame);
      return;
    }
    if (header.kind === 'heartbeat') this.reply(heartbeatAck(identityOf(header, frame)));
    else if (header.kind === 'request' || header.kind === 'oneway') this.handler.request(this, frame, header);
    // Responses and acks from a caller answer nothing we sent: ignored.
  }

  /** A frame we cannot use: answer it where its id is readable, then close this connection alone. */
  private reject(error: ProtocolError, head: Buffer | undefined): void {
    this.handler.badFrame(this, error);
    const who = head && peekFrameIdentity(head);
    if (who?.expectsResponse) this.reply(errorResponse(who, 'bad-request', `meshport: ${error.code}: ${error.message}`));
    this.closeWhenIdle();
  }
}
