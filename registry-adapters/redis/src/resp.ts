// The RESP codec of the Redis facade: a streaming parser that yields each value decoded and as its raw bytes, and an
// encoder for the values the facade rewrites. It never touches a socket; facade.ts owns the I/O.

import { RegistryError } from '@meshport/registry-core';

/** One-line values: RESP2 simple string, error, integer; RESP3 null, double, boolean, big number. */
export type RespLineType = '+' | '-' | ':' | '_' | ',' | '#' | '(';
/** Length-prefixed values: RESP2 bulk string; RESP3 blob error and verbatim string. */
export type RespBulkType = '$' | '!' | '=';
/** Counted values: RESP2 array; RESP3 map, set, push and attribute. */
export type RespAggregateType = '*' | '%' | '~' | '>' | '|';

export interface RespLine {
  readonly type: RespLineType;
  /** The line after the type byte, without CRLF, decoded as UTF-8. */
  readonly text: string;
}

export interface RespBulk {
  readonly type: RespBulkType;
  /** null for a nil bulk (`$-1`). When parsed, a view into the raw bytes of the value, not a copy. */
  readonly data: Buffer | null;
}

export interface RespAggregate {
  readonly type: RespAggregateType;
  /** null for a nil array (`*-1`). Maps and attributes hold their keys and values flattened: k1, v1, k2, v2, ... */
  readonly items: RespValue[] | null;
}

export type RespValue = RespLine | RespBulk | RespAggregate;

/**
 * A telnet-style command (a request line not starting with '*'). `args` are split on spaces and tabs; `quoted` says
 * the line holds quote characters, whose meaning to Redis (sdssplitargs) this split does not reproduce.
 */
export interface RespInlineCommand {
  readonly type: 'inline';
  readonly args: Buffer[];
  readonly quoted: boolean;
}

export interface RespParserOptions {
  /**
   * 'request': what a client may send, as Redis reads it: arrays of bulk strings, or inline lines.
   * 'reply': every RESP2 and RESP3 type a server may send.
   */
  mode: 'request' | 'reply';
  /** Largest bulk length accepted; a larger claim is a protocol error before any of its bytes are held. @default 536870912 */
  maxBulkBytes?: number;
  /** Largest header or inline line in request mode (Redis' PROTO_INLINE_MAX_SIZE). @default 65536 */
  maxRequestLineBytes?: number;
  /** Each complete top-level value, with exactly the bytes it was read from. */
  onValue(value: RespValue | RespInlineCommand, raw: Buffer): void;
  /** Once, on the first protocol error; the parser then ignores everything written to it. */
  onError(error: RegistryError): void;
}

export const RESP_PARSER_DEFAULTS = {
  /** Redis' proto-max-bulk-len default. */
  maxBulkBytes: 512 * 1024 * 1024,
  maxRequestLineBytes: 64 * 1024,
  /** Redis refuses a request array longer than this. */
  maxRequestArrayLength: 1024 * 1024 * 1024,
} as const;

type MutableBulk = { type: RespBulkType; data: Buffer | null };
type MutableAggregate = { type: RespAggregateType; items: RespValue[] | null };

const CR = 0x0d;
const LF = 0x0a;
const INTEGER = /^-?\d+$/;

/**
 * A push parser: `write(chunk)` as bytes arrive, values come out through `onValue` in order. Memory grows with the
 * bytes received, never with what a header claims: a bulk is collected chunk by chunk as it arrives, and the decoded
 * value is a view into the raw bytes, so a value is held once (plus one copy while it is joined at completion).
 */
export class RespParser {
  private readonly mode: 'request' | 'reply';
  private readonly maxBulkBytes: number;
  private readonly maxLineBytes: number;
  private readonly onValue: RespParserOptions['onValue'];
  private readonly onError: RespParserOptions['onError'];

  private state: 'line' | 'body' | 'cr' | 'lf' | 'dead' = 'line';
  /** The header line being read, when it spans chunks. */
  private line: Buffer[] = [];
  private lineBytes = 0;
  /** Raw bytes of the unfinished top-level value that came in earlier chunks. */
  private parts: Buffer[] = [];
  private partsBytes = 0;
  /** Open aggregates, innermost last, with how many items each still lacks. */
  private stack: { node: MutableAggregate; remaining: number }[] = [];
  /** Bulks of the current value whose data is cut out of the raw bytes once the value is whole. */
  private fixups: { node: MutableBulk; start: number; length: number }[] = [];
  private bodyNode: MutableBulk | undefined;
  private bodyRemaining = 0;
  // The chunk being parsed, the read position in it, and where the current value's bytes begin in it.
  private chunk: Buffer = Buffer.alloc(0);
  private pos = 0;
  private rawStart = 0;

