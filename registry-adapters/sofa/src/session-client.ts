// The upstream SOFA Registry adapter: a session-server client speaking Bolt + Hessian 2.0, as sofa-registry's Java
// client does, kept safe through disconnects and a session server that comes back empty.

import { createHash, randomUUID } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import {
  BoltStatus,
  FrameSplitter,
  decodeFrame,
  encodeBoltHeartbeat,
  encodeBoltHeartbeatAck,
  peekFrameIdentity,
  type BoltFrameOptions,
  type FrameHeader,
} from '@meshport/protocol';
import {
  ConnectionStateCell,
  ProviderLists,
  RegistryError,
  parseProviderUrl,
  providerUrlText,
  sofaServiceKey,
  type ConnectionError,
  type ConnectionState,
  type ProvidersListener,
  type ProviderUrl,
  type RegistryAdapter,
  type RegistryLogger,
  type Unsubscribe,
  waitAtMost,
} from '@meshport/registry-core';
import { loggable } from './loggable';
import { identityOfDataId, withIdentity, type ServiceIdentity } from './service-identity';
import { encodeBoltRequest, encodeBoltResponse } from './session-bolt';
import {
  SOFA_REGISTRY_CLASSES,
  decodeReceivedData,
  decodeRegisterResponse,
  encodePublisherRegister,
  encodeResult,
  encodeSubscriberRegister,
  type ReceivedData,
  type SofaScope,
} from './session-model';

export interface SofaRegistryClientOptions {
  /** Session servers, `h1:9600,h2:9600` (`;` separates too); used when `discovery` is unset or cannot answer. */
  servers: string;
  /**
   * `host[:port]` of a session server's HTTP API (port 9603 when none is given): the session list is asked of
   * `/api/servers/queryWithWeight`, then `/api/servers/query`, before every (re)connection.
   */
  discovery?: string;
  /** @default 'DefaultDataCenter' */
  dataCenter?: string;
  /** Written into every register and sent to discovery. @default 'DEFAULT_ZONE' */
  zone?: string;
  /** @default null (not sent) */
  appName?: string;
  /** The tenant; a session server only matches registers of the same instanceId. @default 'DEFAULT_INSTANCE_ID' */
  instanceId?: string;
  /** @default 'SOFA' (what SOFA RPC uses) */
  group?: string;
  /**
   * Which publishers a subscriber hears: its zone, its data center, or all.
   * @default 'global' (what sofa-rpc's SofaRegistry subscribes with; the bare Java client's default is 'zone')
   */
  scope?: SofaScope;
  /**
   * Delay before a reconnect, or before resending a register the server failed; null gives up (a reconnect then waits
   * for nothing: the adapter stays disconnected). Attempts count from 1.
   * @default capped exponential backoff (100 ms doubling to 5 s) with jitter, never giving up
   */
  retryStrategy?: (attempt: number) => number | null;
  logger?: RegistryLogger;
  /** How long a register may wait for its RegisterResponse. @default 1000 (the Java client's invokeTimeout) */
  requestTimeoutMs?: number;
  /** How long a TCP connect or a discovery query may take. @default 3000 (the Java client's connectTimeout) */
  connectTimeoutMs?: number;
  /** How long the first publish or subscribe waits for the first connection before only being remembered. @default 10000 */
  firstConnectionWaitMs?: number;
  /** How long `subscribe` waits for the server's first push once registered. @default 3000 */
  firstPushTimeoutMs?: number;
  /**
   * After a reconnect, how long pushes may only add providers to the list held through the outage. A session server
   * that restarted empty pushes before the other sidecars have published again; this is their time to do so.
   * @default 3000
   */
  resyncGraceMs?: number;
  /** A heartbeat is sent after this long without any frame either way (Bolt's client idle time). @default 15000 */
  heartbeatIntervalMs?: number;
  /** @default 1000 (Bolt's heartbeat timeout) */
  heartbeatTimeoutMs?: number;
  /** Unanswered heartbeats in a row after which the connection is dropped and made again. @default 3 */
  maxMissedHeartbeats?: number;
}

export const SOFA_REGISTRY_CLIENT_DEFAULTS = {
  dataCenter: 'DefaultDataCenter',
  zone: 'DEFAULT_ZONE',
  instanceId: 'DEFAULT_INSTANCE_ID',
  group: 'SOFA',
  scope: 'global' as SofaScope,
  discoveryPort: 9603,
  requestTimeoutMs: 1_000,
  connectTimeoutMs: 3_000,
  firstConnectionWaitMs: 10_000,
  firstPushTimeoutMs: 3_000,
  resyncGraceMs: 3_000,
  heartbeatIntervalMs: 15_000,
  heartbeatTimeoutMs: 1_000,
  maxMissedHeartbeats: 3,
  /** SOFA RPC's dataId suffix: `interface:version[:uniqueId]@DEFAULT`. */
  dataIdSuffix: '@DEFAULT',
} as const;

