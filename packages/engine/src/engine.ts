// The native engine as TypeScript sees it: settings in, route snapshots in, counters and rare events out.

import { loadEngineAddon } from './native';
import { EngineError } from './errors';

/** The router's data-path settings (packages/router ROUTER_DEFAULTS and the outlier/limit defaults). */
export interface EngineSettings {
  connectionsPerEndpoint?: number;
  maxFrameSize?: number;
  boltDefaultTimeoutMs?: number;
  dubboTimeoutMs?: number;
  connectRetries?: number;
  connectTimeoutMs?: number;
  heartbeatIntervalMs?: number;
  heartbeatTimeoutMs?: number;
  maxCallerInflight?: number;
  frameTimeoutMs?: number;
  maxPartialFrames?: number;
  maxConnectionsPerSource?: number;
  maxConnections?: number;
  startupHoldMs?: number;
  consecutiveFailures?: number;
  baseEjectionMs?: number;
  maxEjectionPercent?: number;
  maxPendingRequests?: number;
  maxActiveRequests?: number;
  /** Distinct methods and callers each cluster's per-service metrics name; later ones count as `other`. */
  labelCaps?: { methods?: number; callers?: number };
}

export type EngineListener = 'outbound' | 'inbound';

/** One endpoint as the engine takes it: an IP address (names are resolved before). */
export interface EngineEndpoint {
  host: string;
  port: number;
  weight?: number;
  /**
   * The identity the provider's sidecar published: with security set, calls to it go over mutual TLS and its
   * certificate must carry exactly this identity. Absent: plaintext.
   */
  identity?: string;
}

/** One route as the engine takes it: endpoints by IP address (names are resolved before). */
export interface EngineCluster {
  name: string;
  endpoints: EngineEndpoint[];
  policy?: 'round-robin' | 'weighted-random' | 'least-request' | 'consistent-hash';
  hashHeader?: string;
  timeoutMs?: number;
  routers?: {
    methods: { matches: string[]; mismatches: string[] }[];
    allowed: string[];
    force: boolean;
    blacklist: boolean;
  }[];
  /** In an update (updateRoutes): the route is gone. */
  remove?: boolean;
}

/** A whole route table: the engine swaps it in at once. */
export interface EngineRoutes {
  outbound: EngineCluster[];
  inbound: EngineCluster[];
}

/**
 * Mutual TLS and the inbound authorization policy, as RouterSecurity of @meshport/router's security.ts (the same
 * shape, declared here because the router depends on this package, not the other way round).
 */
export interface EngineSecurity {
  mode: 'off' | 'permissive' | 'strict';
  material: { certChain: string; key: string; trustBundle: string; identity: string };
  policy: {
    default: 'allow-trust-domain' | 'allow-all' | 'deny';
    trustDomain: string;
    services: Record<string, { allow: string[]; methods?: Record<string, string[]> }>;
  };
}

/** Why a mutual-TLS handshake failed (HandshakeFailure of @meshport/router's security.ts). */
export type EngineHandshakeFailure =
  | 'no-client-cert'
  | 'untrusted'
  | 'expired'
  | 'wrong-identity'
  | 'no-identity'
  | 'plaintext-refused'
  | 'protocol'
  | 'timeout';

/** Which peers a listener serves, decided at accept: loopback always; `true` any; a list of addresses or CIDRs. */
export type EngineAllow = boolean | readonly string[];

export interface EngineClusterCounters {
  listener: EngineListener;
  cluster: string;
  requestsBolt: number;
  requestsDubbo: number;
  /** Answers by outcome: `ok`, `status-N`, or the failure name. */
  outcomes: Record<string, number>;
  /** Non-cumulative counts per latency bucket (LATENCY_BUCKETS), the last beyond the largest bound. */
  latencyCounts: number[];
  latencyCount: number;
  latencySumSeconds: number;
  /** The per-service metrics: by method (at most labelCaps.methods names, then `other`), in first-seen order. */
  methods: EngineMethodCounters[];
  /** Requests by caller (its mTLS identity, else its IP address; at most labelCaps.callers, then `other`). */
  callers: { caller: string; requests: number }[];
  /** Calls counted under `other` because the method or caller cap was reached. */
  foldedMethods: number;
  foldedCallers: number;
}

/** What the calls of one method of a cluster have seen: as the cluster's own counters. */
export interface EngineMethodCounters {
  method: string;
  requests: number;
  outcomes: Record<string, number>;
  latencyCounts: number[];
  latencyCount: number;
  latencySumSeconds: number;
}