  constructor(options: RespParserOptions) {
    this.mode = options.mode;
    this.maxBulkBytes = options.maxBulkBytes ?? RESP_PARSER_DEFAULTS.maxBulkBytes;
    this.maxLineBytes =
      options.mode === 'request'
        ? (options.maxRequestLineBytes ?? RESP_PARSER_DEFAULTS.maxRequestLineBytes)
        : // A server's status and error lines are short, but nothing in RESP bounds them below a bulk.
          this.maxBulkBytes;
    this.onValue = options.onValue;
    this.onError = options.onError;
  }

  /**
   * Bytes held for the value not yet complete. A header line cut by a chunk's end is in `parts` already (the raw bytes
   * of the whole value are kept); `line` only views the same memory, so it is not counted again.
   */
  get bufferedBytes(): number {
    return this.partsBytes;
  }

  /** True once a protocol error was reported. */
  get failed(): boolean {
    return this.state === 'dead';
  }

  write(chunk: Buffer): void {
    if (this.state === 'dead') return;
    this.chunk = chunk;
    this.pos = 0;
    this.rawStart = 0;
    const n = chunk.length;
    while (this.pos < n && !this.failed) {
      switch (this.state) {
        case 'line': {
          const nl = chunk.indexOf(LF, this.pos);
          const end = nl < 0 ? n : nl;
          if (this.lineBytes + (end - this.pos) > this.maxLineBytes) {
            this.fail(this.lineTooLong(this.line.length > 0 ? this.line[0]![0] : chunk[this.pos]));
            break;
          }
          if (nl < 0) {
            this.line.push(chunk.subarray(this.pos));
            this.lineBytes += n - this.pos;
            this.pos = n;
            break;
          }
          const piece = chunk.subarray(this.pos, nl);
          const line = this.line.length === 0 ? piece : Buffer.concat([...this.line, piece]);
          this.line = [];
          this.lineBytes = 0;
          this.pos = nl + 1;
          this.onLine(line);
          break;
        }
        case 'body': {
          const take = Math.min(this.bodyRemaining, n - this.pos);
          this.pos += take;
          this.bodyRemaining -= take;
          if (this.bodyRemaining === 0) this.state = 'cr';
          break;
        }
        case 'cr':
          if (chunk[this.pos++] !== CR) this.fail('Protocol error: expected CRLF after a bulk string');
          else this.state = 'lf';
          break;
        case 'lf':
          if (chunk[this.pos++] !== LF) this.fail('Protocol error: expected CRLF after a bulk string');
          else {
            this.state = 'line';
            const node = this.bodyNode!;
            this.bodyNode = undefined;
            this.complete(node);
          }
          break;
      }
    }
    if (!this.failed && this.rawStart < n) {
      this.parts.push(chunk.subarray(this.rawStart));
      this.partsBytes += n - this.rawStart;
    }
    this.chunk = Buffer.alloc(0);
  }

  private onLine(line: Buffer): void {
    const top = this.stack.at(-1);
    if (this.mode === 'request' && !top && line[0] !== 0x2a /* '*' */) {
      this.inline(line);
      return;
    }
    if (line.length < 2 || line[line.length - 1] !== CR) {
      this.fail(line.length === 0 ? 'Protocol error: empty line' : 'Protocol error: expected CRLF');
      return;
    }
    const type = String.fromCharCode(line[0]!);
    const text = line.toString('utf8', 1, line.length - 1);
    if (this.mode === 'request') {
      if (!top) this.aggregateHeader('*', text);
      else if (type !== '$') this.fail(`Protocol error: expected '$', got '${type}'`);
      else this.bulkHeader('$', text);
      return;
    }
    switch (type) {
      case '+':
      case '-':
      case ':':
      case '_':
      case ',':
      case '#':
      case '(':
        this.complete({ type, text });
        return;
      case '$':
      case '!':
      case '=':
        this.bulkHeader(type, text);
        return;
      case '*':
      case '%':
      case '~':
      case '>':
      case '|':
        this.aggregateHeader(type, text);
        return;
      default:
        this.fail(`Protocol error: unknown RESP type byte 0x${line[0]!.toString(16).padStart(2, '0')}`);
    }
  }

  private bulkHeader(type: RespBulkType, text: string): void {
    const length = INTEGER.test(text) ? Number(text) : NaN;
    if (this.mode === 'reply' && length === -1) {
      this.complete({ type, data: null });
      return;
    }
    if (!(length >= 0) || length > this.maxBulkBytes) {
      this.fail(
        this.mode === 'request' ? 'Protocol error: invalid bulk length' : `Protocol error: invalid bulk length ${text}`,
      );
      return;
    }
    const node: MutableBulk = { type, data: null };
    this.fixups.push({ node, start: this.partsBytes + (this.pos - this.rawStart), length });
    this.bodyNode = node;
    this.bodyRemaining = length;
    this.state = length === 0 ? 'cr' : 'body';
  }

