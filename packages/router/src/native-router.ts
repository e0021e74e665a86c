// The router on the native engine: the same listeners, routes, failures and admin as Router, with the per-request
// path in @meshport/engine's loop thread. This class is its control plane: it turns the route table into immutable
// snapshots, serves admin from the engine's counters, and logs the engine's rare events.

import dns from 'node:dns/promises';
import net from 'node:net';
import {
  NativeEngine,
  nativeEngineUnavailable,
  type EngineCluster,
  type EngineCounters,
  type EngineEndpoint,
  type EngineLogEvent,
  type EngineRoutes,
  type EngineTelemetrySink,
} from '@meshport/engine';
import type { Logger } from 'pino';
import { AdminServer, type AdminView } from './admin';
import type { ListenerName } from './caller';
import { CLUSTER_LIMIT_DEFAULTS, OUTLIER_DEFAULTS } from './cluster';
import type { ClusterState, RouterHandle } from './handle';
import { routerSetup, type RouterOptions, type RouterSettings } from './router-setup';
import { endpointKey, type ClusterSpec, type Endpoint, type RouteChange } from './route-table';
import { MethodMetrics, RouterStats } from './stats';
import type { RouterSecurity } from './security';
import { LABEL_CAP_DEFAULTS, type RouterTelemetry, type TelemetrySink } from './telemetry';
import { notListening } from './errors';

/** Why the native engine cannot serve these options, or undefined when it can. */
export function nativeRouterUnavailable(options: RouterOptions): string | undefined {
  const missing = nativeEngineUnavailable();
  if (missing !== undefined) return missing;
  if (options.routeTable.services === undefined) {
    return 'the route table cannot list its services, and the native engine takes whole snapshots';
  }
  for (const name of ['outbound', 'inbound'] as const) {
    const where = options[name];
    if (where && where.clients !== undefined && where.allowRemote === undefined) {
      return `the ${name} listener has a JavaScript client gate (clients) and no allowRemote the engine can apply`;
    }
  }
  return undefined;
}

export class NativeRouter implements RouterHandle, AdminView {
  readonly engine = 'native' as const;
  readonly logger: Logger;
  private readonly settings: RouterSettings;
  private readonly native: NativeEngine;
  private readonly ownStats = new RouterStats();
  private readonly bound = new Map<ListenerName, net.AddressInfo>();
  private admin: AdminServer | undefined;
  private draining = false;
  private stopRouteWatch: (() => void) | undefined;
  /** Route snapshots are built one at a time; a change during a build asks for one more. */
  private building: Promise<void> | undefined;
  private rebuildAgain = false;
  private readonly resolved = new Map<string, string>();
  /** The engine's counters as last read (syncStats), for gauges read later in the same scrape. */
  private lastCounters: EngineCounters | undefined;

  constructor(private readonly options: RouterOptions) {
    this.settings = routerSetup.settings(options);
    this.logger = routerSetup.logger(options);
    const outlier = { ...OUTLIER_DEFAULTS, ...options.outlier };
    const limits = { ...CLUSTER_LIMIT_DEFAULTS, ...options.limits };
    const engineLog = this.logger.child({ engine: 'native' });
    this.native = new NativeEngine(
      {
        ...this.settings,
        consecutiveFailures: outlier.consecutiveFailures,
        baseEjectionMs: outlier.baseEjectionMs,
        maxEjectionPercent: outlier.maxEjectionPercent,
        maxPendingRequests: limits.maxPendingRequests,
        maxActiveRequests: limits.maxActiveRequests,
        labelCaps: { ...LABEL_CAP_DEFAULTS, ...options.labelCaps },
      },
      ({ level, msg, ...fields }: EngineLogEvent) => engineLog[level](fields, msg),
      telemetryBytes(options.onTelemetry),
    );
    if (options.security !== undefined) this.setSecurity(options.security);
    this.setTelemetry(options.telemetry);
    // One entry per open connection, as the TypeScript engine's pool lists them.
    this.ownStats.trackUpstreams(() => {
      const by = this.lastCounters?.upstreamsByEndpoint ?? {};
      return Object.entries(by).flatMap(([endpoint, n]) => Array.from({ length: n }, () => ({ endpoint })));
    });
  }

  /** Prometheus metrics, brought up to date from the engine's counters on every read. */
  get stats(): RouterStats {
    this.syncStats();
    return this.ownStats;
  }