/** Capped exponential backoff with jitter, so sidecars dropped together do not all come back in the same instant. */
const defaultRetryStrategy = (attempt: number): number | null =>
  Math.min(100 * 2 ** Math.min(attempt, 16), 5_000) * (0.5 + Math.random() / 2);

interface ServerAddress {
  host: string;
  port: number;
  /** From discovery's `?weight=`: the Java client prefers the lighter of two random servers. */
  weight: number;
}

/** One TCP connection to a session server and what lives and dies with it. */
interface Connection {
  readonly socket: net.Socket;
  /** Increases with every connection: what was sent or seen on an older one no longer counts. */
  readonly generation: number;
  readonly server: ServerAddress;
  readonly pending: Map<number, PendingRequest>;
  connected: boolean;
  lastActivity: number;
  heartbeatTimer: NodeJS.Timeout | undefined;
  heartbeat: { id: number; timer: NodeJS.Timeout } | undefined;
  missedHeartbeats: number;
}

interface PendingRequest {
  resolve: (answer: { className: string; body: Buffer }) => void;
  reject: (error: Error) => void;
  timer: NodeJS.Timeout;
}

/** What a publisher and a subscriber share: a register the server must hold while we are connected. */
interface Registration {
  readonly registId: string;
  readonly service: string;
  readonly dataId: string;
  /** Java's pubVersion: raised by every change, so the server keeps the newest of two registers it receives. */
  version: number;
  timestamp: number;
  /** False once unregistered: an UNREGISTER is due, and the registration is forgotten once the server has it. */
  enabled: boolean;
  /** The send for this generation and version, in flight or done; cleared when it fails. */
  sync: { generation: number; version: number; done: Promise<void> } | undefined;
}

interface Publication extends Registration {
  readonly kind: 'publisher';
  readonly text: string;
}

/** One pushed segment of a datum: the Java client keeps a version per segment and lists the union of all. */
interface Segment {
  generation: number;
  /** Exact: versions past 2^53 that differ by one are two versions, which as numbers they would not be. */
  version: bigint | null;
  zones: Map<string, string[]>;
}

interface Subscription extends Registration {
  readonly kind: 'subscriber';
  readonly segments: Map<string, Segment>;
  /** The list last handed to ProviderLists; undefined before the first push. */
  lastList: string[] | undefined;
  /** After a reconnect: the list held through the outage, kept in every push until the grace ends. */
  grace: { before: string[]; timer: NodeJS.Timeout } | undefined;
  firstPush: Promise<void>;
  resolveFirstPush: () => void;
  /** The service its dataId names, written into every URL handed on; undefined when the dataId names none. */
  readonly identity: ServiceIdentity | undefined;
  /** Data of the current pushes already warned about, so a bad datum is logged once while it stays, not per push. */
  warned: Set<string>;
}

/**
 * A RegistryAdapter over one Bolt connection at a time to a SOFA Registry session server. Every provider is a
 * PublisherRegister (one DataBox: the URL text) and every watched service a SubscriberRegister; the server pushes
 * ReceivedData, answered with a Result. The server forgets a connection's registers when it closes, so after every
 * reconnect all of them are sent again. Through an outage lists are kept; after it, see `resyncGraceMs`.
 */
export class SofaRegistryClient implements RegistryAdapter {
  private readonly servers: ServerAddress[];
  private readonly discovery: { host: string; port: number } | undefined;
  private readonly dataCenter: string;
  private readonly zone: string;
  private readonly appName: string | null;
  private readonly instanceId: string;
  private readonly group: string;
  private readonly scope: SofaScope;
  private readonly retryStrategy: (attempt: number) => number | null;
  private readonly logger: RegistryLogger;
  private readonly requestTimeoutMs: number;
  private readonly connectTimeoutMs: number;
  private readonly firstConnectionWaitMs: number;
  private readonly firstPushTimeoutMs: number;
  private readonly resyncGraceMs: number;
  private readonly heartbeatIntervalMs: number;
  private readonly heartbeatTimeoutMs: number;
  private readonly maxMissedHeartbeats: number;

  private readonly connection = new ConnectionStateCell('disconnected');
  /** When the last connection was made (ms since the epoch); 0 before. */
  private connectedAt = 0;
  private closed = false;
  private conn: Connection | undefined;
  private generation = 0;
  private requestIds = 0;
  private reconnectAttempt = 0;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly aborts = new Set<AbortController>();
  /** Discovery's last good answer, used while it cannot be reached. */
  private discovered: ServerAddress[] = [];
  private readonly lists: ProviderLists;
  /** Publications by `service \n url text`. */
  private readonly publications = new Map<string, Publication>();
  private readonly subscriptions = new Map<string, Subscription>();
  private readonly byRegistId = new Map<string, Publication | Subscription>();
  private readonly firstConnection: Promise<void>;
  private resolveFirstConnection!: () => void;

