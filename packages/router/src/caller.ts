// A connection from a caller (the app, or a remote sidecar): frames in, requests to the router, answers back. On a
// mutual-TLS connection the socket is the TLSSocket and everything here works on the decrypted stream.

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
  /** The caller started a frame it has not finished (or finished its partial one: `since` 0); see PartialFrames.mark. */
  partialFrame(caller: CallerConnection, since: number): void;
}

export class CallerConnection {
  /** Calls of this caller still waiting for an answer. */
  inflight = 0;
  /**
   * Past this many calls in flight, reading pauses until answers come back: a pipelining caller is slowed, not
   * turned away by the cluster's limit, and what the router holds for one caller stays bounded.
   */
  maxInflight = Infinity;
  /** After we end the connection, how long the caller has to close its side before the socket is destroyed. */
  closeTimeoutMs = 10_000;
  private closing = false;
  private ended = false;
  /** Destroy rather than end once idle: a caller closed for stalling gets no half-open socket to keep us holding. */
  private destroyWhenIdle = false;
  /**
   * When the frame this caller is in the middle of began (its first byte was read), 0 when it is between frames. A
   * caller that takes too long to finish a frame (a slow-loris trickling a header) is closed by the router.
   */
  partialSince = 0;
  /** The caller's `ip:port` (`[ip]:port` for IPv6), as access logs and spans show it. */
  readonly address: string;
  /** The caller as the per-service metrics count it: its mTLS identity, else its IP address (no port). */
  readonly label: string;
  /** Reasons reading is paused: a full socket of ours, or a full upstream socket this caller writes to. */
  private readonly blockers = new Set<unknown>();
  private readonly splitter: FrameSplitter;

  constructor(
    readonly socket: net.Socket,
    readonly listener: ListenerName,
    private readonly handler: CallerHandler,
    maxFrameSize: number,
    /**
     * Who the caller is: the spiffe:// identity its client certificate proved on a mutual-TLS connection (the socket
     * is then the TLSSocket, and frames are read from the decrypted stream); undefined for a plaintext caller.
     */
    readonly identity: string | undefined = undefined,
  ) {
    // Read once: a socket that has closed no longer knows its peer, and calls may still be answered after that.
    const ip = unmapped(socket.remoteAddress ?? 'unknown');
    this.address = `${ip.includes(':') ? `[${ip}]` : ip}:${socket.remotePort ?? 0}`;
    this.label = identity ?? ip;
    socket.setNoDelay(true);
    this.splitter = new FrameSplitter((frame) => this.onFrame(frame), { maxFrameSize });
    socket.on('data', (chunk: Buffer) => {
      handler.bytes(listener, 'in', chunk.length);
      const frameStart = this.splitter.offset;
      try {
        this.splitter.write(chunk);
      } catch (err) {
        if (!(err instanceof ProtocolError)) throw err;
        this.reject(err, this.splitter.failedFrameHead);
        return;
      }
      this.trackPartial(frameStart !== this.splitter.offset);
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
    if (this.blockers.size === 0 && !this.closing) {
      this.socket.resume();
      // While we were not reading, a partial frame's clock was ours, not the caller's: it starts again now.
      if (this.partialSince !== 0) this.markPartial(Date.now());
    }
  }

  /** Whether reading is paused by us (backpressure or the in-flight cap): a stalled frame is then not the caller's doing. */
  get blocked(): boolean {
    return this.blockers.size > 0;
  }

  /**
   * Closes a caller that holds a frame open too long (see PartialFrames): no more reading; answers of calls
   * already accepted still go out, then the socket is destroyed.
   */
  closeStalled(): void {
    this.destroyWhenIdle = true;
    this.markPartial(0);
    this.closeWhenIdle();
  }

  /** After a chunk: whether the splitter now holds part of a frame, and whether that frame is a new one. */
  private trackPartial(framesCompleted: boolean): void {
    if (this.closing) return;
    if (this.splitter.buffered === 0) {
      if (this.partialSince !== 0) this.markPartial(0);
    } else if (this.partialSince === 0 || framesCompleted) {
      this.markPartial(Date.now());
    }
  }

  private markPartial(since: number): void {
    this.partialSince = since;
    this.handler.partialFrame(this, since);
  }

  /** Stops taking requests and closes once every accepted call is answered: nothing already accepted is lost. */
  closeWhenIdle(): void {
    this.closing = true;
    this.socket.pause();
    this.endIfIdle();
  }

  private endIfIdle(): void {
    if (this.closing && this.inflight === 0 && !this.socket.destroyed && !this.ended) {
      if (this.destroyWhenIdle) {
        this.socket.destroy();
        return;
      }
      this.ended = true;
      this.socket.end();
      // A caller that never closes its side would keep this socket, and its place, for ever: like a frame, the close
      // gets closeTimeoutMs. By then the answers have had that long to be read.
      const timer = setTimeout(() => this.socket.destroy(), this.closeTimeoutMs);
      timer.unref();
      this.socket.once('close', () => clearTimeout(timer));
      // Read and drop whatever the caller still sends: left unread, those bytes would hide its FIN from us, and the
      // socket would stay open until the drain deadline. (Destroying instead would reset, and could lose answers
      // still in the send buffer.)
      this.socket.removeAllListeners('data');
      this.socket.on('data', () => undefined);
      this.socket.resume();
    }
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
    // The rest of a chunk holding a bad frame may hold more: the first one decides, one error and one count.
    if (this.closing) return;
    this.handler.badFrame(this, error);
    const who = head && peekFrameIdentity(head);
    if (who?.expectsResponse)
      this.reply(errorResponse(who, 'bad-request', `meshport: ${error.code}: ${error.message}`));
    this.closeWhenIdle();
  }
}

/** An IPv4 caller of a dual-stack listener as its IPv4 address (`::ffff:10.0.0.1` is 10.0.0.1). */
function unmapped(ip: string): string {
  return ip.startsWith('::ffff:') && ip.includes('.') ? ip.slice(7) : ip;
}
