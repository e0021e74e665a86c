// The part of the npm SDKs (they ship no types) that the router's SDK tests drive as real peers.

declare module 'sofa-rpc-node' {
  interface Logger {
    info(...args: unknown[]): void;
    warn(...args: unknown[]): void;
    error(...args: unknown[]): void;
    debug(...args: unknown[]): void;
  }
  interface Consumer {
    ready(): Promise<void>;
    invoke(method: string, args: unknown[], options?: { responseTimeout?: number }): Promise<unknown>;
  }
  /** One SDK connection (sofa-rpc-node's RpcConnection); `_decoder` is the protocol decoder it reads with. */
  interface RpcConnection {
    isConnected: boolean;
    heartbeat(): void;
    _decoder: import('node:events').EventEmitter;
  }
  interface ConnectionOptions {
    protocol: unknown;
    noDelay?: boolean;
    connectTimeout?: number;
    /** Idle time after which heartbeat() sends one. */
    maxIdleTime?: number;
  }
  export const server: {
    RpcServer: new (options: { logger: Logger; port: number; protocol?: unknown; appName?: string }) => {
      publishPort: number;
      addService(info: { interfaceName: string; version?: string }, impl: Record<string, (...args: never[]) => unknown>): void;
      start(): Promise<void>;
      close(): Promise<void>;
    };
  };
  export const client: {
    RpcClient: new (options: { logger: Logger; protocol?: unknown; connectionOpts?: ConnectionOptions }) => {
      createConsumer(options: {
        interfaceName: string;
        version?: string;
        serverHost: string;
        responseTimeout?: number;
        /** Pause between the consumer's rounds of reconnecting to failed addresses. @default 30000 */
        retryFaultInterval?: number;
      }): Consumer;
      /** Connections by `host:port`. */
      connectionManager: { connections: Map<string, RpcConnection> };
      close(): Promise<void>;
    };
  };
}

declare module 'sofa-bolt-node';
declare module 'dubbo-remoting';
