// The TypeScript engine's router: callers' requests in, route lookup, load balancing, upstream pools, failures, drain.
// Who is admitted on a listener (listener-admission), the start-up hold, stalled frames (partial-frames) and what
// both engines share of their set-up (router-setup) are their own modules.

import type net from 'node:net';
import {
  boltBodyMethod,
  readTraceContext,
  type FrameHeader,
  type FrameIdentity,
  type ProtocolError,
} from '@meshport/protocol';
import type { Logger } from 'pino';
import { Call } from './call';
import { CallerConnection, type CallerHandler, type ListenerName } from './caller';
import { Cluster, type Host } from './cluster';
import { errorResponse, identityOf, type Failure } from './responses';
import type { ClusterSpec } from './route-table';
import { type ClusterMetrics, type MethodMetrics, RouterStats } from './stats';
import { UpstreamPool, type UpstreamConnection, type UpstreamEvents } from './upstream';
import { AdminServer, type AdminView } from './admin';
import { DeadlineWheel } from './deadlines';
import type { ClusterState, RouterHandle } from './handle';
import { admittingServer } from './listener-admission';
import { PartialFrames, type StallCode } from './partial-frames';
import { RouteKeys } from './route-key';
import { routerSetup, type RouterOptions, type RouterSettings } from './router-setup';
import { StartupHold } from './startup-hold';
import { notListening } from './errors';
import { type HandshakeError, TlsContexts, type TlsDirection } from './mtls';
import { authorize, type RouterSecurity } from './security';
import { LABEL_CAP_DEFAULTS, NO_SERVICE_LABEL, type LabelCaps, type RouterTelemetry } from './telemetry';
import { CallLog, type CallRecord } from './call-log';

// Still exported here, where it was before route-key.ts: @meshport/engine's codec test reads it from this module.
export { routeKey } from './route-key';

export class Router implements CallerHandler, UpstreamEvents, RouterHandle, AdminView {
  readonly engine = 'js' as const;
  readonly stats = new RouterStats();
  readonly logger: Logger;
  private readonly settings: RouterSettings;
  private readonly pool: UpstreamPool;
  private readonly servers = new Map<ListenerName, net.Server>();
  private readonly callers = new Set<CallerConnection>();
  private readonly calls = new Set<Call>();
  private readonly deadlines = new DeadlineWheel<Call>((call) => this.timeout(call));
  /** Clusters by listener, then service (no key string built per request); updated on route-table changes. */
  private readonly clusters: Record<ListenerName, Map<string, Cluster>> = { outbound: new Map(), inbound: new Map() };
  private admin: AdminServer | undefined;
  /** Callers in the middle of a frame: frameTimeoutMs and maxPartialFrames. */
  private readonly partial: PartialFrames;
  private draining = false;
  private stopRouteWatch: (() => void) | undefined;
  /** Requests that came in before their route, in the first startupHoldMs. */
  private readonly hold = new StartupHold((held) => this.request(held.caller, held.frame, held.header));
  private readonly routeKeys = new RouteKeys();
  private readonly debug: boolean;
  /** Mutual TLS and the authorization policy now (setSecurity replaces it); undefined: plaintext, all allowed. */
  private tls: TlsContexts | undefined;
  /**
   * Inbound connections before their first byte (which tells TLS from plaintext): a drain closes them. One in its TLS
   * handshake is closed when the handshake ends (serve refuses while draining), within connectTimeoutMs.
   */
  private readonly opening = new Set<net.Socket>();
  /** When each (direction, reason) of handshake failure was last logged: one line per 10 s each, not a flood. */
  private readonly failureLoggedAt = new Map<string, number>();
  /** Caps on the per-service metrics' method and caller labels. */
  private readonly caps: LabelCaps;
  /** Access log lines and spans: kept across setTelemetry (its sampling counter and batches). */
  private readonly telemetryLog: CallLog | undefined;
  /** The same while some telemetry is on, else undefined: the per-call path asks nothing more when it is off. */
  private callLog: CallLog | undefined;