  async start(): Promise<void> {
    this.stopRouteWatch = this.options.routeTable.onChange((change) => {
      // A change that names its services, all by address, is applied to those clusters alone and at once: at
      // 10,000 endpoints reported one by one, a whole snapshot per change would be quadratic.
      if (change !== undefined && this.building === undefined && this.applyChange(change)) return;
      void this.rebuild();
    });
    // Routes first: a caller that connects the moment the listener binds finds them (or the start-up hold).
    await this.rebuild();
    for (const name of ['outbound', 'inbound'] as const) {
      const where = this.options[name] ?? { port: 0 };
      if (where === false) continue;
      const host = where.host ?? '127.0.0.1';
      const port = this.native.listen(name, host, where.port, where.allowRemote ?? where.clients === undefined);
      const address: net.AddressInfo = { address: host, port, family: net.isIPv6(host) ? 'IPv6' : 'IPv4' };
      this.bound.set(name, address);
      this.logger.info({ listener: name, address, engine: 'native' }, 'listening');
    }
    if (this.options.admin !== false) {
      this.admin = new AdminServer(this, this.options.admin ?? { port: 0 });
      await this.admin.start();
      this.logger.info({ address: this.admin.address() }, 'admin listening');
    }
  }

  address(listener: ListenerName | 'admin'): net.AddressInfo {
    const address = listener === 'admin' ? this.admin?.address() : this.bound.get(listener);
    if (!address) throw notListening(listener);
    return address;
  }

  get isDraining(): boolean {
    return this.draining;
  }

  get partialFrames(): number {
    return this.draining && this.bound.size === 0 ? 0 : this.native.stats().partialFrames;
  }

  get inflight(): number {
    return this.native.stats().inflight;
  }

  async drain(deadlineMs = this.settings.drainTimeoutMs): Promise<void> {
    if (!this.draining) {
      this.draining = true;
      this.logger.info({ inflight: this.inflight, deadlineMs }, 'draining');
    }
    await this.native.drain(deadlineMs);
    this.syncStats();
    this.stopRouteWatch?.();
    await this.admin?.close();
    this.bound.clear();
    this.native.close();
  }

  /**
   * Which calls get access log lines and spans from now on, decided and written on the engine's thread; lines
   * already waiting still go to the sink. Without an onTelemetry sink the engine writes none.
   */
  setTelemetry(telemetry: RouterTelemetry | undefined): void {
    this.telemetryInForce = telemetry;
    if (this.options.onTelemetry !== undefined) this.native.setTelemetry(telemetry);
  }

  /** Which calls get access log lines and spans (setTelemetry replaces it). */
  telemetryInForce: RouterTelemetry | undefined;

  /**
   * Replaces the TLS material, mode and policy at run time: new connections use them, existing ones finish with what
   * they started with.
   */
  setSecurity(security: RouterSecurity | undefined): void {
    // The engine parses the PEM text here, synchronously: material that does not parse throws, and what was in
    // force stays (as the TypeScript engine's TLS contexts do).
    this.native.setSecurity(security);
  }

  drainOnSignals(signals: NodeJS.Signals[] = ['SIGTERM']): void {
    routerSetup.drainOnSignals(this, signals);
  }

  async describeRoutes(): Promise<ClusterState[]> {
    const table = this.options.routeTable;
    const clusters = await this.native.describe();
    return clusters.map((c) => {
      const spec = c.listener === 'outbound' ? table.outbound(c.name) : undefined;
      return { ...c, ...(spec?.rules ? { rules: spec.rules, routers: spec.routers ?? [] } : {}) };
    });
  }

  describeConfig() {
    return routerSetup.config(this.engine, this.settings, this.options, (name) =>
      name === 'admin' ? this.admin?.address() : this.bound.get(name),
    );
  }

  /** Hands a connection accepted elsewhere (a capture listener) to the engine, with the bytes already read from it. */
  adopt(listener: ListenerName, socket: net.Socket): void {
    const fd = fdOf(socket);
    if (this.draining || fd === undefined) {
      socket.destroy();
      return;
    }
    const head = socket.read() as Buffer | null;
    try {
      this.native.adopt(listener, fd, head ?? undefined);
    } finally {
      socket.destroy();
    }
  }

  relay(socket: net.Socket, to: { host: string; port: number }, head: Buffer): void {
    const fd = fdOf(socket);
    try {
      if (!this.draining && fd !== undefined && net.isIP(to.host) !== 0) this.native.relay(fd, to.host, to.port, head);
    } finally {
      socket.destroy();
    }
  }

  // ---- routes

