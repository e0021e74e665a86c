// The part of the npm SDKs (they ship no types) that the demo and the test suites drive as real peers. One file for
// every project that uses them: the router's and the end-to-end tests include it from here.

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
  /** sofa-rpc-node's ZooKeeper registry: `address` is `host:port[,host:port][/root]`, root `/sofa-rpc` by default. */
  interface Registry {
    ready(): Promise<void>;
    close(): Promise<void>;
    /** Emits `<interfaceName>` with the decoded provider URLs on every change. */
    on(event: string, listener: (urls: string[]) => void): this;
    /** Writes one provider node (`config.url` under the interface's providers path); what publish() does first. */
    register(config: { interfaceName: string; url: string }): Promise<void>;
  }
  export const registry: {
    ZookeeperRegistry: new (options: {
      logger: Logger;
      address: string;
      /** Replaces the cluster-client generator the registry (and its zookeeper-cluster-client) is built with. */
      cluster?: unknown;
    }) => Registry;
  };
  export const server: {
    RpcServer: new (options: {
      logger: Logger;
      port: number;
      protocol?: unknown;
      appName?: string;
      registry?: Registry;
      /** The host written into the published URL. @default the machine's first non-internal IPv4 address */
      publishAddress?: string;
    }) => {
      publishPort: number;
      /** The server's base URL (protocol://publishAddress:port?params); each read carries a new startTime. */
      readonly url: string;
      /**
       * Serves `impl` under `interface:version[:uniqueId]` (the service header Bolt calls carry). The published URL
       * carries `group` (default 'SOFA') but not uniqueId; customMeta entries become URL parameters.
       */
      addService(
        info: { interfaceName: string; version?: string; uniqueId?: string; group?: string; customMeta?: Record<string, string> },
        impl: Record<string, (...args: never[]) => unknown>,
      ): void;
      start(): Promise<void>;
      /** Registers every service with the registry; resolves when done. */
      publish(): Promise<void>;
      close(): Promise<void>;
    };
  };
  export const client: {
    RpcClient: new (options: {
      logger: Logger;
      protocol?: unknown;
      allowMock?: boolean;
      registry?: Registry;
      connectionOpts?: ConnectionOptions;
    }) => {
      createConsumer(options: {
        interfaceName: string;
        version?: string;
        /** Filters the registry's providers by their `group`, and rides in every Dubbo call's attachments. @default 'SOFA' */
        group?: string;
        /** A fixed address instead of the registry. */
        serverHost?: string;
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
