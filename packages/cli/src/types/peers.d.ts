// The part of the npm SDKs the demo drives (they ship no types).
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
  export const server: {
    RpcServer: new (options: { logger: Logger; port: number; protocol?: unknown; appName?: string }) => {
      publishPort: number;
      addService(info: { interfaceName: string; version?: string }, impl: Record<string, (...args: never[]) => unknown>): void;
      start(): Promise<void>;
      close(): Promise<void>;
    };
  };
  export const client: {
    RpcClient: new (options: { logger: Logger; protocol?: unknown; allowMock?: boolean }) => {
      createConsumer(options: { interfaceName: string; version?: string; serverHost: string; retryFaultInterval?: number }): Consumer;
      close(): Promise<void>;
    };
  };
}
declare module 'dubbo-remoting';