  constructor(options: SofaRegistryClientOptions) {
    const d = SOFA_REGISTRY_CLIENT_DEFAULTS;
    this.servers = parseServerList(options.servers, /[,;\s]+/);
    this.discovery = options.discovery ? parseEndpoint(options.discovery, d.discoveryPort) : undefined;
    this.dataCenter = options.dataCenter ?? d.dataCenter;
    this.zone = options.zone ?? d.zone;
    this.appName = options.appName ?? null;
    this.instanceId = options.instanceId ?? d.instanceId;
    this.group = options.group ?? d.group;
    this.scope = options.scope ?? d.scope;
    this.retryStrategy = options.retryStrategy ?? defaultRetryStrategy;
    this.logger = options.logger ?? { warn: () => {} };
    this.requestTimeoutMs = options.requestTimeoutMs ?? d.requestTimeoutMs;
    this.connectTimeoutMs = options.connectTimeoutMs ?? d.connectTimeoutMs;
    this.firstConnectionWaitMs = options.firstConnectionWaitMs ?? d.firstConnectionWaitMs;
    this.firstPushTimeoutMs = options.firstPushTimeoutMs ?? d.firstPushTimeoutMs;
    this.resyncGraceMs = options.resyncGraceMs ?? d.resyncGraceMs;
    this.heartbeatIntervalMs = options.heartbeatIntervalMs ?? d.heartbeatIntervalMs;
    this.heartbeatTimeoutMs = options.heartbeatTimeoutMs ?? d.heartbeatTimeoutMs;
    this.maxMissedHeartbeats = options.maxMissedHeartbeats ?? d.maxMissedHeartbeats;
    this.lists = new ProviderLists((error, service) => this.logger.warn({ error: loggable(error), service }, 'a providers listener threw'));
    this.firstConnection = new Promise((resolve) => (this.resolveFirstConnection = resolve));
    if (this.servers.length === 0 && !this.discovery) {
      this.logger.warn({ servers: options.servers }, 'no SOFA Registry session server is configured; staying disconnected');
    }
    this.dial();
  }

  get state(): ConnectionState {
    return this.connection.value;
  }

  get lastError(): ConnectionError | undefined {
    return this.connection.lastError;
  }

  /** The session server of the current connection, for diagnostics. */
  get server(): { host: string; port: number } | undefined {
    return this.conn?.connected ? { host: this.conn.server.host, port: this.conn.server.port } : undefined;
  }

  /** The dataId `service` is registered under: SOFA RPC's `interface:version[:uniqueId]@DEFAULT`. */
  dataIdOf(service: string): string {
    return service + SOFA_REGISTRY_CLIENT_DEFAULTS.dataIdSuffix;
  }

  async publish(service: string, url: ProviderUrl | string): Promise<void> {
    this.assertOpen();
    const text = providerUrlText(url);
    const key = `${service}\n${text}`;
    let pub = this.publications.get(key);
    if (!pub) {
      const dataId = this.dataIdOf(service);
      pub = {
        kind: 'publisher',
        registId: stableRegistId(this.instanceId, this.group, dataId, text),
        service,
        dataId,
        text,
        version: 1,
        timestamp: Date.now(),
        enabled: true,
        sync: undefined,
      };
      this.publications.set(key, pub);
      this.byRegistId.set(pub.registId, pub);
    } else if (!pub.enabled) {
      // Unpublished and published again before the server acknowledged the UNREGISTER: a newer REGISTER wins.
      pub.enabled = true;
      pub.version++;
      pub.timestamp = Date.now();
    }
    await this.awaitFirstConnection();
    await this.sync(pub);
  }

  async unpublish(service: string, url: ProviderUrl | string): Promise<void> {
    this.assertOpen();
    const key = `${service}\n${providerUrlText(url)}`;
    const pub = this.publications.get(key);
    if (!pub?.enabled) return;
    pub.enabled = false;
    pub.version++;
    pub.timestamp = Date.now();
    // Not connected: the server dropped it with our last connection, and no reconnect will send it again.
    if (!this.conn?.connected) {
      this.forget(pub);
      return;
    }
    await this.sync(pub);
  }

