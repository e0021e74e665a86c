// What the registry suite's driver and its two watcher children (runners/registry-*-process) agree on: the services
// and provider URLs, the IPC messages, the clock, and the slice of node-zookeeper-client they call.

import { performance } from 'node:perf_hooks';

export const SOFA_ROOT = '/sofa-rpc';
export const PROVIDER_PORT = 12201;

/** `com.example.bench.Service0042` */
export function interfaceName(i: number): string {
  return `com.example.bench.Service${String(i).padStart(4, '0')}`;
}

/** The service key the sidecar routes by (sofa layout): `interface:1.0`. */
export function serviceKey(i: number): string {
  return `${interfaceName(i)}:1.0`;
}

export function providersPath(iface: string): string {
  return `${SOFA_ROOT}/${iface}/providers`;
}

/** Endpoint `e` (0-based) of every service: 127.0.0.<e+1>:12201, as ten provider pods would publish. */
export function endpointHost(e: number): string {
  return `127.0.0.${e + 1}`;
}

/** A provider URL the way sofa-rpc-node's ZooKeeper registry writes it (see its RpcServer publish). */
export function providerUrl(iface: string, e: number, startTime: number): string {
  return (
    `bolt://${endpointHost(e)}:${PROVIDER_PORT}?startTime=${startTime}&pid=${4000 + e}&uniqueId=&dynamic=true&appName=bench-provider` +
    '&timeout=3000&serialization=hessian2&weight=100&accepts=100000&language=nodejs&rpcVer=50400&protocol=' +
    `&interface=${iface}&version=1.0&group=SOFA`
  );
}

/** The identity of one routed endpoint, as both watchers report it: `<service key> <host>:<port>`. */
export function endpointId(service: string, host: string, port: number): string {
  return `${service} ${host}:${port}`;
}

/** Wall-clock milliseconds with sub-millisecond resolution, comparable across processes of one machine. */
export function wallNow(): number {
  return performance.timeOrigin + performance.now();
}

// ---------------------------------------------------------------------------------------------------------------
// IPC.

export interface MemoryFigures {
  /** process.memoryUsage().rss, bytes. */
  rss: number;
  /** process.resourceUsage().maxRSS, converted to bytes: the peak so far. */
  maxRss: number;
  heapUsed: number;
  heapTotal: number;
  external: number;
  arrayBuffers: number;
}

export function memoryFigures(): MemoryFigures {
  const m = process.memoryUsage();
  return {
    rss: m.rss,
    maxRss: process.resourceUsage().maxRSS * 1024,
    heapUsed: m.heapUsed,
    heapTotal: m.heapTotal,
    external: m.external,
    arrayBuffers: m.arrayBuffers,
  };
}

export interface WatcherReady {
  ready: 'sidecar' | 'watcher';
  pid: number;
  services: number;
  /** ms from the process's start to being subscribed to everything. */
  startupMs: number;
  memory: MemoryFigures;
}

/** child -> parent: endpoints that appeared, each `[endpointId, wall-clock ms when the child saw it]`. */
export interface SeenMessage {
  seen: [string, number][];
}

/**
 * parent -> child: `{ memory: true }` answered by `{ memory: MemoryFigures }`; with `gc: true` (and the child started
 * with --expose-gc) after two full garbage collections, so what is left is what the process holds on to.
 */
export interface MemoryRequest {
  memory: true;
  gc?: boolean;
}

/**
 * Collects what appeared and sends it in one message per turn of the event loop: the timestamps are taken when the
 * change is seen, so batching adds nothing to the figures, and 9,000 endpoints of a bulk load are not 9,000 messages.
 */
export class SeenReporter {
  private batch: [string, number][] = [];
  private scheduled = false;

  add(id: string, at: number): void {
    this.batch.push([id, at]);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.flush());
    }
  }

  private flush(): void {
    this.scheduled = false;
    const seen = this.batch;
    this.batch = [];
    if (seen.length > 0 && process.send) process.send({ seen } satisfies SeenMessage);
  }
}

/** Answers memory requests; exits when the parent goes (IPC closed) or on SIGTERM, after `cleanup`. */
export function serveParent(cleanup: () => Promise<void>): void {
  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    const timer = setTimeout(() => process.exit(0), 3000);
    timer.unref();
    cleanup().finally(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  process.on('disconnect', stop);
  process.on('message', (msg: Partial<MemoryRequest>) => {
    if (!msg?.memory) return;
    const gc = (globalThis as { gc?: () => void }).gc;
    if (msg.gc && gc) {
      gc();
      gc();
    }
    process.send!({ memory: memoryFigures() });
  });
}

// ---------------------------------------------------------------------------------------------------------------
// node-zookeeper-client 1.1.3 (no types of its own): only what the suite calls.

export interface ZkException extends Error {
  getCode(): number;
}

export interface ZkClient {
  connect(): void;
  close(): void;
  once(event: 'connected' | 'disconnected' | 'expired', listener: () => void): this;
  on(event: 'state', listener: (state: { name: string }) => void): this;
  create(path: string, data: Buffer | null, mode: number, cb: (err: ZkException | null, path: string) => void): void;
  mkdirp(path: string, data: Buffer | null, mode: number, cb: (err: ZkException | null, path: string) => void): void;
  getChildren(
    path: string,
    watcher: ((event: { name: string; path: string }) => void) | undefined,
    cb: (err: ZkException | null, children: string[]) => void,
  ): void;
}

export interface ZkModule {
  createClient(
    connectString: string,
    options?: { sessionTimeout?: number; spinDelay?: number; retries?: number },
  ): ZkClient;
  CreateMode: { PERSISTENT: number; EPHEMERAL: number };
  Exception: { NODE_EXISTS: number; NO_NODE: number };
}

export function loadZooKeeperClient(): ZkModule {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return require('node-zookeeper-client') as ZkModule;
}

/** A connected client (rejects after `timeoutMs`). */
export function connectZooKeeper(connectString: string, timeoutMs = 10_000): Promise<ZkClient> {
  const zk = loadZooKeeperClient();
  const client = zk.createClient(connectString, { sessionTimeout: 30_000, spinDelay: 200, retries: 0 });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      client.close();
      reject(new Error(`could not connect to ZooKeeper at ${connectString} within ${timeoutMs} ms`));
    }, timeoutMs);
    client.once('connected', () => {
      clearTimeout(timer);
      resolve(client);
    });
    client.connect();
  });
}