  /**
   * Builds a snapshot of the whole route table and hands it to the engine. When every endpoint is an IP address (or
   * a name resolved before) that happens before this returns, so a route set on the table is in the engine's queue
   * before anything the caller does next; a new name is resolved first, asynchronously.
   */
  private rebuild(): Promise<void> {
    if (this.building) {
      this.rebuildAgain = true;
      return this.building;
    }
    const now = this.snapshotNow();
    if (now !== undefined) {
      this.install(now);
      return Promise.resolve();
    }
    this.building = (async () => {
      do {
        this.rebuildAgain = false;
        this.install(await this.snapshot());
      } while (this.rebuildAgain);
    })()
      .catch((err: Error) =>
        this.logger.error({ err: err.message }, 'route snapshot failed; the engine keeps the last one'),
      )
      .finally(() => {
        this.building = undefined;
      });
    return this.building;
  }

  /** Sends the engine the changed clusters only; false when a name must be resolved first (then rebuild). */
  private applyChange(change: RouteChange): boolean {
    const table = this.options.routeTable;
    const known = (e: Endpoint) => net.isIP(e.host) !== 0 || this.resolved.has(e.host);
    const outbound: EngineCluster[] = [];
    for (const name of change.outbound) {
      const spec = table.outbound(name);
      if (spec === undefined) {
        outbound.push({ name, endpoints: [], remove: true });
        continue;
      }
      if (!spec.endpoints.every(known)) return false;
      outbound.push(this.cluster(name, spec, (e) => this.addressOf(e)));
    }
    const inbound: EngineCluster[] = [];
    for (const name of change.inbound) {
      const local = table.inbound(name);
      if (local === undefined) inbound.push({ name, endpoints: [], remove: true });
      else if (!known(local)) return false;
      else inbound.push({ name, endpoints: [this.addressOf(local)] });
    }
    if (this.draining && this.bound.size === 0) return true;
    this.native.updateRoutes({ outbound, inbound });
    return true;
  }

  private addressOf(e: Endpoint): EngineEndpoint {
    return {
      host: net.isIP(e.host) ? e.host : (this.resolved.get(e.host) ?? '0.0.0.0'),
      port: e.port,
      weight: e.weight,
      ...(e.identity !== undefined ? { identity: e.identity } : {}),
    };
  }

  private cluster(name: string, spec: ClusterSpec, address: (e: Endpoint) => EngineEndpoint): EngineCluster {
    return {
      name,
      endpoints: spec.endpoints.map(address),
      ...(spec.policy ? { policy: spec.policy } : {}),
      ...(spec.hashHeader ? { hashHeader: spec.hashHeader } : {}),
      ...(spec.timeoutMs !== undefined ? { timeoutMs: spec.timeoutMs } : {}),
      ...(spec.routers && spec.routers.length > 0 ? { routers: spec.routers } : {}),
    };
  }

  private install(routes: EngineRoutes): void {
    if (this.draining && this.bound.size === 0) return;
    this.native.setRoutes(routes);
  }

  /** The snapshot, if no endpoint needs a name looked up; otherwise undefined. */
  private snapshotNow(): EngineRoutes | undefined {
    const table = this.options.routeTable;
    const services = table.services!();
    const known = (e: Endpoint) => net.isIP(e.host) !== 0 || this.resolved.has(e.host);
    for (const name of services.outbound) if (!(table.outbound(name)?.endpoints ?? []).every(known)) return undefined;
    for (const name of services.inbound) {
      const local = table.inbound(name);
      if (local !== undefined && !known(local)) return undefined;
    }
    return this.build((e) => this.addressOf(e));
  }

  private async snapshot(): Promise<EngineRoutes> {
    const table = this.options.routeTable;
    const services = table.services!();
    for (const name of services.outbound) for (const e of table.outbound(name)?.endpoints ?? []) await this.resolve(e);
    for (const name of services.inbound) {
      const local = table.inbound(name);
      if (local !== undefined) await this.resolve(local);
    }
    return this.build((e) => this.addressOf(e));
  }

  private build(address: (e: Endpoint) => EngineEndpoint): EngineRoutes {
    const table = this.options.routeTable;
    const services = table.services!();
    const outbound: EngineCluster[] = [];
    for (const name of services.outbound) {
      const spec = table.outbound(name);
      if (spec === undefined) continue;
      outbound.push(this.cluster(name, spec, address));
    }
    const inbound: EngineCluster[] = [];
    for (const name of services.inbound) {
      const local = table.inbound(name);
      if (local !== undefined) inbound.push({ name, endpoints: [address(local)] });
    }
    return { outbound, inbound };
  }