  constructor(private readonly options: RouterOptions) {
    this.settings = routerSetup.settings(options);
    this.logger = routerSetup.logger(options);
    this.debug = this.logger.isLevelEnabled('debug');
    this.pool = new UpstreamPool(
      this.settings.connectionsPerEndpoint,
      {
        maxFrameSize: this.settings.maxFrameSize,
        connectTimeoutMs: this.settings.connectTimeoutMs,
        heartbeatIntervalMs: this.settings.heartbeatIntervalMs,
        heartbeatTimeoutMs: this.settings.heartbeatTimeoutMs,
      },
      this,
      () => this.tls?.client,
    );
    this.setSecurity(options.security);
    this.caps = { ...LABEL_CAP_DEFAULTS, ...options.labelCaps };
    this.telemetryLog =
      options.onTelemetry === undefined ? undefined : new CallLog(options.onTelemetry, readTraceContext);
    this.setTelemetry(options.telemetry);
    this.stats.trackUpstreams(() => this.pool.all().map((c) => ({ endpoint: c.host.key })));
    this.partial = new PartialFrames(this.settings, (caller, code, message) =>
      this.closeStalled(caller, code, message),
    );
  }

  /** Starts the listeners (and admin); resolves once all are bound. */
  async start(): Promise<void> {
    this.stopRouteWatch = this.options.routeTable.onChange(() => {
      this.refreshClusters();
      this.hold.routesChanged((held) => this.hasRoute(held.caller.listener, this.routeKeys.of(held.header)!));
    });
    this.hold.begin(this.settings.startupHoldMs);
    for (const name of ['outbound', 'inbound'] as const) {
      const where = this.options[name] ?? { port: 0 };
      if (where === false) continue;
      const server = admittingServer(name, where, this.settings, this, (socket) => this.accept(name, socket));
      this.servers.set(name, server);
      await listen(server, where.port, where.host ?? '127.0.0.1');
      this.logger.info({ listener: name, address: server.address() }, 'listening');
    }
    this.partial.start();
    if (this.options.admin !== false) {
      this.admin = new AdminServer(this, this.options.admin ?? { port: 0 });
      await this.admin.start();
      this.logger.info({ address: this.admin.address() }, 'admin listening');
    }
  }

  /** Where a listener is bound (after start). */
  address(listener: ListenerName | 'admin'): net.AddressInfo {
    const address = listener === 'admin' ? this.admin?.address() : this.servers.get(listener)?.address();
    if (!address || typeof address === 'string') throw notListening(listener);
    return address;
  }

  get isDraining(): boolean {
    return this.draining;
  }

  /** Caller connections holding an unfinished frame (at most maxPartialFrames). */
  get partialFrames(): number {
    return this.partial.size;
  }

  /** Calls in flight, across all callers. */
  get inflight(): number {
    return this.calls.size;
  }