  async subscribe(service: string, onChange: ProvidersListener): Promise<Unsubscribe> {
    this.assertOpen();
    const { remove, push } = this.lists.add(service, onChange);
    let sub = this.subscriptions.get(service);
    if (!sub) {
      let resolveFirstPush!: () => void;
      const firstPush = new Promise<void>((resolve) => (resolveFirstPush = resolve));
      const dataId = this.dataIdOf(service);
      const identity = identityOfDataId(dataId);
      if (!identity || sofaServiceKey(identity.interface, identity.version, identity.uniqueId) !== service) {
        // The URLs handed on will name the service as SOFA spells it, which is not how this subscriber asked for it.
        this.logger.warn(
          { service, dataId, servedAs: identity && sofaServiceKey(identity.interface, identity.version, identity.uniqueId) },
          'a SOFA Registry subscription for a service key that is not interface:version[:uniqueId]',
        );
      }
      sub = {
        kind: 'subscriber',
        // Random, as the Java client's: two sidecars watching one service are two subscribers.
        registId: randomUUID(),
        service,
        dataId,
        version: 1,
        timestamp: Date.now(),
        enabled: true,
        sync: undefined,
        segments: new Map(),
        lastList: undefined,
        grace: undefined,
        firstPush,
        resolveFirstPush,
        identity,
        warned: new Set(),
      };
      this.subscriptions.set(service, sub);
      this.byRegistId.set(sub.registId, sub);
      void this.sync(sub);
    }
    const current = sub;
    await this.awaitFirstConnection();
    if (current.lastList === undefined && this.conn?.connected) {
      await this.sync(current);
      await waitAtMost(current.firstPush, this.firstPushTimeoutMs);
    }
    // A later subscriber of a service already pushed gets the list too; ProviderLists pushes only what it has not seen.
    if (current.lastList !== undefined) push(current.lastList);
    let removed = false;
    return () => {
      if (removed) return;
      removed = true;
      remove();
      if (this.lists.has(service) || this.subscriptions.get(service) !== current) return;
      this.subscriptions.delete(service);
      clearGrace(current);
      current.enabled = false;
      current.version++;
      if (this.conn?.connected && !this.closed) void this.sync(current);
      else this.forget(current);
    };
  }