  /**
   * The engine dials IP addresses only. A name is resolved here, once, and cached; the endpoint keeps its name in
   * the key routers compare (endpointKey), as the TypeScript engine's hosts do.
   */
  private async resolve(e: Endpoint): Promise<void> {
    if (net.isIP(e.host) === 0 && !this.resolved.has(e.host)) await this.lookup(e.host);
  }

  private async lookup(name: string): Promise<string> {
    try {
      const { address } = await dns.lookup(name);
      this.resolved.set(name, address);
      return address;
    } catch (err) {
      this.logger.warn(
        { host: name, err: (err as Error).message, endpoint: endpointKey({ host: name, port: 0 }) },
        'endpoint host does not resolve',
      );
      return '0.0.0.0';
    }
  }

  // ---- stats

  private syncStats(): void {
    if (this.native === undefined) return;
    let counters;
    try {
      counters = this.native.stats();
      this.lastCounters = counters;
    } catch {
      return; // closed: the last figures stay
    }
    const stats = this.ownStats;
    // The engine keeps running totals and nothing else counts into these metrics here: each is set to its total
    // (prom-client counters have no set, so reset, then one inc).
    stats.connectionsTotal.reset();
    stats.connectionsRefused.reset();
    stats.badFrames.reset();
    stats.tlsHandshakes.reset();
    stats.tlsHandshakeFailures.reset();
    stats.callsDenied.reset();
    for (const direction of ['inbound', 'outbound'] as const) {
      const n = counters.tls.handshakes[direction];
      if (n > 0) stats.tlsHandshakes.inc({ direction }, n);
    }
    for (const f of counters.tls.failures) {
      stats.tlsHandshakeFailures.inc({ direction: f.direction, reason: f.reason }, f.count);
    }
    for (const d of counters.denied) stats.callsDenied.inc({ service: d.service }, d.count);
    for (const listener of ['outbound', 'inbound'] as const) {
      const l = counters[listener];
      stats.connections.set({ listener }, l.connectionsActive);
      stats.connectionsTotal.inc({ listener }, l.connectionsTotal);
      if (l.refusedPerSource > 0)
        stats.connectionsRefused.inc({ listener, reason: 'per-source-cap' }, l.refusedPerSource);
      if (l.refusedMaxConnections > 0)
        stats.connectionsRefused.inc({ listener, reason: 'max-connections' }, l.refusedMaxConnections);
    }
    for (const [listener, dirs] of Object.entries(counters.bytes)) {
      stats.setBytes(listener, dirs.in, dirs.out);
    }
    for (const bad of counters.badFrames) stats.badFrames.inc({ listener: bad.listener, code: bad.code }, bad.count);
    for (const c of counters.clusters) {
      const m = stats.cluster(c.listener, c.cluster);
      m.requests.bolt = c.requestsBolt;
      m.requests.dubbo = c.requestsDubbo;
      m.outcomes.clear();
      for (const [outcome, n] of Object.entries(c.outcomes)) m.outcomes.set(outcome, n);
      c.latencyCounts.forEach((n, i) => (m.latencyCounts[i] = n));
      m.latencyCount = c.latencyCount;
      m.latencySum = c.latencySumSeconds;
      m.methods.clear();
      for (const e of c.methods) {
        const mm = new MethodMetrics();
        mm.requests = e.requests;
        for (const [outcome, n] of Object.entries(e.outcomes)) mm.outcomes.set(outcome, n);
        e.latencyCounts.forEach((n, i) => (mm.latencyCounts[i] = n));
        mm.latencyCount = e.latencyCount;
        mm.latencySum = e.latencySumSeconds;
        m.methods.set(e.method, mm);
      }
      m.callers.clear();
      for (const e of c.callers) m.callers.set(e.caller, e.requests);
      m.foldedMethods = c.foldedMethods;
      m.foldedCallers = c.foldedCallers;
    }
  }
}

/** The descriptor under a Node socket (libuv's handle), which the engine duplicates to take the connection over. */
function fdOf(socket: net.Socket): number | undefined {
  const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : undefined;
}

/** The engine's batches as the sink takes them: the bytes as they are, or decoded for a sink of strings. */
function telemetryBytes(sink: TelemetrySink | undefined): EngineTelemetrySink | undefined {
  if (sink === undefined) return undefined;
  const bytes = sink.bytes;
  return bytes ? (kind, lines) => bytes(kind, lines) : (kind, lines) => sink(kind, lines.toString());
}
