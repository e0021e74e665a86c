// ZooKeeper wire framing for the facade: a length-prefixed frame splitter, fixed-offset peeks, and the jute records
// (node-zookeeper-client's, plus the few newer ones it lacks) used to rewrite the packets the facade changes.

import jute from 'node-zookeeper-client/lib/jute';
import type { FieldSpec, Record as JuteRecord, RecordClass } from 'node-zookeeper-client/lib/jute';

export type { JuteRecord, RecordClass };

/** Request and reply header sizes in a frame, length prefix included: `len|xid|type` and `len|xid|zxid|err`. */
export const REQUEST_BODY_OFFSET = 12;
export const REPLY_BODY_OFFSET = 20;

/** Op codes the facade looks at (ZooKeeper's ZooDefs.OpCode). */
export const OP = {
  create: 1,
  delete: 2,
  exists: 3,
  getData: 4,
  setData: 5,
  getACL: 6,
  setACL: 7,
  getChildren: 8,
  getChildren2: 12,
  check: 13,
  multi: 14,
  create2: 15,
  createContainer: 19,
  createTTL: 21,
  closeSession: -11,
  setWatches: 101,
} as const;

/** Special xids: a watch notification (never a reply), a ping, an auth, and the SetWatches sent on reconnect. */
export const XID = { notification: -1, ping: -2, auth: -4, setWatches: -8 } as const;

/** ZooKeeper's error codes the facade acts on. */
export const ZK_ERR = { ok: 0, noNode: -101, nodeExists: -110 } as const;

/** Create flags (CreateMode): bit 0 ephemeral, bit 1 sequential; 4 container, 5/6 TTL. */
export const CREATE_FLAG = { ephemeral: 1, sequential: 2 } as const;

/**
 * The jute Record base class is not exported by node-zookeeper-client, only the classes generated from its
 * specification; it is reached through a generated class's prototype chain (util.inherits), which lets the facade
 * declare the ZooKeeper 3.5+ records the library's specification predates with the library's own (de)serializer.
 */
const RecordBase = Object.getPrototypeOf(jute.protocol.CreateResponse.prototype).constructor as new (
  spec: FieldSpec[],
) => JuteRecord;

function defineRecord(spec: FieldSpec[]): RecordClass {
  return class extends (RecordBase as unknown as new (spec: FieldSpec[]) => JuteRecord) {
    constructor() {
      super(spec);
    }
  } as unknown as RecordClass;
}

const createRequestSpec = new jute.protocol.CreateRequest().specification;

/** The records the facade decodes and encodes. */
export const RECORDS = {
  CreateRequest: jute.protocol.CreateRequest,
  CreateTTLRequest: defineRecord([...createRequestSpec, { name: 'ttl', type: 'long' }]),
  CreateResponse: jute.protocol.CreateResponse,
  Create2Response: defineRecord([
    { name: 'path', type: 'ustring' },
    { name: 'stat', type: 'data.Stat' },
  ]),
  DeleteRequest: jute.protocol.DeleteRequest,
  ExistsRequest: jute.protocol.ExistsRequest,
  GetDataRequest: jute.protocol.GetDataRequest,
  SetDataRequest: jute.protocol.SetDataRequest,
  GetACLRequest: jute.protocol.GetACLRequest,
  SetACLRequest: jute.protocol.SetACLRequest,
  CheckVersionRequest: jute.protocol.CheckVersionRequest,
  GetChildrenResponse: defineRecord([{ name: 'children', type: 'vector<ustring>' }]),
  GetChildren2Response: jute.protocol.GetChildren2Response,
  WatcherEvent: jute.protocol.WatcherEvent,
  SetWatches: jute.protocol.SetWatches,
} satisfies Record<string, RecordClass>;

/**
 * Decodes the record at `offset` of a whole frame. Undefined when the bytes are not exactly one such record (short,
 * trailing bytes, a length running past the end): the caller then passes the frame on untouched and lets ZooKeeper
 * or the client judge it.
 */
export function decodeRecord(cls: RecordClass, frame: Buffer, offset: number): JuteRecord | undefined {
  if (offset >= frame.length) return undefined;
  const record = new cls();
  // Checked before the library reads it: its deserializer allocates a `buffer` field at the declared length before
  // comparing it with the frame, so a 60-byte create claiming 2^31-1 bytes of data cost a 2 GiB allocation.
  if (fieldsEnd(record.specification, frame, offset) !== frame.length) return undefined;
  try {
    if (offset + record.deserialize(frame, offset) !== frame.length) return undefined;
  } catch {
    return undefined;
  }
  return record;
}

/**
 * Where the fields of `spec` starting at `offset` end, or undefined when a length or count in them runs past the
 * frame. Walks the same types as node-zookeeper-client's deserializer, reading only lengths; allocates nothing.
 */
function fieldsEnd(spec: readonly FieldSpec[], frame: Buffer, offset: number): number | undefined {
  let at: number | undefined = offset;
  for (const field of spec) {
    at = fieldEnd(field.type, frame, at);
    if (at === undefined) return undefined;
  }
  return at;
}

