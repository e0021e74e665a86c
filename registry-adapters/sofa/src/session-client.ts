// The upstream SOFA Registry adapter: a session-server client speaking Bolt + Hessian 2.0, as sofa-registry's Java
// client does, kept safe through disconnects and a session server that comes back empty. This file is the adapter
// and its reconnect loop; finding a server (session-discovery), one connection (session-connection) and what the
// server must hold and pushes back (session-registrations) each have their own module.

import { BoltStatus } from '@meshport/protocol';
import {
  ConnectionStateCell,
  RegistryError,
  providerUrlText,
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
import { SessionConnection, type BoltAnswer, type SessionConnectionOptions } from './session-connection';
import { SessionDiscovery, chooseServer, endpointText, type ServerAddress } from './session-discovery';
import {
  SOFA_REGISTRY_CLASSES,
  decodeReceivedData,
  encodeResult,
  type ReceivedData,
  type SofaScope,
} from './session-model';
import { SOFA_DATA_ID_SUFFIX, SessionRegistrations, dataIdOf } from './session-registrations';

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
  dataIdSuffix: SOFA_DATA_ID_SUFFIX,
} as const;

/** Capped exponential backoff with jitter, so sidecars dropped together do not all come back in the same instant. */
const defaultRetryStrategy = (attempt: number): number | null =>
  Math.min(100 * 2 ** Math.min(attempt, 16), 5_000) * (0.5 + Math.random() / 2);

/**
 * A RegistryAdapter over one Bolt connection at a time to a SOFA Registry session server. Every provider is a
 * PublisherRegister (one DataBox: the URL text) and every watched service a SubscriberRegister; the server pushes
 * ReceivedData, answered with a Result. The server forgets a connection's registers when it closes, so after every
 * reconnect all of them are sent again. Through an outage lists are kept; after it, see `resyncGraceMs`.
 */
export class SofaRegistryClient implements RegistryAdapter {
  private readonly discovery: SessionDiscovery;
  private readonly registrations: SessionRegistrations;
  private readonly retryStrategy: (attempt: number) => number | null;
  private readonly logger: RegistryLogger;
  private readonly firstConnectionWaitMs: number;
  private readonly firstPushTimeoutMs: number;
  private readonly connectionOptions: SessionConnectionOptions;

  private readonly connection = new ConnectionStateCell('disconnected');
  /** When the last connection was made (ms since the epoch); 0 before. */
  private connectedAt = 0;
  private closed = false;
  private conn: SessionConnection | undefined;
  private generation = 0;
  private reconnectAttempt = 0;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private readonly firstConnection: Promise<void>;
  private resolveFirstConnection!: () => void;

  constructor(options: SofaRegistryClientOptions) {
    const d = SOFA_REGISTRY_CLIENT_DEFAULTS;
    const zone = options.zone ?? d.zone;
    const appName = options.appName ?? null;
    const instanceId = options.instanceId ?? d.instanceId;
    const connectTimeoutMs = options.connectTimeoutMs ?? d.connectTimeoutMs;
    this.retryStrategy = options.retryStrategy ?? defaultRetryStrategy;
    this.logger = options.logger ?? { warn: () => {} };
    this.firstConnectionWaitMs = options.firstConnectionWaitMs ?? d.firstConnectionWaitMs;
    this.firstPushTimeoutMs = options.firstPushTimeoutMs ?? d.firstPushTimeoutMs;
    this.connectionOptions = {
      requestTimeoutMs: options.requestTimeoutMs ?? d.requestTimeoutMs,
      connectTimeoutMs,
      heartbeatIntervalMs: options.heartbeatIntervalMs ?? d.heartbeatIntervalMs,
      heartbeatTimeoutMs: options.heartbeatTimeoutMs ?? d.heartbeatTimeoutMs,
      maxMissedHeartbeats: options.maxMissedHeartbeats ?? d.maxMissedHeartbeats,
      logger: this.logger,
    };
    this.discovery = new SessionDiscovery({
      servers: options.servers,
      discovery: options.discovery,
      defaultPort: d.discoveryPort,
      query: { zone, dataCenter: options.dataCenter ?? d.dataCenter, appName, instanceId },
      timeoutMs: connectTimeoutMs,
      logger: this.logger,
    });
    this.registrations = new SessionRegistrations({
      instanceId,
      zone,
      appName,
      group: options.group ?? d.group,
      scope: options.scope ?? d.scope,
      resyncGraceMs: options.resyncGraceMs ?? d.resyncGraceMs,
      retryStrategy: this.retryStrategy,
      logger: this.logger,
    });
    this.firstConnection = new Promise((resolve) => (this.resolveFirstConnection = resolve));
    if (!this.discovery.configured) {
      this.logger.warn(
        { servers: options.servers },
        'no SOFA Registry session server is configured; staying disconnected',
      );
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
    return dataIdOf(service);
  }

  async publish(service: string, url: ProviderUrl | string): Promise<void> {
    this.assertOpen();
    const pub = this.registrations.publication(service, providerUrlText(url));
    await this.awaitFirstConnection();
    await this.registrations.sync(pub);
  }

  async unpublish(service: string, url: ProviderUrl | string): Promise<void> {
    this.assertOpen();
    await this.registrations.unpublish(service, providerUrlText(url));
  }

  async subscribe(service: string, onChange: ProvidersListener): Promise<Unsubscribe> {
    this.assertOpen();
    const { remove, push } = this.registrations.listen(service, onChange);
    const sub = this.registrations.subscription(service);
    await this.awaitFirstConnection();
    if (sub.lastList === undefined && this.registrations.online) {
      await this.registrations.sync(sub);
      await waitAtMost(sub.firstPush, this.firstPushTimeoutMs);
    }
    // A later subscriber of a service already pushed gets the list too; ProviderLists pushes only what it has not seen.
    if (sub.lastList !== undefined) push(sub.lastList);
    let removed = false;
    return () => {
      if (removed) return;
      removed = true;
      remove();
      this.registrations.unsubscribe(sub);
    };
  }

  onStateChange(listener: (state: ConnectionState) => void): Unsubscribe {
    return this.connection.onChange(listener);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.reconnectTimer);
    this.discovery.close();
    this.registrations.close();
    this.connection.clear();
    this.resolveFirstConnection();
    const conn = this.conn;
    this.conn = undefined;
    if (conn) await conn.close(new RegistryError('MESHPORT_REGISTRY_SOFA_DISCONNECTED', 'SOFA Registry client closed'));
  }