  /**
   * Graceful stop: no new connections, new requests on open ones are turned away as busy, calls in flight get until
   * the deadline to finish; whatever is left then is answered with an error, and everything closes.
   */
  async drain(deadlineMs = this.settings.drainTimeoutMs): Promise<void> {
    if (!this.draining) {
      this.draining = true;
      this.logger.info({ inflight: this.calls.size, deadlineMs }, 'draining');
      this.hold.end(); // refused as draining: a held request is not yet a call
      for (const server of this.servers.values()) server.close();
      for (const socket of this.opening) socket.destroy();
      this.partial.stop();
    }
    const until = Date.now() + deadlineMs;
    while (this.calls.size > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 5));
    for (const call of [...this.calls]) this.fail(call, 'draining', 'meshport is shutting down');
    for (const caller of this.callers) caller.closeWhenIdle();
    this.pool.closeAll();
    this.stopRouteWatch?.();
    await this.admin?.close();
    this.telemetryLog?.flush();
    // Answers already written may still sit in the socket buffer of a caller that reads slowly: destroying now would
    // drop them. Each caller got its FIN after its last answer; wait (up to the deadline) for it to read and close.
    while (this.callers.size > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 5));
    for (const caller of this.callers) caller.socket.destroy();
    this.logger.info('drained');
  }

  /** Which calls get access log lines and spans from now on; lines already waiting still go to the sink. */
  setTelemetry(telemetry: RouterTelemetry | undefined): void {
    this.telemetryInForce = telemetry;
    this.callLog = this.telemetryLog?.configure(telemetry) ? this.telemetryLog : undefined;
  }

  /** Which calls get access log lines and spans (setTelemetry replaces it). */
  telemetryInForce: RouterTelemetry | undefined;

  /**
   * Replaces the TLS material, mode and authorization policy: new connections (both directions) use the new
   * certificate and mode, existing ones finish with what they began with; the policy applies to every request from
   * now on. undefined: plaintext everywhere, every call allowed.
   */
  setSecurity(security: RouterSecurity | undefined): void {
    this.tls =
      security === undefined ? undefined : new TlsContexts(security, this.settings.connectTimeoutMs, this.inboundTls);
  }

  /** What the inbound side of mutual TLS tells the router (TlsContexts.admit). */
  private readonly inboundTls = {
    sniffed: (socket: net.Socket) => this.opening.delete(socket),
    serve: (socket: net.Socket, identity: string | undefined) => this.serve('inbound', socket, identity),
    handshake: () => this.stats.tlsHandshakes.inc({ direction: 'inbound' }),
    refused: (socket: net.Socket, error: HandshakeError) =>
      // A caller that reset its connection mid-handshake has no address left to read.
      this.handshakeFailed('inbound', error, socket.remoteAddress ?? 'a caller already gone'),
  };

  /** Drains on the given signals (SIGTERM by default), once. */
  drainOnSignals(signals: NodeJS.Signals[] = ['SIGTERM']): void {
    routerSetup.drainOnSignals(this, signals);
  }

  /** For the admin `/routes` page. */
  describeRoutes(): ClusterState[] {
    const listed = this.options.routeTable.services?.() ?? { outbound: [], inbound: [] };
    return (['outbound', 'inbound'] as const).flatMap((listener) => {
      const live = [...this.clusters[listener].values()].map((cluster) => ({ listener, ...cluster.describe() }));
      // Services no call has used yet have no cluster; describe a fresh one so the page lists every route.
      const idle = listed[listener].flatMap((service) => {
        const spec = this.clusters[listener].has(service) ? undefined : this.specFor(listener, service);
        return spec
          ? [{ listener, ...new Cluster(service, spec, this.options.outlier, this.options.limits).describe() }]
          : [];
      });
      return [...live, ...idle];
    });
  }

  /** For the admin `/config` page (routerSetup.config). */
  describeConfig() {
    return routerSetup.config(this.engine, this.settings, this.options, (name) =>
      name === 'admin' ? this.admin?.address() : this.servers.has(name) ? this.address(name) : undefined,
    );
  }

  // ---- callers

  /**
   * Serves a connection accepted elsewhere (a capture listener of transparent hijacking) as if it had come in on
   * `listener`; bytes already read from it must have been put back with `socket.unshift`.
   */
  adopt(listener: ListenerName, socket: net.Socket): void {
    this.accept(listener, socket);
  }

  private accept(listener: ListenerName, socket: net.Socket): void {
    if (this.draining) {
      socket.destroy();
      return;
    }
    this.stats.connections.inc({ listener });
    this.stats.connectionsTotal.inc({ listener });
    socket.on('close', () => this.stats.connections.dec({ listener }));
    // Mutual TLS is between sidecars: the inbound listener's alone. The app's loopback is always plaintext.
    const tls = listener === 'inbound' ? this.tls : undefined;
    if (tls === undefined || tls.mode === 'off') {
      this.serve(listener, socket, undefined);
      return;
    }
    this.opening.add(socket);
    socket.once('close', () => this.opening.delete(socket));
    tls.admit(socket);
  }

  /** A connection becomes a caller: `socket` is the TLSSocket of a mutual-TLS one, whose caller proved `identity`. */
  private serve(listener: ListenerName, socket: net.Socket, identity: string | undefined): void {
    if (this.draining) {
      socket.destroy();
      return;
    }
    const caller = new CallerConnection(socket, listener, this, this.settings.maxFrameSize, identity);
    caller.maxInflight = this.settings.maxCallerInflight;
    caller.closeTimeoutMs = this.settings.frameTimeoutMs;
    this.callers.add(caller);
    socket.on('close', () => {
      this.callers.delete(caller);
      this.partial.forget(caller);
    });
    // A socket whose first byte was read (to tell TLS from plaintext) was paused with that byte put back.
    if (socket.isPaused()) socket.resume();
  }

  /** A handshake refused or failed: counted by direction and reason, and logged (once per 10 s per reason). */
  private handshakeFailed(direction: TlsDirection, error: HandshakeError, peer: string): void {
    this.stats.tlsHandshakeFailures.inc({ direction, reason: error.reason });
    const key = `${direction} ${error.reason}`;
    const now = Date.now();
    if (now - (this.failureLoggedAt.get(key) ?? -Infinity) < FAILURE_LOG_EVERY_MS) return;
    this.failureLoggedAt.set(key, now);
    this.logger.warn(
      { direction, reason: error.reason, peer },
      `mutual TLS ${direction === 'inbound' ? 'from' : 'to'} ${peer} refused (${error.reason}): ${error.message}; more are counted in meshport_tls_handshake_failures_total`,
    );
  }

  request(caller: CallerConnection, frame: Buffer, header: FrameHeader): void {
    const listener = caller.listener;
    if (header.protocol === 'dubbo' && header.attachmentsError !== undefined) {
      // Without the attachments the call's group is unknown, and guessing it could hand the call to another group;
      // attachments that name another service than the request would have the provider serve that one.
      const metrics = this.stats.cluster(listener, NO_SERVICE_LABEL);
      const message = `meshport: the request's identity cannot be read from its attachments: ${header.attachmentsError}`;
      const counted = this.countRequest(caller, metrics, header, frame);
      return this.refuse(caller, identityOf(header, frame), counted, 'bad-request', message);
    }
    const service = this.routeKeys.of(header);
    const cluster = service === undefined ? undefined : this.clusterFor(listener, service);
    const security = this.tls?.security;
    if (
      security !== undefined &&
      listener === 'inbound' &&
      service !== undefined &&
      !authorize(security.policy, service, header.method, caller.identity)
    ) {
      return this.deny(caller, header, frame, service, cluster);
    }
    if (
      (cluster === undefined || cluster.hosts.length === 0) &&
      service !== undefined &&
      !this.draining &&
      this.hold.open
    ) {
      this.hold.hold({ caller, frame, header });
      return;
    }
    const metrics = cluster?.metrics ?? this.stats.cluster(listener, NO_SERVICE_LABEL);
    const counted = this.countRequest(caller, metrics, header, frame);
    const who = identityOf(header, frame);
    const expectsResponse = who.expectsResponse;
    if (this.draining) return this.refuse(caller, who, counted, 'draining', 'meshport is shutting down');
    if (cluster === undefined || cluster.hosts.length === 0) {
      const message = `meshport: no route for service ${service ?? '(none in the frame)'} on the ${listener} listener`;
      return this.refuse(caller, who, counted, 'no-route', message);
    }
    if (!cluster.hasCapacity()) {
      return this.refuse(caller, who, counted, 'busy', `meshport: cluster ${cluster.name} is at its request limit`);
    }
    // The registry's condition rules may send a method to some endpoints only, or to none: then the SDK would have
    // found no provider, and the caller hears exactly that.
    const method = cluster.routers === undefined ? '' : (header.method ?? '');
    if (cluster.routers !== undefined && cluster.hostsFor(method).length === 0) {
      return this.refuse(
        caller,
        who,
        counted,
        'no-route',
        `meshport: the registry's routing rules leave no endpoint of ${service} for method ${method || '(unnamed)'}`,
      );
    }
    const hashKey = cluster.policy === 'consistent-hash' ? hashKeyOf(header, cluster.hashHeader) : undefined;
    if (!expectsResponse) {
      // Oneway: forwarded without tracking; nothing will answer it.
      const host =
        cluster.pick(hashKey, undefined, undefined, method) ?? cluster.pick(hashKey, undefined, Infinity, method);
      if (host) this.pool.connectionFor(host, header.protocol).sendOneway(frame);
      // Logged as sent: nothing will say more about it.
      this.callLog?.record(
        this.recordOf(caller, header.protocol, counted, host?.key, 'ok', counted.startedAt, frame, undefined),
      );
      return;
    }
    const call = new Call(caller, who, frame, cluster, service!, hashKey, method);
    call.counted = counted.method;
    call.methodName = counted.name;
    caller.callStarted();
    this.calls.add(call);
    cluster.active++;
    const timeoutMs =
      cluster.timeoutMs !== undefined
        ? cluster.timeoutMs
        : header.protocol === 'bolt' && header.timeoutMs !== undefined && header.timeoutMs > 0
          ? header.timeoutMs
          : header.protocol === 'bolt'
            ? this.settings.boltDefaultTimeoutMs
            : this.settings.dubboTimeoutMs;
    call.deadline = call.startedAt + timeoutMs;
    this.deadlines.add(call);
    this.send(call);
  }

  /**
   * A call the authorization policy does not allow: the protocol's error answer (the connection stays open), counted
   * by service; a service with no route counts as `none`, so names from the wire make no new series.
   */
  private deny(
    caller: CallerConnection,
    header: FrameHeader,
    frame: Buffer,
    service: string,
    cluster: Cluster | undefined,
  ): void {
    const metrics = cluster?.metrics ?? this.stats.cluster(caller.listener, NO_SERVICE_LABEL);
    const counted = this.countRequest(caller, metrics, header, frame);
    this.stats.callsDenied.inc({ service: cluster === undefined ? NO_SERVICE_LABEL : service });
    const who = caller.identity ?? 'a plaintext caller';
    const what = header.method ? `${service}#${header.method}` : service;
    this.refuse(caller, identityOf(header, frame), counted, 'denied', `meshport: ${who} may not call ${what}`);
  }

  /**
   * Counts a request on its cluster, and by method and caller (the per-service metrics, each capped: past the cap a
   * new name counts as `other`).
   */
  private countRequest(
    caller: CallerConnection,
    metrics: ClusterMetrics,
    header: FrameHeader,
    frame: Buffer,
  ): CountedRequest {
    metrics.requests[header.protocol]++;
    metrics.caller(caller.label, this.caps.callers);
    const name = methodOf(header, frame);
    const method = metrics.method(name, this.caps.methods);
    method.requests++;
    return { cluster: metrics, method, name, frame, startedAt: this.callLog === undefined ? 0 : performance.now() };
  }

  /** Answers a request the router turns away before it goes anywhere (oneways are only counted). */
  private refuse(
    caller: CallerConnection,
    who: FrameIdentity,
    counted: CountedRequest,
    failure: Failure,
    message: string,
  ): void {
    counted.cluster.count(failure);
    counted.method.count(failure);
    if (this.debug) this.logger.debug({ listener: caller.listener, requestId: who.requestId, failure }, message);
    const answer = who.expectsResponse ? errorResponse(who, failure, message) : undefined;
    if (answer !== undefined) caller.reply(answer);
    this.callLog?.record(
      this.recordOf(caller, who.protocol, counted, undefined, failure, counted.startedAt, counted.frame, answer),
    );
  }

  /** What the access log and a span tell of a call that ends now. */
  private recordOf(
    caller: CallerConnection,
    protocol: 'bolt' | 'dubbo',
    counted: { cluster: ClusterMetrics; name: string },
    endpoint: string | undefined,
    status: string,
    startedAt: number,
    request: Buffer,
    answer: Buffer | undefined,
  ): CallRecord {
    return {
      direction: caller.listener,
      protocol,
      caller: caller.address,
      identity: caller.identity,
      service: counted.cluster.cluster,
      method: counted.name,
      endpoint,
      status,
      startedAt,
      endedAt: performance.now(),
      request,
      bytesOut: answer?.length ?? 0,
    };
  }

  bytes(listener: ListenerName, direction: 'in' | 'out', n: number): void {
    this.stats.addBytes(listener, direction, n);
  }

  upstreamBytes(direction: 'in' | 'out', n: number): void {
    this.stats.addBytes('upstream', direction, n);
  }

  tlsHandshake(host: Host, error: HandshakeError | undefined): void {
    if (error === undefined) this.stats.tlsHandshakes.inc({ direction: 'outbound' });
    else this.handshakeFailed('outbound', error, host.key);
  }

  badFrame(caller: CallerConnection, error: ProtocolError): void {
    this.stats.badFrames.inc({ listener: caller.listener, code: error.code });
    this.logger.warn(
      { listener: caller.listener, remote: caller.socket.remoteAddress, code: error.code, err: error.message },
      'bad frame; closing that connection once its calls are answered',
    );
  }

  /** A caller began a frame (`since` its first byte) or finished one (`since` 0): see PartialFrames.mark. */
  partialFrame(caller: CallerConnection, since: number): void {
    this.partial.mark(caller, since);
  }

  private closeStalled(caller: CallerConnection, code: StallCode, message: string): void {
    this.stats.badFrames.inc({ listener: caller.listener, code });
    this.logger.warn(
      { listener: caller.listener, remote: caller.socket.remoteAddress, code },
      `${message}; closing that connection once its calls are answered`,
    );
    caller.closeStalled();
  }

  // ---- upstream

  /** Picks an endpoint (avoiding ones this call already failed on) and writes the call to a pooled connection. */
  private send(call: Call): void {
    const cluster = call.cluster;
    // Panic mode (as Envoy): when every usable endpoint is ejected, route to them anyway rather than refuse.
    // `now` = Infinity is a time after every ejection: no host counts as ejected (0 would count every host ever ejected).
    const host =
      cluster.pick(call.hashKey, call.tried, undefined, call.method) ??
      cluster.pick(call.hashKey, call.tried, Infinity, call.method);
    if (host === undefined) {
      this.fail(call, 'unavailable', `meshport: no endpoint of ${cluster.name} accepted a connection`);
      return;
    }
    call.host = host;
    host.active++;
    const conn = this.pool.connectionFor(host, call.who.protocol);
    if (!conn.connected) {
      call.pending = true;
      cluster.pending++;
    }
    if (!conn.send(call)) {
      // That upstream's socket is full: stop reading from this caller until it drains.
      call.caller.block(conn);
      conn.blockedCallers.add(call.caller);
    }
  }

  response(call: Call, frame: Buffer, status: number | undefined): void {
    if (call.done) return;
    this.finish(call);
    call.cluster.recordSuccess(call.host!);
    const outcome = status === 0 || status === 20 ? 'ok' : `status-${status}`;
    call.cluster.metrics!.count(outcome);
    call.counted.count(outcome);
    if (this.debug)
      this.logger.debug(
        { service: call.service, requestId: call.who.requestId, endpoint: call.host!.key, status },
        'response',
      );
    call.caller.reply(frame);
    this.callLog?.record(this.callRecord(call, outcome, frame));
    call.caller.callDone();
  }

  private callRecord(call: Call, status: string, answer: Buffer): CallRecord {
    return this.recordOf(
      call.caller,
      call.who.protocol,
      { cluster: call.cluster.metrics!, name: call.methodName },
      call.host?.key,
      status,
      call.startedAt,
      call.frame,
      answer,
    );
  }

  neverSent(call: Call, reason: Error, counted: Set<Host>): void {
    if (call.done) return;
    const host = call.host!;
    host.active--;
    call.onConnected(); // no longer pending on that connection
    this.chargeFailure(call, counted);
    call.tried ??= new Set<Host>();
    call.tried.add(host);
    this.logger.warn({ endpoint: host.key, err: reason.message }, 'upstream connect failed');
    if (call.tried.size > this.settings.connectRetries) {
      this.fail(call, 'unavailable', `meshport: could not connect to ${cluster(call)}: ${reason.message}`);
      return;
    }
    this.send(call);
  }

  lost(call: Call, reason: string, counted: Set<Host>): void {
    if (call.done) return;
    this.chargeFailure(call, counted);
    this.fail(
      call,
      'upstream-closed',
      `meshport: upstream ${call.host!.key} closed with the request in flight: ${reason}`,
    );
  }

  /** One failure per endpoint per connection event, however many calls it caught (see UpstreamEvents). */
  private chargeFailure(call: Call, counted: Set<Host>): void {
    const host = call.host!;
    if (counted.has(host)) return;
    counted.add(host);
    call.cluster.recordFailure(host);
  }

  private timeout(call: Call): void {
    const timeoutMs = Math.round(call.deadline - call.startedAt);
    if (call.done) return;
    call.connection?.forget(call);
    if (call.host) call.cluster.recordFailure(call.host);
    this.fail(call, 'timeout', `meshport: no response from ${call.host?.key ?? cluster(call)} within ${timeoutMs} ms`);
  }

  private fail(call: Call, failure: Failure, message: string): void {
    if (call.done) return;
    this.finish(call);
    call.connection?.forget(call);
    call.cluster.metrics!.count(failure);
    call.counted.count(failure);
    if (this.debug) this.logger.debug({ service: call.service, requestId: call.who.requestId, failure }, message);
    const answer = errorResponse(call.who, failure, message);
    call.caller.reply(answer);
    this.callLog?.record(this.callRecord(call, failure, answer));
    call.caller.callDone();
  }

  /** Releases what a call holds, whatever its outcome. */
  private finish(call: Call): void {
    call.done = true;
    this.deadlines.remove(call);
    call.onConnected();
    this.calls.delete(call);
    call.cluster.active--;
    if (call.host) call.host.active--;
    const seconds = call.elapsedSeconds();
    call.cluster.metrics!.observe(seconds);
    call.counted.observe(seconds);
  }

  // ---- routes

  private clusterFor(listener: ListenerName, service: string): Cluster | undefined {
    const known = this.clusters[listener].get(service);
    if (known !== undefined) return known;
    const spec = this.specFor(listener, service);
    if (spec === undefined) return undefined;
    const cluster = new Cluster(service, spec, this.options.outlier, this.options.limits);
    cluster.metrics = this.stats.cluster(listener, service);
    this.clusters[listener].set(service, cluster);
    return cluster;
  }

  /** Outbound: the service's cluster; inbound: the local app as a one-endpoint cluster. */
  private specFor(listener: ListenerName, service: string): ClusterSpec | undefined {
    const table = this.options.routeTable;
    if (listener === 'outbound') return table.outbound(service);
    const local = table.inbound(service);
    return local ? { endpoints: [local] } : undefined;
  }

  /** Whether the service has a route with an endpoint now (a held request for it can go). */
  private hasRoute(listener: ListenerName, service: string): boolean {
    const cluster = this.clusterFor(listener, service);
    return cluster !== undefined && cluster.hosts.length > 0;
  }

  /** Route-table change: clusters update in place (keeping host state); vanished ones are dropped. */
  private refreshClusters(): void {
    for (const listener of ['outbound', 'inbound'] as const) {
      for (const [service, cluster] of this.clusters[listener]) {
        const spec = this.specFor(listener, service);
        if (spec === undefined) this.clusters[listener].delete(service);
        else cluster.update(spec);
      }
    }
  }

  /** Every upstream connection, for tests and admin. */
  upstreamConnections(): UpstreamConnection[] {
    return this.pool.all();
  }
}

