// Streaming framer: bytes in any chunking, whole frames out, with the frame-size cap checked from the header.

import { ProtocolError } from './errors';
import { frameLength, headerNeed } from './frame';

export interface FrameSplitterOptions {
  /**
   * Largest frame accepted, header included. Checked as soon as the header is read, before anything is buffered:
   * a header alone never makes the splitter allocate what it claims.
   * @default 16 MiB (Envoy's Dubbo cap; Dubbo and SOFA default to 8 MiB)
   */
  maxFrameSize?: number;
}

export const FRAME_SPLITTER_DEFAULTS: Required<FrameSplitterOptions> = {
  maxFrameSize: 16 * 1024 * 1024,
};

const EMPTY = Buffer.alloc(0);

/** Longest fixed header of any protocol (Bolt v2 request). */
const MAX_FIXED_HEADER = 24;

enum State {
  /** Between frames, or holding the first bytes of a header split across chunks. */
  Header,
  /** Header known; filling a buffer of exactly the frame's length. */
  Body,
}

/**
 * Feed it bytes with `write`; it calls `onFrame` once per whole frame. A frame that lies inside one chunk is handed
 * out as a subarray of that chunk (no copy); one that spans chunks is collected into a buffer of its exact size by
 * the time its last byte arrives (grown as bytes come, never allocated from the header's claim alone).
 * After a ProtocolError the stream has lost its framing: every later `write` throws the same error.
 */
export class FrameSplitter {
  private readonly maxFrameSize: number;
  private state = State.Header;
  private readonly head = Buffer.alloc(MAX_FIXED_HEADER);
  private headLen = 0;
  /** Body state: the frame so far, in a buffer that grows with what has arrived (not with what the header claims). */
  private body: Buffer = EMPTY;
  private frameLen = 0;
  private filled = 0;
  /** Stream offset of the first byte of the frame being read: error offsets are relative to the whole stream. */
  private frameStart = 0;
  private failure: ProtocolError | undefined;
  /** What turns an offset of the buffer being read into a stream offset. */
  private errorBase = 0;
  /** Whether the frame being measured lies in the chunk (fast path) or in `head`. */
  private readingHead = false;
  private failedHead: Buffer | undefined;
  private delivering = false;

  constructor(
    private readonly onFrame: (frame: Buffer) => void,
    options: FrameSplitterOptions = {},
  ) {
    this.maxFrameSize = options.maxFrameSize ?? FRAME_SPLITTER_DEFAULTS.maxFrameSize;
  }

  /** Bytes held for a frame not yet complete. */
  get buffered(): number {
    return this.state === State.Body ? this.filled : this.headLen;
  }

  /**
   * After a ProtocolError: a copy of the first bytes (up to a fixed header) of the frame that failed, so a proxy can
   * still read its request id and answer it (see peekFrameIdentity).
   */
  get failedFrameHead(): Buffer | undefined {
    return this.failedHead;
  }

  /** Stream offset of the next frame's first byte, i.e. every byte before it was a whole frame. */
  get offset(): number {
    return this.frameStart;
  }

  write(chunk: Buffer): void {
    if (this.failure) throw this.failure;
    const end = chunk.length;
    let off = 0;
    try {
      while (off < end) {
        if (this.state === State.Body) {
          const take = Math.min(this.frameLen - this.filled, end - off);
          this.append(chunk, off, off + take);
          off += take;
          if (this.filled === this.frameLen) this.emit(this.body);
          continue;
        }
        if (this.headLen === 0) {
          // Fast path: measure the frame where it lies and hand it out without copying.
          this.errorBase = this.frameStart - off;
          this.readingHead = false;
          const avail = end - off;
          if (avail >= headerNeed(chunk, off, avail)) {
            const len = this.measure(chunk, off);
            if (avail >= len) {
              this.emit(chunk.subarray(off, off + len));
              off += len;
            } else {
              this.startBody(len, chunk.subarray(off, end));
              off = end;
            }
            continue;
          }
        }
        this.errorBase = this.frameStart;
        this.readingHead = true;
        off = this.readHeader(chunk, off);
      }
    } catch (err) {
      const own = !this.delivering;
      this.delivering = false;
      // Header reads throw offsets relative to the buffer they read; the caller wants stream offsets.
      // An error thrown by onFrame is the caller's own and passes through untouched.
      if (err instanceof ProtocolError && own) {
        if (this.failedHead === undefined) {
          const from = this.readingHead
            ? this.head.subarray(0, this.headLen)
            : chunk.subarray(this.frameStart - this.errorBase);
          this.failedHead = Buffer.from(from.subarray(0, MAX_FIXED_HEADER));
        }
        this.failure ??= err.shifted(this.errorBase);
        throw this.failure;
      }
      throw err;
    }
  }

  /** Declares the stream over: a partial frame left behind is a truncation. */
  end(): void {
    if (this.failure) throw this.failure;
    if (this.buffered > 0) {
      const at = this.frameStart + this.buffered;
      this.failure = new ProtocolError(
        'MESHPORT_FRAME_TRUNCATED',
        `stream ended inside a frame (${this.buffered} bytes held)`,
        at,
      );
      throw this.failure;
    }
  }

  /** Copies exactly the bytes the header still needs into `head`; returns the new chunk offset. */
  private readHeader(chunk: Buffer, off: number): number {
    const head = this.head;
    let want = headerNeed(head, 0, this.headLen);
    while (this.headLen < want && off < chunk.length) {
      const take = Math.min(want - this.headLen, chunk.length - off);
      chunk.copy(head, this.headLen, off, off + take);
      this.headLen += take;
      off += take;
      want = headerNeed(head, 0, this.headLen);
    }
    if (this.headLen < want) return off;
    const len = this.measure(head, 0);
    if (len === this.headLen) {
      this.emit(Buffer.from(head.subarray(0, len)));
    } else {
      this.startBody(len, Buffer.from(head.subarray(0, this.headLen)));
    }
    this.headLen = 0;
    return off;
  }

  /** Frame length from a complete fixed header at `buf[at]`, checked against the cap. */
  private measure(buf: Buffer, at: number): number {
    const len = frameLength(buf, at);
    if (len > this.maxFrameSize) {
      this.failure = new ProtocolError(
        'MESHPORT_FRAME_OVERSIZE',
        `frame declares ${len} bytes, more than the ${this.maxFrameSize}-byte maximum`,
        this.frameStart,
      );
      throw this.failure;
    }
    return len;
  }

  /** Starts collecting a frame of `len` bytes, `first` being its first bytes. */
  private startBody(len: number, first: Buffer): void {
    this.frameLen = len;
    this.body = EMPTY;
    this.filled = 0;
    this.state = State.Body;
    this.append(first, 0, first.length);
  }

  /**
   * Adds bytes to the frame being collected. The buffer doubles as bytes arrive, capped at the frame's length, so a
   * header that merely claims 16 MiB costs what was sent, never what was claimed, and copying stays linear.
   */
  private append(src: Buffer, from: number, to: number): void {
    const need = this.filled + (to - from);
    if (need > this.body.length) {
      const grown = Buffer.allocUnsafe(Math.min(this.frameLen, Math.max(need, this.body.length * 2, 4096)));
      this.body.copy(grown, 0, 0, this.filled);
      this.body = grown;
    }
    src.copy(this.body, this.filled, from, to);
    this.filled = need;
  }

  private emit(frame: Buffer): void {
    this.frameStart += frame.length;
    this.state = State.Header;
    this.filled = 0;
    this.body = EMPTY;
    this.delivering = true;
    this.onFrame(frame);
    this.delivering = false;
  }
}