  // -------------------------------------------------------------------------------------------------------------
  // Connections.

  private dial(): void {
    this.reconnectTimer = undefined;
    if (this.closed) return;
    void this.discovery.serverList().then((servers) => {
      if (this.closed) return;
      const server = chooseServer(servers);
      if (!server) {
        const error = new RegistryError('MESHPORT_REGISTRY_SOFA_NO_SERVER', 'no session server to connect to');
        this.connection.fail(error);
        this.scheduleReconnect(error);
        return;
      }
      this.open(server);
    });
  }

  private open(server: ServerAddress): void {
    this.conn = new SessionConnection(server, ++this.generation, this.connectionOptions, {
      connected: (conn) => this.onConnected(conn),
      error: (conn, error) => this.onConnectionError(conn, error),
      closed: (conn) => this.onClosed(conn),
      serverRequest: (conn, className, codec, body) => this.onServerRequest(conn, className, codec, body),
    });
  }

  private onConnected(conn: SessionConnection): void {
    if (this.closed || conn !== this.conn) {
      conn.destroy();
      return;
    }
    this.connectedAt = Date.now();
    this.reconnectAttempt = 0;
    this.registrations.connected(conn);
    this.connection.set('connected');
    this.resolveFirstConnection();
    this.registrations.resendAll();
  }

  private onConnectionError(conn: SessionConnection, error: Error): void {
    if (this.closed) return;
    const before = this.connection.lastError;
    this.connection.fail(error);
    // Retried every few seconds while down: the same error again before a connection is counted, not logged again
    // (the sidecar warns about a registry that stays down at its own bounded pace).
    if (
      before &&
      !conn.connected &&
      before.at >= this.connectedAt &&
      before.message === this.connection.lastError!.message
    )
      return;
    this.logger.warn({ error: loggable(error), server: endpointText(conn.server) }, 'SOFA Registry connection error');
  }

  private onClosed(conn: SessionConnection): void {
    this.registrations.disconnected(conn);
    if (conn !== this.conn) return;
    this.conn = undefined;
    if (this.closed) return;
    // Lists stay as they are: an outage is not a removal.
    this.connection.set('disconnected');
    this.scheduleReconnect(undefined);
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

  /** Handles a request of the server; returns the answer, as Bolt's Java side would make it. */
  private onServerRequest(conn: SessionConnection, className: string, codec: number, body: Buffer): BoltAnswer {
    if (className !== SOFA_REGISTRY_CLASSES.receivedData) {
      // What Bolt answers a class no user processor is registered for.
      this.logger.warn({ className }, 'ignoring a SOFA Registry request of an unknown class');
      return { className: '', content: Buffer.alloc(0), status: BoltStatus.NO_PROCESSOR };
    }
    let data: ReceivedData;
    try {
      if (codec !== 1) throw new RegistryError('MESHPORT_REGISTRY_SOFA_BAD_BODY', `codec ${codec} is not hessian2`);
      data = decodeReceivedData(body);
    } catch (error) {
      this.logger.warn(
        { error: loggable(error) },
        'a ReceivedData push does not decode; answering with a deserialization error',
      );
      return { className: '', content: Buffer.alloc(0), status: BoltStatus.SERVER_DESERIAL_EXCEPTION };
    }
    let result = { success: true, message: null as string | null };
    try {
      this.registrations.onPush(conn, data);
    } catch (error) {
      // As the Java ReceivedDataProcessor: a failure to take the push in is reported, not thrown.
      this.logger.warn(
        { error: loggable(error), dataId: data.dataId, version: loggable(data.version) },
        'could not take a ReceivedData push in',
      );
      result = { success: false, message: String(error) };
    }
    return { className: SOFA_REGISTRY_CLASSES.result, content: encodeResult(result) };
  }

  private assertOpen(): void {
    if (this.closed) throw new RegistryError('MESHPORT_REGISTRY_CLOSED', 'SOFA Registry client is closed');
  }
}