  onStateChange(listener: (state: ConnectionState) => void): Unsubscribe {
    return this.connection.onChange(listener);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.reconnectTimer);
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
    for (const abort of this.aborts) abort.abort();
    for (const sub of this.subscriptions.values()) clearGrace(sub);
    this.subscriptions.clear();
    this.publications.clear();
    this.byRegistId.clear();
    this.lists.clear();
    this.connection.clear();
    this.resolveFirstConnection();
    const conn = this.conn;
    this.conn = undefined;
    if (conn) {
      this.dropConnection(conn, new Error('SOFA Registry client closed'));
      if (!conn.socket.closed) await new Promise<void>((resolve) => conn.socket.once('close', () => resolve()));
    }
  }

  // -------------------------------------------------------------------------------------------------------------
  // Connections.

  private dial(): void {
    this.reconnectTimer = undefined;
    if (this.closed) return;
    void this.serverList().then((servers) => {
      if (this.closed) return;
      const server = chooseServer(servers);
      if (!server) {
        this.scheduleReconnect(new Error('no session server to connect to'));
        return;
      }
      this.open(server);
    });
  }

  private open(server: ServerAddress): void {
    const socket = net.connect({ host: server.host, port: server.port });
    socket.setNoDelay(true);
    const conn: Connection = {
      socket,
      generation: ++this.generation,
      server,
      pending: new Map(),
      connected: false,
      lastActivity: Date.now(),
      heartbeatTimer: undefined,
      heartbeat: undefined,
      missedHeartbeats: 0,
    };
    this.conn = conn;
    const connectTimer = setTimeout(() => socket.destroy(new Error(`connect timed out after ${this.connectTimeoutMs} ms`)), this.connectTimeoutMs);
    const splitter = new FrameSplitter((frame) => this.onFrame(conn, frame));
    socket.on('connect', () => {
      clearTimeout(connectTimer);
      this.onConnected(conn);
    });
    socket.on('data', (chunk: Buffer) => {
      conn.lastActivity = Date.now();
      try {
        splitter.write(chunk);
      } catch (error) {
        // The stream has lost its framing: nothing later on it can be trusted. A new connection starts clean.
        this.logger.warn({ error: loggable(error), server: endpointText(server) }, 'SOFA Registry sent bytes that are not Bolt; reconnecting');
        socket.destroy();
      }
    });
    socket.on('error', (error) => {
      if (this.closed) return;
      const before = this.connection.lastError;
      this.connection.fail(error);
      // Retried every few seconds while down: the same error again before a connection is counted, not logged again
      // (the sidecar warns about a registry that stays down at its own bounded pace).
      if (before && !conn.connected && before.at >= this.connectedAt && before.message === this.connection.lastError!.message) return;
      this.logger.warn({ error: loggable(error), server: endpointText(server) }, 'SOFA Registry connection error');
    });
    socket.on('close', () => {
      clearTimeout(connectTimer);
      this.onClosed(conn);
    });
  }

  private onConnected(conn: Connection): void {
    if (this.closed || conn !== this.conn) {
      conn.socket.destroy();
      return;
    }
    conn.connected = true;
    this.connectedAt = Date.now();
    this.reconnectAttempt = 0;
    conn.lastActivity = Date.now();
    conn.heartbeatTimer = setInterval(() => this.heartbeatTick(conn), Math.max(50, Math.floor(this.heartbeatIntervalMs / 3)));
    for (const sub of this.subscriptions.values()) this.beginGrace(sub);
    this.connection.set('connected');
    this.resolveFirstConnection();
    // The server forgot every register with the last connection (or never had them): send them all, as the Java
    // client's resetRegister does. An unpublish that never reached the server needs nothing: it is gone with them.
    for (const reg of [...this.byRegistId.values()]) {
      if (reg.enabled) {
        reg.timestamp = Date.now();
        void this.sync(reg);
      } else {
        this.forget(reg);
      }
    }
  }

  private onClosed(conn: Connection): void {
    this.dropConnection(conn, new Error('SOFA Registry connection closed'));
    if (conn !== this.conn) return;
    this.conn = undefined;
    if (this.closed) return;
    // Lists stay as they are: an outage is not a removal.
    this.connection.set('disconnected');
    this.scheduleReconnect(undefined);
  }

  private dropConnection(conn: Connection, reason: Error): void {
    clearInterval(conn.heartbeatTimer);
    if (conn.heartbeat) clearTimeout(conn.heartbeat.timer);
    conn.heartbeat = undefined;
    for (const pending of conn.pending.values()) {
      clearTimeout(pending.timer);
      pending.reject(reason);
    }
    conn.pending.clear();
    conn.connected = false;
    conn.socket.destroy();
  }

  private scheduleReconnect(error: unknown): void {
    if (this.closed || this.reconnectTimer) return;
    const attempt = ++this.reconnectAttempt;
    const delay = this.retryStrategy(attempt);
    if (delay === null) {
      this.logger.warn({ error: loggable(error), attempt }, 'giving up reconnecting to SOFA Registry');
      return;
    }
    this.reconnectTimer = setTimeout(() => this.dial(), delay);
  }

  private async awaitFirstConnection(): Promise<void> {
    await waitAtMost(this.firstConnection, this.firstConnectionWaitMs);
    this.assertOpen();
  }


  // -------------------------------------------------------------------------------------------------------------
  // Discovery.

  /** Discovery's list when it answers (remembered for when it does not), else the configured servers. */
  private async serverList(): Promise<ServerAddress[]> {
    if (!this.discovery) return this.servers;
    for (const path of ['/api/servers/queryWithWeight', '/api/servers/query']) {
      try {
        const text = await this.httpGet(path);
        const found = parseServerList(text, /;/);
        if (found.length > 0) {
          this.discovered = found;
          return found;
        }
      } catch (error) {
        // A registry without queryWithWeight answers 404 there: the Java client then asks /query.
        if (!this.closed) this.logger.warn({ error: loggable(error), discovery: endpointText(this.discovery), path }, 'session discovery failed');
      }
    }
    return this.discovered.length > 0 ? this.discovered : this.servers;
  }

  private httpGet(path: string): Promise<string> {
    const discovery = this.discovery!;
    const query = new URLSearchParams();
    for (const [k, v] of Object.entries({
      zone: this.zone,
      dataCenter: this.dataCenter,
      appName: this.appName,
      instanceId: this.instanceId,
    })) {
      if (v !== null) query.set(k, v);
    }
    const abort = new AbortController();
    this.aborts.add(abort);
    return new Promise<string>((resolve, reject) => {
      const req = http.get(
        { host: discovery.host, port: discovery.port, path: `${path}?${query}`, signal: abort.signal, timeout: this.connectTimeoutMs },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            if (res.statusCode !== 200) reject(new Error(`HTTP ${res.statusCode}`));
            else resolve(Buffer.concat(chunks).toString('utf8').trim());
          });
          res.on('error', reject);
        },
      );
      req.on('timeout', () => req.destroy(new Error('discovery timed out')));
      req.on('error', reject);
    }).finally(() => this.aborts.delete(abort));
  }

  // -------------------------------------------------------------------------------------------------------------
  // Frames.

  private onFrame(conn: Connection, frame: Buffer): void {
    if (conn !== this.conn || this.closed) return;
    let header: FrameHeader;
    try {
      header = decodeFrame(frame);
    } catch (error) {
      // Framed, so the stream is still in step; only this frame is bad.
      this.logger.warn({ error: loggable(error) }, 'ignoring a Bolt frame that does not decode');
      return;
    }
    if (header.protocol !== 'bolt') return;
    const identity = peekFrameIdentity(frame);
    const answerOptions: BoltFrameOptions = {
      protocolVersion: header.protocolVersion,
      ver1: identity?.ver1 === 2 ? 2 : 1,
      switchFlags: identity?.switchFlags ?? 0,
      codec: header.codec,
    };
    switch (header.kind) {
      case 'heartbeat':
        this.write(conn, encodeBoltHeartbeatAck(header.requestId, answerOptions));
        return;
      case 'heartbeat-ack':
        if (conn.heartbeat?.id === header.requestId) {
          clearTimeout(conn.heartbeat.timer);
          conn.heartbeat = undefined;
          conn.missedHeartbeats = 0;
        }
        return;
      case 'response': {
        const pending = conn.pending.get(header.requestId);
        if (!pending) return;
        conn.pending.delete(header.requestId);
        clearTimeout(pending.timer);
        const body = frame.subarray(header.bodyOffset, header.bodyOffset + header.bodyLength);
        if (header.status !== BoltStatus.SUCCESS) {
          // The status goes along as a field, for the log line of whatever waited for the answer.
          pending.reject(Object.assign(new Error(`Bolt response status 0x${header.status!.toString(16)}`), { boltStatus: header.status }));
        } else {
          pending.resolve({ className: header.className, body });
        }
        return;
      }
      case 'request':
      case 'oneway': {
        const body = frame.subarray(header.bodyOffset, header.bodyOffset + header.bodyLength);
        const answer = this.onServerRequest(conn, header.className, header.codec, body);
        if (header.kind === 'request') {
          this.write(conn, encodeBoltResponse({ ...answerOptions, requestId: header.requestId, ...answer }));
        }
        return;
      }
    }
  }

  /** Handles a request of the server; returns the answer, as Bolt's Java side would make it. */
  private onServerRequest(
    conn: Connection,
    className: string,
    codec: number,
    body: Buffer,
  ): { className: string; content: Buffer; status?: number } {
    if (className !== SOFA_REGISTRY_CLASSES.receivedData) {
      // What Bolt answers a class no user processor is registered for.
      this.logger.warn({ className }, 'ignoring a SOFA Registry request of an unknown class');
      return { className: '', content: Buffer.alloc(0), status: BoltStatus.NO_PROCESSOR };
    }
    let data: ReceivedData;
    try {
      if (codec !== 1) throw new Error(`codec ${codec} is not hessian2`);
      data = decodeReceivedData(body);
    } catch (error) {
      this.logger.warn({ error: loggable(error) }, 'a ReceivedData push does not decode; answering with a deserialization error');
      return { className: '', content: Buffer.alloc(0), status: BoltStatus.SERVER_DESERIAL_EXCEPTION };
    }
    let result = { success: true, message: null as string | null };
    try {
      this.onPush(conn, data);
    } catch (error) {
      // As the Java ReceivedDataProcessor: a failure to take the push in is reported, not thrown.
      this.logger.warn({ error: loggable(error), dataId: data.dataId, version: loggable(data.version) }, 'could not take a ReceivedData push in');
      result = { success: false, message: String(error) };
    }
    return { className: SOFA_REGISTRY_CLASSES.result, content: encodeResult(result) };
  }

  private write(conn: Connection, frame: Buffer): void {
    if (conn.socket.destroyed || !conn.connected) return;
    conn.lastActivity = Date.now();
    conn.socket.write(frame);
  }

  private invoke(conn: Connection, className: string, content: Buffer): Promise<{ className: string; body: Buffer }> {
    return new Promise((resolve, reject) => {
      if (!conn.connected || conn.socket.destroyed) {
        reject(new Error('not connected'));
        return;
      }
      const requestId = this.nextRequestId();
      const timer = setTimeout(() => {
        conn.pending.delete(requestId);
        reject(new Error(`no answer within ${this.requestTimeoutMs} ms`));
      }, this.requestTimeoutMs);
      conn.pending.set(requestId, { resolve, reject, timer });
      this.write(conn, encodeBoltRequest({ requestId, className, content, timeoutMs: this.requestTimeoutMs }));
    });
  }

  private nextRequestId(): number {
    this.requestIds = (this.requestIds + 1) & 0x7fffffff;
    return this.requestIds;
  }

  /** Bolt's client heartbeat: only on an idle connection; enough unanswered ones in a row drop it. */
  private heartbeatTick(conn: Connection): void {
    if (conn !== this.conn || !conn.connected || conn.heartbeat) return;
    if (Date.now() - conn.lastActivity < this.heartbeatIntervalMs) return;
    const id = this.nextRequestId();
    const timer = setTimeout(() => {
      conn.heartbeat = undefined;
      conn.missedHeartbeats++;
      if (conn.missedHeartbeats >= this.maxMissedHeartbeats) {
        this.logger.warn({ server: endpointText(conn.server), missed: conn.missedHeartbeats }, 'SOFA Registry stopped answering heartbeats; reconnecting');
        conn.socket.destroy();
      }
    }, this.heartbeatTimeoutMs);
    conn.heartbeat = { id, timer };
    this.write(conn, encodeBoltHeartbeat(id, { timeoutMs: this.heartbeatTimeoutMs }));
  }

  // -------------------------------------------------------------------------------------------------------------
  // Registers.

  /**
   * Makes the server hold `reg` as it stands, once per connection and version. Never rejects: a failure is retried
   * while the connection lasts, and a new connection sends everything anyway.
   */
  private sync(reg: Publication | Subscription): Promise<void> {
    const conn = this.conn;
    if (!conn?.connected || this.closed) return Promise.resolve();
    const s = reg.sync;
    if (s && s.generation === conn.generation && s.version === reg.version) return s.done;
    const done = this.send(conn, reg, 1);
    reg.sync = { generation: conn.generation, version: reg.version, done };
    return done;
  }

  private async send(conn: Connection, reg: Publication | Subscription, attempt: number): Promise<void> {
    const version = reg.version;
    const base = {
      instanceId: this.instanceId,
      zone: this.zone,
      appName: this.appName,
      dataId: reg.dataId,
      group: this.group,
      registId: reg.registId,
      ip: conn.socket.localAddress ?? null,
      eventType: reg.enabled ? ('REGISTER' as const) : ('UNREGISTER' as const),
      version,
      timestamp: reg.timestamp,
    };
    const [className, body]: [string, Buffer] =
      reg.kind === 'publisher'
        ? [SOFA_REGISTRY_CLASSES.publisherRegister, encodePublisherRegister({ ...base, dataList: reg.enabled ? [reg.text] : null })]
        : [SOFA_REGISTRY_CLASSES.subscriberRegister, encodeSubscriberRegister({ ...base, scope: this.scope })];
    // Why it failed, as fields an operator can read in the log line (an Error itself serializes as `{}`).
    let failure: Record<string, unknown>;
    try {
      const answer = await this.invoke(conn, className, body);
      const response = decodeRegisterResponse(answer.body);
      if (response.success) {
        if (response.refused) {
          // As the Java client: a refused register is not sent again; the server's configuration forbids it.
          this.logger.warn({ dataId: reg.dataId, registId: reg.registId, message: response.message }, 'SOFA Registry refused a register');
        }
        if (!reg.enabled && reg.version === version) this.forget(reg);
        return;
      }
      failure = {
        response: { success: false, refused: response.refused, message: response.message, registId: response.registId, version: response.version.toString() },
      };
    } catch (error) {
      failure = { error: loggable(error) };
    }
    if (this.closed || conn !== this.conn || !conn.connected) return; // the reconnect sends it again
    if (reg.sync?.generation === conn.generation && reg.sync.version === version) reg.sync = undefined;
    const delay = this.retryStrategy(attempt);
    this.logger.warn(
      {
        ...failure,
        kind: reg.kind,
        eventType: base.eventType,
        dataId: reg.dataId,
        registId: reg.registId,
        server: endpointText(conn.server),
        attempt,
        retryInMs: delay,
      },
      delay === null ? 'giving up a register' : 'a register failed; retrying',
    );
    if (delay === null) return;
    // In the background: the caller of publish() has waited for one answer, which is all the contract asks.
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      if (this.closed || conn !== this.conn || this.byRegistId.get(reg.registId) !== reg) return;
      if (reg.sync && reg.sync.generation === conn.generation && reg.sync.version === reg.version) return;
      const done = this.send(conn, reg, attempt + 1);
      reg.sync = { generation: conn.generation, version: reg.version, done };
    }, delay);
    this.timers.add(timer);
  }

  private forget(reg: Publication | Subscription): void {
    if (this.byRegistId.get(reg.registId) === reg) this.byRegistId.delete(reg.registId);
    if (reg.kind === 'publisher') {
      const key = `${reg.service}\n${reg.text}`;
      if (this.publications.get(key) === reg) this.publications.delete(key);
    }
  }

  // -------------------------------------------------------------------------------------------------------------
  // Pushes.

  private onPush(conn: Connection, data: ReceivedData): void {
    const targets = new Set<Subscription>();
    for (const id of data.subscriberRegistIds) {
      const reg = this.byRegistId.get(id);
      if (reg?.kind === 'subscriber' && reg.enabled) targets.add(reg);
    }
    if (data.data === null) return; // what the Java client does too: no data is no news
    for (const sub of targets) {
      if (data.dataId !== null && data.dataId !== sub.dataId) {
        this.logger.warn({ dataId: data.dataId, expected: sub.dataId }, 'a push names a subscriber of another dataId; ignored');
        continue;
      }
      const key = data.segment ?? '';
      const known = sub.segments.get(key);
      // Versions are compared within one connection only: a registry restarted from nothing may count again from
      // low, and a version-keeper that never forgets would then ignore it for good.
      if (known && known.generation === conn.generation && known.version !== null && data.version !== null && data.version <= known.version) {
        continue;
      }
      // The first push of a new connection replaces what older connections left, segment for segment.
      for (const [k, seg] of sub.segments) if (seg.generation !== conn.generation) sub.segments.delete(k);
      sub.segments.set(key, { generation: conn.generation, version: data.version, zones: data.data });
      this.applyList(sub);
      sub.resolveFirstPush();
    }
  }

  /**
   * The union over segments and zones, as sofa-rpc's SofaRegistrySubscribeCallback flattens UserData: which zones
   * the server includes is the subscriber's `scope`, so every zone it sends is wanted. `localZone` is not used.
   * Every URL leaves naming the service of its dataId (see withIdentity).
   */
  private applyList(sub: Subscription): void {
    const texts = new Set<string>();
    const warned = new Set<string>();
    for (const seg of sub.segments.values()) {
      for (const [zone, list] of seg.zones) {
        for (const data of list) {
          const text = this.providerText(sub, zone, data, warned);
          if (text !== undefined) texts.add(text);
        }
      }
    }
    // Only data still pushed stays remembered: one that goes and comes back is news, and the set cannot grow forever.
    sub.warned = warned;
    if (sub.grace) for (const text of sub.grace.before) texts.add(text);
    const list = [...texts].sort();
    sub.lastList = list;
    this.lists.push(sub.service, list);
  }

  /** One pushed datum as the URL text to hand on, or undefined (and logged, once while it stays) to skip it. */
  private providerText(sub: Subscription, zone: string, data: string, warned: Set<string>): string | undefined {
    let url: ProviderUrl;
    try {
      url = parseProviderUrl(data);
    } catch (error) {
      if (!sub.warned.has(data)) {
        this.logger.warn({ dataId: sub.dataId, zone, data, error: loggable(error) }, 'skipping a pushed datum that is not a provider URL');
      }
      warned.add(data);
      return undefined;
    }
    if (!sub.identity) return providerUrlText(url);
    const explicit = withIdentity(url, sub.identity);
    if (explicit.disagreements.length > 0) {
      if (!sub.warned.has(data)) {
        this.logger.warn(
          { dataId: sub.dataId, zone, data, disagreements: explicit.disagreements },
          'a pushed provider URL names another service than its dataId; listing it under the dataId',
        );
      }
      warned.add(data);
    }
    return providerUrlText(explicit.url);
  }

  /** On a reconnect: until the grace ends, pushes only add to the list held through the outage. */
  private beginGrace(sub: Subscription): void {
    const before = sub.lastList;
    clearGrace(sub);
    if (!before || before.length === 0 || this.resyncGraceMs <= 0) return;
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      if (sub.grace?.timer !== timer) return;
      sub.grace = undefined;
      // The server's latest word on this connection now stands alone; without one, the held list stays.
      if (!this.closed && this.conn && [...sub.segments.values()].some((s) => s.generation === this.conn!.generation)) {
        this.applyList(sub);
      }
    }, this.resyncGraceMs);
    this.timers.add(timer);
    sub.grace = { before, timer };
  }

  private assertOpen(): void {
    if (this.closed) throw new RegistryError('MESHPORT_REGISTRY_CLOSED', 'SOFA Registry client is closed');
  }
}

