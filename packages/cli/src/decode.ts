// `meshport decode`: frames from hex, base64, a file or stdin, printed for people or as JSON lines.

import { createReadStream } from 'node:fs';
import {
  FrameSplitter,
  ProtocolError,
  decodeFrame,
  frameLength,
  headerNeed,
  type FrameHeader,
} from '@meshport/protocol';
import { decodeBody } from '@meshport/protocol/body';
import { InputError } from './errors';
import { Style, bodyPretty, frameJson, framePretty } from './format';
import type { Io } from './io';

export interface DecodeCommandOptions {
  hex?: string;
  base64?: string;
  /** A file of raw bytes or hex text; `-` is stdin. */
  file?: string;
  json: boolean;
  body: boolean;
  colour: boolean;
  maxFrameSize?: number;
}

/** Hex as people paste it: whitespace, `0x` prefixes and `:`/`-` separators are ignored. */
export function parseHex(text: string): Buffer {
  const clean = text.replace(/0x/gi, '').replace(/[\s:-]/g, '');
  const bad = clean.search(/[^0-9a-fA-F]/);
  if (bad >= 0) throw new InputError(`invalid hex: '${clean[bad]}' is not a hex digit (hex character ${bad})`);
  if (clean.length % 2 !== 0) throw new InputError(`invalid hex: odd number of digits (${clean.length})`);
  return Buffer.from(clean, 'hex');
}

export function parseBase64(text: string): Buffer {
  const clean = text.replace(/\s/g, '');
  if (!/^[A-Za-z0-9+/_-]*={0,2}$/.test(clean)) throw new InputError('invalid base64 input');
  return Buffer.from(clean, 'base64');
}

/** No frame starts with an ASCII hex digit, so stdin that does is hex text (e.g. a fixture file piped in). */
function looksLikeHexText(chunk: Buffer): boolean {
  const first = chunk.toString('latin1').trimStart()[0];
  return first !== undefined && /[0-9a-fA-F]/.test(first);
}

async function* inputChunks(opts: DecodeCommandOptions, io: Io): AsyncGenerator<Buffer> {
  if (opts.hex !== undefined) yield parseHex(opts.hex);
  else if (opts.base64 !== undefined) yield parseBase64(opts.base64);
  else if (opts.file === '-') yield* rawOrHexText(io.stdin);
  else if (opts.file !== undefined) {
    try {
      yield* rawOrHexText(createReadStream(opts.file));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).syscall === undefined) throw err;
      throw new InputError(`cannot read ${opts.file}: ${(err as Error).message}`);
    }
  } else yield* rawOrHexText(io.stdin);
}

/** Raw bytes stream through as they come; hex text (a fixture file, a paste) is read whole and parsed. */
async function* rawOrHexText(stream: AsyncIterable<Buffer | string>): AsyncGenerator<Buffer> {
  let mode: 'unknown' | 'hex' | 'raw' = 'unknown';
  const hexText: string[] = [];
  for await (const chunk of stream) {
    const buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    if (mode === 'unknown' && buf.toString('latin1').trim() !== '') mode = looksLikeHexText(buf) ? 'hex' : 'raw';
    if (mode === 'hex') hexText.push(buf.toString('latin1'));
    else yield buf;
  }
  if (mode === 'hex') yield parseHex(hexText.join(''));
}