export interface EngineCounters {
  outbound: {
    connectionsActive: number;
    connectionsTotal: number;
    refusedPerSource: number;
    refusedMaxConnections: number;
  };
  inbound: {
    connectionsActive: number;
    connectionsTotal: number;
    refusedPerSource: number;
    refusedMaxConnections: number;
  };
  bytes: Record<'outbound' | 'inbound' | 'upstream', { in: number; out: number }>;
  inflight: number;
  partialFrames: number;
  upstreamConnections: number;
  /** Captured connections relayed unrouted: open now, ever, and bytes carried (both ways). */
  relaysActive: number;
  relaysTotal: number;
  relayBytes: number;
  /** Open upstream connections by endpoint (host:port). */
  upstreamsByEndpoint: Record<string, number>;
  badFrames: { listener: EngineListener; code: string; count: number }[];
  clusters: EngineClusterCounters[];
  /** Mutual TLS: handshakes completed and verified by direction; failures by direction and reason. */
  tls: {
    handshakes: { inbound: number; outbound: number };
    failures: { direction: 'inbound' | 'outbound'; reason: EngineHandshakeFailure; count: number }[];
  };
  /** Inbound calls the authorization policy denied, by service (`none`: a service with no route). */
  denied: { service: string; count: number }[];
}

/** What /routes shows of one cluster. */
export interface EngineClusterState {
  listener: EngineListener;
  name: string;
  policy: string;
  pending: number;
  active: number;
  limits: { maxPendingRequests: number; maxActiveRequests: number };
  timeoutMs?: number;
  endpoints: {
    address: string;
    weight: number;
    active: number;
    healthy: boolean;
    consecutiveFailures: number;
    ejections: number;
    ejectedForMs: number;
    /** The identity the provider published: calls to it go over mutual TLS (with security set). */
    identity?: string;
  }[];
}

/**
 * Which calls get access log lines and spans, as RouterTelemetry of @meshport/router's telemetry.ts (a missing field
 * takes its default there: accessLog everyN 100, errors true, slowMs 1000; tracing everyN 1). Absent parts are off.
 */
export interface EngineTelemetry {
  accessLog?: { everyN?: number; errors?: boolean; slowMs?: number };
  tracing?: { everyN?: number };
}

/**
 * Receives access log lines (`access`) and OTLP/JSON spans (`span`): one or more whole lines, each ending in '\n', at
 * most every 100 ms per kind or when 256 KiB wait, and whatever waits when the engine drains or closes. The bytes are
 * the engine's own (UTF-8, no copy made for JavaScript): the sink may keep the Buffer, and must not change it.
 */
export type EngineTelemetrySink = (kind: 'access' | 'span', lines: Buffer) => void;

/** A log line from the engine thread: level, message and fields, as pino takes them. */
export interface EngineLogEvent {
  level: 'debug' | 'info' | 'warn' | 'error';
  msg: string;
  [field: string]: unknown;
}

interface NativeEngineHandle {
  listen(listener: EngineListener, host: string, port: number, allow: EngineAllow): number;
  adopt(listener: EngineListener, fd: number, head?: Buffer): void;
  relay(fd: number, host: string, port: number, head?: Buffer): void;
  dupFd(fd: number): number;
  setRoutes(routes: EngineRoutes, partial?: boolean): void;
  setSecurity(security: EngineSecurity | undefined): void;
  setTelemetry(telemetry: EngineTelemetry | undefined): void;
  drain(deadlineMs: number, token: number): void;
  describe(token: number): void;
  stats(): EngineCounters;
  ref(): void;
  unref(): void;
  close(): void;
}

type NativeEngineClass = new (
  settings: EngineSettings,
  onEvents: (lines: string[], access: Buffer | undefined, spans: Buffer | undefined) => void,
) => NativeEngineHandle;

/** Why the native engine cannot run here, or undefined when it can. */
export function nativeEngineUnavailable(): string | undefined {
  const addon = loadEngineAddon();
  if (!addon.loaded) return addon.reason;
  // The addon declines when the OpenSSL node runs is not the one it was built for (another major.minor).
  if (typeof addon.native.unavailable === 'string') return addon.native.unavailable;
  return typeof addon.native.Engine === 'function' ? undefined : `the addon at ${addon.path} has no Engine`;
}

/**
 * One engine: an epoll loop on its own thread serving the listeners it is given. Requests never enter JavaScript;
 * log lines and answers to describe()/drain() come back in batches.
 */
export class NativeEngine {
  private readonly handle: NativeEngineHandle;
  private readonly replies = new Map<number, (event: Record<string, unknown>) => void>();
  private nextToken = 1;
  private closed = false;