function fieldEnd(type: string, frame: Buffer, at: number): number | undefined {
  const fixed = type === 'int' ? 4 : type === 'long' ? 8 : type === 'boolean' ? 1 : 0;
  if (fixed > 0) return at + fixed <= frame.length ? at + fixed : undefined;
  const data = /^data\.(\w+)$/.exec(type);
  if (data) {
    const cls = jute.data[data[1]!];
    return cls ? fieldsEnd(new cls().specification, frame, at) : undefined;
  }
  if (at + 4 > frame.length) return undefined;
  const length = frame.readInt32BE(at);
  at += 4;
  if (type === 'buffer' || type === 'ustring') {
    if (length === -1) return at;
    return length >= 0 && at + length <= frame.length ? at + length : undefined;
  }
  const vector = /^vector<([\w.]+)>$/.exec(type);
  if (vector) {
    // Every element takes at least one byte, so a huge count ends at the frame's end, not after 2^31 turns.
    let next: number | undefined = at;
    for (let i = 0; i < length && next !== undefined; i++)
      next = next >= frame.length ? undefined : fieldEnd(vector[1]!, frame, next);
    return next;
  }
  return undefined;
}

/** A new frame: the original header bytes (xid, type or zxid/err) followed by `record`, length prefix recomputed. */
export function encodeFrame(frame: Buffer, bodyOffset: number, record: JuteRecord): Buffer {
  const out = Buffer.allocUnsafe(bodyOffset + record.byteLength());
  out.writeInt32BE(out.length - 4, 0);
  frame.copy(out, 4, 4, bodyOffset);
  record.serialize(out, bodyOffset);
  return out;
}

/**
 * The jute ustring at `offset` (the path every path-carrying request starts with) without decoding the rest of the
 * record; undefined when it is null or runs past the frame.
 */
export function peekString(frame: Buffer, offset: number): string | undefined {
  if (offset + 4 > frame.length) return undefined;
  const length = frame.readInt32BE(offset);
  if (length < 0 || offset + 4 + length > frame.length) return undefined;
  return frame.toString('utf8', offset + 4, offset + 4 + length);
}

/** Why a frame splitter stopped: a length prefix that is negative or above the limit. */
export interface BadFrameLength {
  declared: number;
  limit: number;
}

/**
 * Splits a byte stream into `len|payload` frames (4-byte big-endian length). A frame lying within one chunk is
 * handed out as a view of that chunk (no copy); only a frame split across chunks is assembled, in a buffer allocated
 * once its length has been checked, so a peer claiming 2 GiB gets refused, not buffered. Never touches a socket.
 */
export class JuteFrameSplitter {
  /** The frame being assembled across chunks, and how much of it has arrived. */
  private partial: Buffer | undefined;
  private filled = 0;
  /** Up to 3 bytes of a length prefix split across chunks. */
  private prefix: Buffer | undefined;
  private stopped = false;

  constructor(
    private readonly maxFrameBytes: number,
    private readonly onFrame: (frame: Buffer) => void,
    private readonly onBadLength: (bad: BadFrameLength) => void,
  ) {}

  /** Stops at once, also in the middle of a chunk (the connection is being closed). */
  stop(): void {
    this.stopped = true;
    this.partial = this.prefix = undefined;
  }

  push(chunk: Buffer): void {
    let at = 0;
    while (at < chunk.length && !this.stopped) {
      if (this.partial) {
        const n = Math.min(this.partial.length - this.filled, chunk.length - at);
        chunk.copy(this.partial, this.filled, at, at + n);
        this.filled += n;
        at += n;
        if (this.filled === this.partial.length) {
          const frame = this.partial;
          this.partial = undefined;
          this.onFrame(frame);
        }
        continue;
      }
      if (this.prefix) {
        const n = Math.min(4 - this.prefix.length, chunk.length - at);
        const prefix = Buffer.concat([this.prefix, chunk.subarray(at, at + n)]);
        at += n;
        if (prefix.length < 4) {
          this.prefix = prefix;
          continue;
        }
        this.prefix = undefined;
        if (!this.startFrame(prefix.readInt32BE(0))) return;
        prefix.copy(this.partial!, 0);
        this.filled = 4;
        continue;
      }
      const left = chunk.length - at;
      if (left < 4) {
        this.prefix = Buffer.from(chunk.subarray(at));
        return;
      }
      const length = chunk.readInt32BE(at);
      if (length >= 0 && length <= this.maxFrameBytes && left >= 4 + length) {
        this.onFrame(chunk.subarray(at, at + 4 + length));
        at += 4 + length;
        continue;
      }
      if (!this.startFrame(length)) return;
      chunk.copy(this.partial!, 0, at);
      this.filled = left;
      at = chunk.length;
    }
  }

  /** Checks a declared length and allocates the frame's buffer; false (and stopped) when the length is refused. */
  private startFrame(length: number): boolean {
    if (length < 0 || length > this.maxFrameBytes) {
      this.stop();
      this.onBadLength({ declared: length, limit: this.maxFrameBytes });
      return false;
    }
    this.partial = Buffer.allocUnsafe(4 + length);
    return true;
  }
}
