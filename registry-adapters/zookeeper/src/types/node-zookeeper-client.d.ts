// The part of node-zookeeper-client 1.1.3 (which ships no types) that the ZooKeeper adapter and its tests use
// (test/tsconfig.json includes this file).

declare module 'node-zookeeper-client' {
  import { EventEmitter } from 'node:events';

  export interface Stat {
    version: number;
    ephemeralOwner: Buffer;
  }

  export class Exception extends Error {
    getCode(): number;
    getName(): string;
    static readonly NO_NODE: number;
    static readonly NODE_EXISTS: number;
    static readonly CONNECTION_LOSS: number;
    static readonly SESSION_EXPIRED: number;
  }

  export const CreateMode: { PERSISTENT: number; PERSISTENT_SEQUENTIAL: number; EPHEMERAL: number; EPHEMERAL_SEQUENTIAL: number };

  export interface State {
    name: string;
    code: number;
  }

  export const State: {
    SYNC_CONNECTED: State;
    DISCONNECTED: State;
    EXPIRED: State;
    AUTH_FAILED: State;
    CONNECTED_READ_ONLY: State;
  };

  export interface WatcherEvent {
    type: number;
    name: string;
    path: string;
    getType(): number;
    getName(): string;
    getPath(): string;
  }

  export interface Client extends EventEmitter {
    connect(): void;
    close(): void;
    getState(): State;
    getSessionId(): Buffer;
    getSessionPassword(): Buffer;
    getSessionTimeout(): number;
    create(path: string, data: Buffer | null, mode: number, cb: (err: Error | null, path: string) => void): void;
    mkdirp(path: string, data: Buffer | null, mode: number, cb: (err: Error | null, path: string) => void): void;
    getData(path: string, cb: (err: Error | null, data: Buffer, stat: Stat) => void): void;
    setData(path: string, data: Buffer | null, version: number, cb: (err: Error | null, stat: Stat) => void): void;
    exists(path: string, cb: (err: Error | null, stat: Stat | null) => void): void;
    exists(path: string, watcher: ((event: WatcherEvent) => void) | undefined, cb: (err: Error | null, stat: Stat | null) => void): void;
    getChildren(path: string, watcher: ((event: WatcherEvent) => void) | undefined, cb: (err: Error | null, children: string[], stat: Stat) => void): void;
    remove(path: string, version: number, cb: (err: Error | null) => void): void;
  }

  /** sessionId and sessionPassword resume (or, in tests, take over) an existing session. */
  export interface ClientOptions {
    sessionTimeout?: number;
    spinDelay?: number;
    retries?: number;
    sessionId?: Buffer;
    sessionPassword?: Buffer;
  }

  export function createClient(connectString: string, options?: ClientOptions): Client;
}