  private aggregateHeader(type: RespAggregateType, text: string): void {
    let count = INTEGER.test(text) ? Number(text) : NaN;
    if (this.mode === 'request') {
      if (!(count <= RESP_PARSER_DEFAULTS.maxRequestArrayLength)) {
        this.fail('Protocol error: invalid multibulk length');
        return;
      }
      // Redis skips `*0` and `*-1` without a reply; the caller sees an empty command.
      if (count <= 0) {
        this.complete({ type, items: [] });
        return;
      }
    } else {
      if (count === -1) {
        this.complete({ type, items: null });
        return;
      }
      if (!(count >= 0) || !Number.isSafeInteger(count * 2)) {
        this.fail(`Protocol error: invalid aggregate length ${text}`);
        return;
      }
      if (type === '%' || type === '|') count *= 2;
    }
    // No preallocation: a claimed count costs nothing until its items arrive.
    const node: MutableAggregate = { type, items: [] };
    if (count === 0) this.complete(node);
    else this.stack.push({ node, remaining: count });
  }

  private inline(line: Buffer): void {
    const text = line.toString('latin1', 0, line[line.length - 1] === CR ? line.length - 1 : line.length);
    const args = text
      .split(/[ \t]+/)
      .filter((a) => a !== '')
      .map((a) => Buffer.from(a, 'latin1'));
    this.emit({ type: 'inline', args, quoted: /["']/.test(text) });
  }

  private complete(value: RespValue): void {
    for (;;) {
      const top = this.stack.at(-1);
      if (!top) {
        this.emit(value);
        return;
      }
      top.node.items!.push(value);
      if (--top.remaining > 0) return;
      this.stack.pop();
      value = top.node;
    }
  }

  private emit(value: RespValue | RespInlineCommand): void {
    const tail = this.chunk.subarray(this.rawStart, this.pos);
    const raw = this.parts.length === 0 ? tail : Buffer.concat([...this.parts, tail], this.partsBytes + tail.length);
    for (const f of this.fixups) f.node.data = raw.subarray(f.start, f.start + f.length);
    this.parts = [];
    this.partsBytes = 0;
    this.fixups = [];
    this.rawStart = this.pos;
    this.onValue(value, raw);
  }

  private lineTooLong(first: number | undefined): string {
    if (this.mode === 'reply') return 'Protocol error: reply line too long';
    if (this.stack.length > 0) return 'Protocol error: too big bulk count string';
    return first === 0x2a ? 'Protocol error: too big mbulk count string' : 'Protocol error: too big inline request';
  }

  private fail(message: string): void {
    this.state = 'dead';
    this.line = [];
    this.lineBytes = 0;
    this.parts = [];
    this.partsBytes = 0;
    this.stack = [];
    this.fixups = [];
    this.bodyNode = undefined;
    this.onError(new RegistryError('MESHPORT_REGISTRY_BAD_RESP', message));
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Encoding.

/** A bulk string value. */
export function respBulk(data: Buffer | string): RespBulk {
  return { type: '$', data: typeof data === 'string' ? Buffer.from(data, 'utf8') : data };
}

/** A command as every client sends it: an array of bulk strings. */
export function encodeCommand(args: readonly (Buffer | string)[]): Buffer {
  return encodeValue({ type: '*', items: args.map(respBulk) });
}

/** Any value back to bytes; what a parser read from canonical RESP encodes to the same bytes. */
export function encodeValue(value: RespValue): Buffer {
  const out: Buffer[] = [];
  encodeInto(value, out);
  return out.length === 1 ? out[0]! : Buffer.concat(out);
}

function encodeInto(value: RespValue, out: Buffer[]): void {
  switch (value.type) {
    case '+':
    case '-':
    case ':':
    case '_':
    case ',':
    case '#':
    case '(':
      out.push(Buffer.from(`${value.type}${value.text}\r\n`, 'utf8'));
      return;
    case '$':
    case '!':
    case '=':
      if (value.data === null) {
        out.push(Buffer.from(`${value.type}-1\r\n`));
        return;
      }
      out.push(Buffer.from(`${value.type}${value.data.length}\r\n`), value.data, Buffer.from('\r\n'));
      return;
    default: {
      if (value.items === null) {
        out.push(Buffer.from(`${value.type}-1\r\n`));
        return;
      }
      const pairs = value.type === '%' || value.type === '|';
      out.push(Buffer.from(`${value.type}${pairs ? value.items.length / 2 : value.items.length}\r\n`));
      for (const item of value.items) encodeInto(item, out);
    }
  }
}