/** Handshake failures of one direction and reason are logged at most this often; every one is counted. */
const FAILURE_LOG_EVERY_MS = 10_000;

/** A request counted on its cluster and method, with what a refusal's log line needs of it. */
interface CountedRequest {
  cluster: ClusterMetrics;
  method: MethodMetrics;
  /** The method's name as the call gave it (the metrics may count it as `other`). */
  name: string;
  frame: Buffer;
  /** performance.now() at arrival when telemetry is on (else 0: not needed). */
  startedAt: number;
}

/**
 * The method of a request for metrics, logs and spans: Bolt's `sofa_head_method_name` header, else the SofaRequest
 * body's methodName (sofa-bolt-node in hessian2 mode sends no header); Dubbo's method string; `unknown` when the
 * frame names none.
 */
function methodOf(header: FrameHeader, frame: Buffer): string {
  if (header.method) return header.method;
  return (header.protocol === 'bolt' ? boltBodyMethod(frame, header) : undefined) || 'unknown';
}

function cluster(call: Call): string {
  return call.cluster.name;
}

function hashKeyOf(header: FrameHeader, hashHeader: string | undefined): string | undefined {
  if (header.protocol === 'dubbo') return header.method;
  if (hashHeader === undefined) return undefined;
  return header.headers[hashHeader] ?? undefined;
}

function listen(server: net.Server, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}