function clearGrace(sub: Subscription): void {
  if (sub.grace) clearTimeout(sub.grace.timer);
  sub.grace = undefined;
}

/**
 * A registId that is the same for the same provider every time (a UUID-shaped SHA-1 of what identifies it), so a
 * sidecar that restarts replaces its old publisher on the server instead of adding a twin beside it.
 */
function stableRegistId(instanceId: string, group: string, dataId: string, text: string): string {
  const h = createHash('sha1').update([instanceId, group, dataId, text].join('\0')).digest();
  h[6] = (h[6] & 0x0f) | 0x50; // version 5: name-based, SHA-1
  h[8] = (h[8] & 0x3f) | 0x80;
  const hex = h.subarray(0, 16).toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** `ip:port[?weight=n&...]` entries; entries that do not parse are skipped, as the Java ServerNodeParser's callers do. */
function parseServerList(text: string, separator: RegExp): ServerAddress[] {
  const out: ServerAddress[] = [];
  for (const entry of text.split(separator)) {
    const trimmed = entry.trim();
    if (!trimmed) continue;
    const [address, query] = trimmed.split('?', 2);
    const endpoint = parseEndpoint(address, undefined);
    if (!endpoint) continue;
    const weight = Number(new URLSearchParams(query ?? '').get('weight') ?? 0);
    out.push({ ...endpoint, weight: Number.isFinite(weight) ? weight : 0 });
  }
  return out;
}

function parseEndpoint(text: string, defaultPort: number): { host: string; port: number };
function parseEndpoint(text: string, defaultPort: undefined): { host: string; port: number } | undefined;
function parseEndpoint(text: string, defaultPort: number | undefined): { host: string; port: number } | undefined {
  const m = /^\s*(?:\[([^\]]+)\]|([^:\s]+))(?::(\d{1,5}))?\s*$/.exec(text);
  const port = m?.[3] !== undefined ? Number(m[3]) : defaultPort;
  if (!m || port === undefined || port > 65535) {
    if (defaultPort === undefined) return undefined;
    return { host: text.trim(), port: defaultPort };
  }
  return { host: m[1] ?? m[2], port };
}

/** Two random servers, the lighter one wins: the Java ClientConnection's power of two choices. */
function chooseServer(servers: ServerAddress[]): ServerAddress | undefined {
  if (servers.length <= 1) return servers[0];
  const i = Math.floor(Math.random() * servers.length);
  const j = (i + 1 + Math.floor(Math.random() * (servers.length - 1))) % servers.length;
  return servers[j].weight < servers[i].weight ? servers[j] : servers[i];
}

function endpointText(server: { host: string; port: number }): string {
  return server.host.includes(':') ? `[${server.host}]:${server.port}` : `${server.host}:${server.port}`;
}