/** Prints every frame of the input; returns the exit code (0 all good, 1 bad input after the good frames). */
export async function runDecode(opts: DecodeCommandOptions, io: Io): Promise<number> {
  const style = new Style(opts.colour);
  let count = 0;
  const tail = new FrameTail();
  const splitter = new FrameSplitter(
    (frame) => {
      const start = splitter.offset - frame.length;
      tail.frameEnded(splitter.offset);
      let header: FrameHeader;
      try {
        header = decodeFrame(frame);
      } catch (err) {
        throw err instanceof ProtocolError ? err.shifted(start) : err;
      }
      count++;
      // A body in a serialization no decoder reads is not bad input: its header is shown with a note, and on it goes.
      const readable = header.serialization === 'hessian2';
      const note =
        opts.body && !readable
          ? `body not decoded: no body decoder for serialization ${header.serialization}`
          : undefined;
      // A body that a decoder reads but finds broken is bad input: the header is still shown before the error.
      let broken: ProtocolError | undefined;
      let body: unknown[] | undefined;
      try {
        body = opts.body && readable ? bodyOf(frame, header, start) : undefined;
      } catch (err) {
        if (!(err instanceof ProtocolError)) throw err;
        broken = err;
      }
      if (opts.json) {
        io.stdout.write(JSON.stringify(frameJson(header, { offset: start, body, bodyNote: note })) + '\n');
      } else {
        io.stdout.write(`${style.dim(`#${count} @${start}`)} ${framePretty(header, style)}\n`);
        if (body) io.stdout.write(bodyPretty(body, style, '  ') + '\n');
        if (note) io.stdout.write(`  ${style.yellow(note)}\n`);
      }
      if (broken) throw broken;
      // A bad CRC is shown (the frame is readable) and then ends the run as bad input.
      if (header.protocol === 'bolt' && header.crc === 'bad') {
        const at = start + header.frameLength - 4;
        throw new ProtocolError('MESHPORT_BOLT_BAD_CRC', 'Bolt v2 CRC32 does not match the frame', at);
      }
    },
    { maxFrameSize: opts.maxFrameSize },
  );
  try {
    let sawInput = false;
    for await (const chunk of inputChunks(opts, io)) {
      if (chunk.length > 0) sawInput = true;
      const at = splitter.offset;
      splitter.write(chunk);
      tail.wrote(chunk, at);
    }
    try {
      splitter.end();
    } catch (err) {
      throw err instanceof ProtocolError && err.code === 'MESHPORT_FRAME_TRUNCATED' ? tail.truncation(err) : err;
    }
    if (!sawInput) throw new InputError('no input: give --hex, --base64, --file or bytes on stdin');
    return 0;
  } catch (err) {
    if (err instanceof ProtocolError) {
      io.stderr.write(`meshport decode: ${err.code}: ${err.message}\n`);
      return 1;
    }
    if (err instanceof InputError) {
      io.stderr.write(`meshport decode: ${err.message}\n`);
      return 1;
    }
    throw err;
  }
}

/**
 * The first bytes of the frame the input ended in, kept so that a truncation names the length the frame's header
 * declares as well as what the input held (the splitter only knows what it held).
 */
class FrameTail {
  /** Bytes that cover any fixed header, Bolt v2 with its switch byte included. */
  private static readonly KEEP = 64;
  private end = 0;
  private head = Buffer.alloc(0);
  private total = 0;

  frameEnded(offset: number): void {
    this.end = offset;
  }

  /** After each chunk: the bytes from the end of the last whole frame, up to KEEP of them. */
  wrote(chunk: Buffer, at: number): void {
    this.total = at + chunk.length;
    if (this.end >= at) this.head = Buffer.from(chunk.subarray(this.end - at, this.end - at + FrameTail.KEEP));
    else if (this.head.length < FrameTail.KEEP)
      this.head = Buffer.concat([this.head, chunk.subarray(0, FrameTail.KEEP - this.head.length)]);
  }

  truncation(err: ProtocolError): ProtocolError {
    const held = this.total - this.end;
    let message: string;
    try {
      const need = headerNeed(this.head, 0, this.head.length);
      if (this.head.length < need) message = `the input ends inside a frame header: ${held} of its ${need} bytes`;
      else {
        const declared = frameLength(this.head, 0);
        message = `the input ends inside a frame: its header declares ${declared} bytes, the input holds ${held} (${declared - held} missing)`;
      }
    } catch {
      return err;
    }
    return new ProtocolError('MESHPORT_FRAME_TRUNCATED', message, err.offset);
  }
}

function bodyOf(frame: Buffer, header: FrameHeader, start: number): unknown[] {
  try {
    return decodeBody(frame, header);
  } catch (err) {
    throw err instanceof ProtocolError ? err.shifted(start) : err;
  }
}