  constructor(
    settings: EngineSettings,
    private readonly onLog: (event: EngineLogEvent) => void,
    private readonly onTelemetry?: EngineTelemetrySink,
  ) {
    const addon = loadEngineAddon();
    if (!addon.loaded) throw new EngineError('MESHPORT_ENGINE_UNAVAILABLE', addon.reason);
    const Engine = addon.native.Engine as NativeEngineClass;
    this.handle = new Engine(settings, (lines, access, spans) => this.onEvents(lines, access, spans));
  }

  /** Binds (throws with errno/code/syscall when it cannot) and serves the listener; returns the bound port. */
  listen(listener: EngineListener, host: string, port: number, allow: EngineAllow): number {
    const bound = this.handle.listen(listener, host, port, allow);
    // A listening engine keeps the process alive, as a listening net.Server does.
    this.handle.ref();
    return bound;
  }

  /**
   * Serves a connection accepted elsewhere; `head` are bytes already read from it. The engine takes a duplicate of
   * the descriptor: the caller destroys its own socket afterwards.
   */
  adopt(listener: EngineListener, fd: number, head?: Buffer): void {
    this.handle.adopt(listener, this.handle.dupFd(fd), head);
  }

  /** Replaces the whole route table. */
  /**
   * Relays a connection that carries nothing to route to `host:port` (an IP address), byte for byte both ways, on
   * the engine's thread; `head` are bytes already read from it. The caller destroys its own socket afterwards.
   */
  relay(fd: number, host: string, port: number, head?: Buffer): void {
    this.handle.relay(this.handle.dupFd(fd), host, port, head);
  }

  setRoutes(routes: EngineRoutes): void {
    this.handle.setRoutes(routes, false);
  }

  /**
   * Mutual TLS and the authorization policy from now on (undefined: plaintext everywhere, every call allowed). The
   * PEM text is parsed here, synchronously: material that does not parse, or a key that does not match its
   * certificate, throws (an Error saying which, with OpenSSL's reason) and the security in force stays. New
   * connections use the new material; open ones keep what they began with; the policy applies to every call.
   */
  setSecurity(security: EngineSecurity | undefined): void {
    this.handle.setSecurity(security);
  }

  /**
   * Which calls get access log lines and spans from now on (undefined: none), swapped in on the loop thread; lines
   * already waiting are still handed over. The lines go to the constructor's `onTelemetry`.
   */
  setTelemetry(telemetry: EngineTelemetry | undefined): void {
    // After close there is nothing left to sample (a reload racing a stop is not an error).
    if (!this.closed) this.handle.setTelemetry(telemetry);
  }

  /** Replaces the clusters named (or removes those marked `remove`); every other cluster stays as it is. */
  updateRoutes(changed: EngineRoutes): void {
    this.handle.setRoutes(changed, true);
  }

  stats(): EngineCounters {
    return this.handle.stats();
  }

  describe(): Promise<EngineClusterState[]> {
    return this.ask((token) => this.handle.describe(token)).then((reply) => reply.clusters as EngineClusterState[]);
  }

  /** Stops accepting, refuses new requests as draining, gives calls in flight `deadlineMs`, then closes callers. */
  async drain(deadlineMs: number): Promise<void> {
    await this.ask((token) => this.handle.drain(deadlineMs, token));
  }

  /** Stops the loop thread and closes every socket at once. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.handle.close();
    for (const resolve of this.replies.values()) resolve({});
    this.replies.clear();
  }

  private ask(send: (token: number) => void): Promise<Record<string, unknown>> {
    if (this.closed) return Promise.reject(new EngineError('MESHPORT_ENGINE_CLOSED', 'the engine is closed'));
    const token = this.nextToken++;
    return new Promise((resolve) => {
      this.replies.set(token, resolve);
      send(token);
    });
  }

  private onEvents(lines: string[], access: Buffer | undefined, spans: Buffer | undefined): void {
    // Lines first: a drain's answer below resolves after the lines of the calls it waited for.
    if (access !== undefined) this.onTelemetry?.('access', access);
    if (spans !== undefined) this.onTelemetry?.('span', spans);
    for (const line of lines) {
      const event = JSON.parse(line) as Record<string, unknown>;
      if (event.type === 'reply') {
        const token = event.token as number;
        const resolve = this.replies.get(token);
        this.replies.delete(token);
        resolve?.(event);
        continue;
      }
      const { type: _type, ...log } = event;
      this.onLog(log as EngineLogEvent);
    }
  }
}
