// The part of node-zookeeper-client 1.1.3's jute module (record classes generated from its specification.json) that
// the ZooKeeper facade uses to decode and encode the records it rewrites.

declare module 'node-zookeeper-client/lib/jute' {
  /** One field of a record: jute types 'int', 'long', 'buffer', 'ustring', 'boolean', 'vector<T>', 'data.X'. */
  export interface FieldSpec {
    name: string;
    type: string;
  }

  /**
   * A generated record: its fields become properties (long as an 8-byte Buffer, buffer/ustring as undefined when
   * jute's length is -1). `deserialize` and `serialize` return the bytes read or written.
   */
  export interface Record {
    readonly specification: FieldSpec[];
    byteLength(): number;
    serialize(buffer: Buffer, offset: number): number;
    deserialize(buffer: Buffer, offset: number): number;
    [field: string]: unknown;
  }

  export type RecordClass = new (...args: unknown[]) => Record;

  export const OP_CODES: { readonly [name: string]: number };
  export const protocol: { readonly [name: string]: RecordClass };
  export const data: { readonly [name: string]: RecordClass };
}
