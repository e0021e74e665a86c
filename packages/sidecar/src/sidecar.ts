// The daemon: one router, the registries of the config with their facades, one route book between them.

import pino, { type Logger } from 'pino';
import { createRouter, type RouterHandle, type RouterSecurity, type TlsMaterial } from '@meshport/router';
import { CaptureListener } from './capture';
import {
  configSource,
  loadConfig,
  SIDECAR_DEFAULTS,
  type HijackConfig,
  type HostPort,
  type RegistryConfig,
  type SidecarConfig,
} from './config';
import { preflight, telemetryFileProblems } from './preflight';
import { redactUrl, startRegistries, type RegistrySet, type RegistryStatus } from './registries';
import { RouteBook, SidecarTakeover } from './routes';
import { SidecarError } from './errors';
import { routerTelemetryOf, TELEMETRY_FLUSH_MS, TelemetryOutput } from './telemetry/output';
import {
  certificateExpiry,
  describeSecurity,
  loadTlsMaterial,
  securityOf,
  tlsFilesOf,
  watchTlsMaterial,
  type TlsFiles,
} from './tls';

export interface SidecarOptions {
  /** @default pino at the config's log level */
  logger?: Logger;
}

/** What a reload did (also logged as 'reloaded'), or why it changed nothing. */
export interface ReloadResult {
  /** False when the new config was invalid or its registries failed to start: the sidecar runs on the old config. */
  ok: boolean;
  /** Why not ok: a MESHPORT_CONFIG_INVALID naming the file, line and key, or the registry start failure. */
  error?: Error;
  /** Registries (by name) new in this config. */
  added: string[];
  /** Registries gone from the config: closed, their routes dropped after the grace. */
  removed: string[];
  /** Whether the `tls` or `authz` keys changed and the router now runs with the new certificate files or policy. */
  security?: boolean;
  /** Whether `telemetry` (access log, tracing: targets or sampling) changed and is now in effect. */
  telemetry?: boolean;
  /** Registries whose entry changed (or a file registry re-read): closed and started again. */
  restarted: string[];
  /** Registries left running untouched: their facades keep their ports and their apps' sessions. */
  unchanged: string[];
  /**
   * Keys that differ but only take effect on a restart (listeners, admin, hijack, node, router, telemetry.labelCaps,
   * and tls when it turns mutual TLS on or off); the old values stay.
   */
  needRestart: string[];
  /** The log level, when it changed. */
  logLevel?: string;
}

/** Top-level keys a running sidecar cannot change: the listeners are bound, the router and captures built with them. */
const RESTART_KEYS = ['listeners', 'admin', 'hijack', 'node', 'router'] as const;

/**
 * Start order matters: the router first, because the addresses the facades hand out are its listeners' ports (a
 * config may say port 0); then the registries, so no app is told about an endpoint that is not listening yet.
 */
export class Sidecar {
  readonly book: RouteBook;
  readonly logger: Logger;
  private router: RouterHandle | undefined;
  /**
   * The running registries, one set per group of entries tied by `via` (a registry and the sofa-mesh facades that
   * publish through it), so a reload can close and start one group without touching the others.
   */
  private groups: RunningGroup[] = [];
  private readonly captures = new Map<'outboundCapture' | 'outboundCapture6' | 'inboundCapture', CaptureListener>();
  private stopping: Promise<void> | undefined;
  /** Reloads run one at a time; stop() waits for the one under way. */
  private reloading: Promise<unknown> = Promise.resolve();
  private current: SidecarConfig;
  /** The inbound address published upstream and the outbound address apps dial, once the router is listening. */
  private advertised: { inbound: HostPort; outbound: HostPort } | undefined;
  /** start() has finished: every registry of the config is running (connected or not). */
  private started = false;
  /**
   * Registries (by name) that have been ready once: `/ready` stays 200 through their later outages and through a
   * reload that restarts them, since the routes they reported are kept.
   */
  private readonly readyOnce = new Set<string>();
  private readonly reloads = { ok: 0, failed: 0 };
  /** The certificate and key in use (tls.mode not off), replaced on rotation. */
  private material: TlsMaterial | undefined;
  /**
   * The identity published upstream with the app's services (`meshport.id`): the one of the certificate at start. A
   * rotated certificate with another identity is used, but the registrations keep this one until a restart.
   */
  private publishedIdentity: string | undefined;
  private watcher: { files: TlsFiles; close(): void } | undefined;
  /** Where the router's access log lines and spans go (the `telemetry` targets), from start() on. */
  private telemetry: TelemetryOutput | undefined;

  constructor(config: SidecarConfig, options: SidecarOptions = {}) {
    this.current = config;
    this.logger = options.logger ?? pino({ name: 'meshport', level: config.log.level });
    const routesLog = this.logger.child({ part: 'routes' });
    this.book = new RouteBook({
      warn: (fields, message) => routesLog.warn(fields, message),
      info: (fields, message) => routesLog.info(fields, message),
      consumerHost: config.node.ip,
      // Without a certificate of its own this sidecar cannot dial mTLS: it dials every provider in plaintext.
      identities: config.tls.mode !== 'off',
    });
  }

  /** The config in effect: the one started with, as changed by successful reloads. */
  get config(): SidecarConfig {
    return this.current;
  }

  async start(): Promise<void> {
    const { config } = this;
    await preflight(config); // every address and plugin, before anything binds (see preflight.ts)
    // The certificate files, before anything binds: a missing, unreadable or expired one stops the start.
    const files = tlsFilesOf(config.tls);
    if (files) {
      this.material = loadTlsMaterial(files);
      this.publishedIdentity = this.material.identity;
    }
    const security = this.material && securityOf(config.tls, config.authz, this.material);
    const { maxActiveRequests, maxPendingRequests, ...settings } = config.router;
    // The sink is the router's for good, even with both off: a reload turns them on with setTelemetry.
    const telemetry = new TelemetryOutput(config.telemetry, config.node.ip, this.logger.child({ part: 'telemetry' }));
    this.telemetry = telemetry;
    const router = createRouter({
      ...settings,
      ...(config.engine ? { engine: config.engine } : {}),
      startupHoldMs: settings.startupHoldMs ?? SIDECAR_DEFAULTS.startupHoldMs,
      // Only the limits the config names: an undefined one would override the router's default.
      limits: Object.fromEntries(
        Object.entries({ maxActiveRequests, maxPendingRequests }).filter(([, v]) => v !== undefined),
      ),
      routeTable: this.book.table,
      ...(security ? { security } : {}),
      telemetry: routerTelemetryOf(config.telemetry),
      onTelemetry: telemetry.sink,
      labelCaps: config.telemetry.labelCaps,
      // The allowRemote gate as data: both engines apply it at accept.
      outbound: { ...config.listeners.outbound, allowRemote: config.listeners.allowRemote.outbound },
      inbound: { ...config.listeners.inbound, allowRemote: config.listeners.allowRemote.inbound },
      admin: {
        port: config.admin.port,
        pages: { '/registries': () => ({ registries: this.registryStatus() }) },
        readiness: () => this.notReadyBecause(),
        config: (own) => this.describeConfig(own),
      },
      logger: this.logger.child({ part: 'router' }),
    });
    this.router = router;
    this.addMetrics(router);
    await router.start();
    if (files) this.watch(files);
    const inbound = { host: config.node.ip, port: router.address('inbound').port };
    const outbound = this.dialable(config.listeners.outbound, router.address('outbound').port);
    this.advertised = { inbound, outbound };
    try {
      if (config.hijack) {
        warnIfNotHijackUid(config.hijack, this.logger);
        await this.startCapture(config.hijack, router).catch((error: Error) => {
          throw error instanceof SidecarError
            ? error
            : new SidecarError('MESHPORT_CAPTURE_FAILED', `capture listeners: ${error.message}`, { cause: error });
        });
      }
      for (const entries of registryGroups(config.registries)) this.groups.push(await this.startGroup(entries));
    } catch (err) {
      await Promise.allSettled(this.groups.splice(0).map((g) => g.set.close()));
      await Promise.all([...this.captures.values()].map((c) => c.close()));
      this.watcher?.close();
      await router.drain(0);
      await telemetry.close(0);
      throw err;
    }
    this.started = true;
    this.logReady(this.groups);
    this.logger.info(
      {
        inbound,
        outbound,
        admin: router.address('admin'),
        tls: config.tls.mode,
        ...(this.material
          ? { identity: this.material.identity, certificateExpires: certificateExpiry(this.material) }
          : {}),
      },
      'meshport sidecar running',
    );
  }

  /** The identity this sidecar presents and publishes; undefined with tls.mode off. */
  get identity(): string | undefined {
    return this.material?.identity;
  }

  /**
   * Watches the certificate files: a rotation (cert-manager or SPIRE rewriting them) goes to the router, whose new
   * connections present the new certificate while the open ones carry on; files that do not read well (half written,
   * a key that does not match) are logged and the certificate in use stays.
   */
  private watch(files: TlsFiles): void {
    this.watcher?.close();
    const log = this.logger.child({ part: 'tls' });
    const handle = watchTlsMaterial(
      files,
      this.material,
      (material) => {
        if (this.watcher !== watching || this.stopping) return;
        this.material = material;
        this.applySecurity();
        log.info(
          { identity: material.identity, certificateExpires: certificateExpiry(material), certFile: files.certFile },
          'certificate rotated',
        );
        if (material.identity !== this.publishedIdentity)
          log.warn(
            { identity: material.identity, published: this.publishedIdentity },
            'the rotated certificate has another identity than the one published with the services: consumers ' +
              'expect the published one (wrong-identity) until this sidecar restarts',
          );
      },
      (error) => {
        if (this.watcher !== watching || this.stopping) return;
        log.warn(
          { code: (error as { code?: string }).code, error: error.message, certFile: files.certFile },
          'the certificate files changed but cannot be used; keeping the current certificate',
        );
      },
    );
    const watching = { files, close: () => handle.close() };
    this.watcher = watching;
  }

  /** The router's security as the config and the current material make it. */
  private security(): RouterSecurity | undefined {
    return this.material && securityOf(this.current.tls, this.current.authz, this.material);
  }

  private applySecurity(): void {
    const security = this.security();
    if (this.router && security) this.router.setSecurity(security);
  }

  /** Every registry entry's state, as the admin `/registries` page shows it. */
  registryStatus(): RegistryStatus[] {
    return this.groups.flatMap((g) => g.set.status());
  }

  /**
   * Why `/ready` is 503, or undefined when ready: until start() has finished and every registry has connected once
   * and reported each service it must route once. After that it stays ready through outages, on the last known
   * routes (a pod taken out of its Service for a registry blip would turn a registry outage into a traffic outage).
   */
  private notReadyBecause(): string | undefined {
    if (!this.started) return 'starting';
    const waiting: string[] = [];
    for (const r of this.registryStatus()) {
      if (r.ready) this.readyOnce.add(r.name);
      if (this.readyOnce.has(r.name)) continue;
      const why = r.state === 'connected' ? `waiting for ${r.services.waiting.join(', ')}` : r.state;
      waiting.push(`${r.name} (${why}${r.lastError && r.state !== 'connected' ? `: ${r.lastError.message}` : ''})`);
    }
    return waiting.length > 0 ? `registries not ready: ${waiting.join('; ')}` : undefined;
  }

  /** The whole effective config for `/config`, the router part as the router runs it, secrets redacted. */
  private describeConfig(router: Record<string, unknown>): Record<string, unknown> {
    const { baseDir, node, listeners, admin, log, hijack, registries, tls, authz, telemetry } = this.current;
    return {
      ...describeSecurity(tls, authz, this.material),
      baseDir,
      node,
      listeners,
      admin,
      log,
      hijack: hijack ?? null,
      registries: registries.map((r) => ({
        ...r,
        ...(r.upstream ? { upstream: redactUrl(r.upstream) } : {}),
        options: redactOptions(r.options),
      })),
      router,
      telemetry: {
        accessLog: telemetry.accessLog ?? null,
        tracing: telemetry.tracing
          ? { ...telemetry.tracing, ...(telemetry.tracing.otlp ? { otlp: redactUrl(telemetry.tracing.otlp) } : {}) }
          : null,
        labelCaps: telemetry.labelCaps,
      },
    };
  }

  /** The sidecar's own figures on the router's `/stats`: build, process, registries, reloads, capture listeners. */
  private addMetrics(router: RouterHandle): void {
    const stats = router.stats;
    stats.collectProcessMetrics();
    stats.addCollected('meshport_build_info', 'meshport version, engine and Node.js version; always 1', 'gauge', () => [
      { labels: { version: SIDECAR_VERSION, engine: router.engine, node: process.version }, value: 1 },
    ]);
    const healths = () =>
      this.groups
        .flatMap((g) => g.set.entries)
        .flatMap((r) =>
          r.health ? [{ labels: { registry: r.config.name, type: r.config.type }, m: r.health.metrics() }] : [],
        );
    stats.addCollected(
      'meshport_registry_up',
      'Whether the registry session is connected (1) or not (0)',
      'gauge',
      () => healths().map(({ labels, m }) => ({ labels, value: m.up ? 1 : 0 })),
    );
    stats.addCollected(
      'meshport_registry_state',
      'The registry session state: 1 on the current one (connecting, connected, reconnecting)',
      'gauge',
      () =>
        healths().flatMap(({ labels, m }) =>
          (['connecting', 'connected', 'reconnecting'] as const).map((state) => ({
            labels: { ...labels, state },
            value: m.state === state ? 1 : 0,
          })),
        ),
    );
    stats.addCollected(
      'meshport_registry_state_changes_total',
      'Connection state changes of the registry adapter, by the state entered (connected, disconnected, expired)',
      'counter',
      () =>
        healths().flatMap(({ labels, m }) =>
          Object.entries(m.changes).map(([state, n]) => ({ labels: { ...labels, state }, value: n })),
        ),
    );
    stats.addCollected(
      'meshport_registry_last_connected_timestamp_seconds',
      'When the registry session last became connected (Unix time)',
      'gauge',
      () =>
        healths().flatMap(({ labels, m }) =>
          m.lastConnectedAt === undefined ? [] : [{ labels, value: m.lastConnectedAt / 1000 }],
        ),
    );
    stats.addCollected(
      'meshport_registry_connection_errors_total',
      'Failures to connect or stay connected to the registry',
      'counter',
      () => healths().map(({ labels, m }) => ({ labels, value: m.errors })),
    );
    stats.addCollected(
      'meshport_registry_provider_reports_total',
      'Provider lists the registry reported for the services the sidecar routes itself',
      'counter',
      () => healths().map(({ labels, m }) => ({ labels, value: m.reports })),
    );
    stats.addCollected('meshport_reloads_total', 'Config reloads (SIGHUP), by result (ok, failed)', 'counter', () => [
      { labels: { result: 'ok' }, value: this.reloads.ok },
      { labels: { result: 'failed' }, value: this.reloads.failed },
    ]);
    const kinds = ['access', 'span'] as const;
    stats.addCollected(
      'meshport_telemetry_exported_total',
      'Access log lines (kind access) and spans (kind span) delivered to their targets',
      'counter',
      () => kinds.map((kind) => ({ labels: { kind }, value: this.telemetry?.counters.exported[kind] ?? 0 })),
    );
    stats.addCollected(
      'meshport_telemetry_dropped_total',
      'Access log lines and spans lost: a queue full, a failed write or export (logged once per failure spell)',
      'counter',
      () => kinds.map((kind) => ({ labels: { kind }, value: this.telemetry?.counters.dropped[kind] ?? 0 })),
    );
    stats.addCollected(
      'meshport_capture_connections_total',
      'Connections the capture listeners took, by listener and outcome (routed, passed_through, refused)',
      'counter',
      () =>
        [...this.captures].flatMap(([listener, c]) => [
          { labels: { listener, outcome: 'routed' }, value: c.counters.routed },
          { labels: { listener, outcome: 'passed_through' }, value: c.counters.passedThrough },
          { labels: { listener, outcome: 'refused' }, value: c.counters.refused },
        ]),
    );
  }

  /** Where a listener is bound: `outbound`, `inbound`, `admin`, a capture listener, or a registry's facade by name. */
  address(
    what: 'outbound' | 'inbound' | 'admin' | 'outboundCapture' | 'inboundCapture' | { facade: string },
  ): HostPort {
    if (what === 'outboundCapture' || what === 'inboundCapture') {
      const capture = this.captures.get(what);
      if (!capture) throw new Error(`no ${what} listener: the config has no hijack key`);
      return capture.address();
    }
    if (typeof what === 'object') {
      const facade = this.registry(what.facade)?.facade;
      if (!facade) throw new Error(`registry ${what.facade} has no running facade`);
      return facade.address();
    }
    if (!this.router) throw new Error('the sidecar is not running');
    const { address, port } = this.router.address(what);
    return { host: address, port };
  }

  /**
   * Drains: the facades close and the registry sessions end first, so apps stop learning meshport's addresses and
   * other pods see this pod's ephemeral registrations go; then the router finishes the calls still in flight.
   */
  stop(drainMs?: number): Promise<void> {
    this.stopping ??= (async () => {
      await this.reloading;
      this.watcher?.close();
      this.watcher = undefined;
      await Promise.all([...this.captures.values()].map((c) => c.close()));
      await Promise.allSettled(this.groups.splice(0).map((g) => g.set.close()));
      this.book.close();
      await this.router?.drain(drainMs);
      // The lines of the last calls, once the router has handed them over: delivered within a bounded wait.
      await this.telemetry?.close(TELEMETRY_FLUSH_MS);
    })();
    return this.stopping;
  }

  /**
   * Applies a new config without a restart: `next` is the config, or the path of the config file to read again. An
   * invalid file is logged (its file, line and key) and changes nothing. Otherwise:
   *
   * - The router is not touched: its listeners, connections and calls in flight carry on, reading the same route table.
   * - Registries are diffed by entry, not closed and started wholesale. Closing everything and starting it again would
   *   also be correct for the route table (the grace covers the gap), but every facade would drop its apps' registry
   *   sessions, and a ZooKeeper client losing its session loses its ephemeral registrations and watches; so a group
   *   of entries (a registry with the sofa-mesh facades that go through it) whose config is unchanged keeps running,
   *   facade, port, sessions and all. A changed group is closed first (its facade may keep its address, which must be
   *   free before the new one binds) and then started again; a removed one is closed; a new one is started. A file
   *   registry that lists no `services` is always restarted: it has no facade to disturb, and this is how a reload
   *   picks up services added to its file since the start.
   * - Each closed registry's route reports are forgotten; routes only it listed go after the usual grace, and a
   *   restarted registry that reports them again within it keeps them without a gap.
   * - If a new group fails to start, the groups started by this reload are closed, the closed old ones are started
   *   again, and the result says why (ok: false).
   * - Listener addresses, the admin port, hijack, node.ip and router settings need a restart: a difference is logged
   *   as a warning and the old values stay in effect. The log level applies at once.
   */
  reload(next: SidecarConfig | string): Promise<ReloadResult> {
    const run = this.reloading
      .then(() => this.reloadNow(next))
      .then((result) => {
        this.reloads[result.ok ? 'ok' : 'failed']++;
        return result;
      });
    this.reloading = run.catch(() => undefined);
    return run;
  }

  private async reloadNow(next: SidecarConfig | string): Promise<ReloadResult> {
    const result: ReloadResult = { ok: false, added: [], removed: [], restarted: [], unchanged: [], needRestart: [] };
    if (this.stopping || !this.router || !this.advertised) {
      result.error = new Error('the sidecar is not running');
      return result;
    }
    let config: SidecarConfig;
    try {
      config = typeof next === 'string' ? await loadConfig(next) : next;
    } catch (err) {
      result.error = err as Error;
      const { code, message } = err as { code?: string; message: string };
      this.logger.error(
        { code, error: message },
        'reload refused: the new config is invalid; still running on the old one',
      );
      return result;
    }
    const old = this.current;
    for (const key of RESTART_KEYS) {
      if (JSON.stringify(old[key]) !== JSON.stringify(config[key])) result.needRestart.push(key);
    }
    if (result.needRestart.length > 0) {
      this.logger.warn(
        { keys: result.needRestart },
        'reload: these keys changed but need a restart (bound listeners, router and capture settings); keeping the old values',
      );
    }
    // Turning mutual TLS on or off changes what the registrations publish (meshport.id): a restart. Anything else of
    // tls and authz (files, strict or permissive, trust domain, policy) applies now, to new connections and calls.
    const tlsOn = (c: SidecarConfig) => c.tls.mode !== 'off';
    const keepTls = tlsOn(old) !== tlsOn(config);
    if (keepTls) {
      result.needRestart.push('tls');
      this.logger.warn(
        { from: old.tls.mode, to: config.tls.mode },
        'reload: tls.mode turns mutual TLS on or off, which changes what is published upstream: it needs a restart; keeping the old tls',
      );
    }
    // The label caps size the router's metric maps, made at its start.
    if (JSON.stringify(old.telemetry.labelCaps) !== JSON.stringify(config.telemetry.labelCaps)) {
      result.needRestart.push('telemetry.labelCaps');
      this.logger.warn(
        { from: old.telemetry.labelCaps, to: config.telemetry.labelCaps },
        'reload: telemetry.labelCaps needs a restart; keeping the old caps',
      );
    }
    const effective: SidecarConfig = {
      ...config,
      telemetry: { ...config.telemetry, labelCaps: old.telemetry.labelCaps },
    };
    for (const key of RESTART_KEYS) (effective as unknown as Record<string, unknown>)[key] = old[key];
    if (keepTls) effective.tls = old.tls;
    const telemetryFiles = await telemetryFileProblems(effective, configSource(config));
    if (telemetryFiles.length > 0) {
      const error = new SidecarError('MESHPORT_CONFIG_INVALID', telemetryFiles.map((p) => p.message).join('\n'), {
        problems: telemetryFiles,
      });
      result.error = error;
      this.logger.error(
        { code: error.code, error: error.message },
        'reload refused: a telemetry file cannot be written; still running on the old config',
      );
      return result;
    }
    let securityChanged =
      JSON.stringify([old.tls, old.authz]) !== JSON.stringify([effective.tls, effective.authz]) && tlsOn(effective);
    // The files are read again before anything changes (a SIGHUP is also how an operator says "the files changed"
    // where no file event comes): other files that do not load refuse the reload; the same files that do not load now
    // (half written?) keep the certificate in use, as the watcher does.
    const newFiles = tlsFilesOf(effective.tls);
    const oldFiles = tlsFilesOf(old.tls);
    const otherFiles = JSON.stringify(newFiles) !== JSON.stringify(oldFiles);
    let material = this.material;
    if (newFiles) {
      try {
        material = loadTlsMaterial(newFiles);
      } catch (err) {
        const { code, message } = err as { code?: string; message: string };
        if (otherFiles) {
          result.error = err as Error;
          this.logger.error(
            { code, error: message },
            'reload refused: the new certificate files cannot be used; still running on the old config',
          );
          return result;
        }
        this.logger.warn(
          { code, error: message },
          'reload: the certificate files cannot be used; keeping the current certificate',
        );
      }
      if (!sameMaterial(material, this.material)) securityChanged = true;
      if (material && material.identity !== this.publishedIdentity)
        this.logger.warn(
          { identity: material.identity, published: this.publishedIdentity },
          'reload: the certificate has another identity than the one published with the services: consumers expect ' +
            'the published one (wrong-identity) until this sidecar restarts',
        );
    }

    // Which groups keep running: the same entries, in a group that a reload does not refresh.
    const wanted = registryGroups(config.registries);
    const wantedKeys = new Set(wanted.filter((g) => !refreshedOnReload(g)).map(groupKey));
    const keep = this.groups.filter((g) => wantedKeys.has(g.key));
    const close = this.groups.filter((g) => !keep.includes(g));
    const keptKeys = new Set(keep.map((g) => g.key));
    const start = wanted.filter((g) => !keptKeys.has(groupKey(g)));
    const oldNames = new Set(old.registries.map((r) => r.name));
    const newNames = new Set(config.registries.map((r) => r.name));
    const restarting = new Set(start.flat().map((r) => r.name));
    result.unchanged = keep.flatMap((g) => g.entries.map((r) => r.name));
    result.removed = [...oldNames].filter((n) => !newNames.has(n));
    result.added = [...newNames].filter((n) => !oldNames.has(n));
    result.restarted = [...oldNames].filter((n) => newNames.has(n) && restarting.has(n));

    await this.closeGroups(close);
    const started: RunningGroup[] = [];
    try {
      for (const entries of start) started.push(await this.startGroup(entries));
    } catch (err) {
      result.error = err as Error;
      await this.closeGroups(started);
      this.logger.error(
        { code: (err as { code?: string }).code, error: (err as Error).message },
        'reload failed: a registry of the new config did not start; restoring the old registries',
      );
      const restored: RunningGroup[] = [];
      for (const group of close) {
        try {
          restored.push(await this.startGroup(group.entries));
        } catch (again) {
          const names = group.entries.map((r) => r.name);
          this.logger.error(
            { registries: names, error: (again as Error).message },
            'an old registry did not start again; running without it',
          );
        }
      }
      this.groups = [...keep, ...restored];
      return { ...result, added: [], removed: [], restarted: [] };
    }
    // In the order of the new config, so address({ facade }) and the logs read as the file does.
    const order = new Map(config.registries.map((r, i) => [r.name, i]));
    const at = (g: RunningGroup) => Math.min(...g.entries.map((r) => order.get(r.name) ?? Infinity));
    this.groups = [...keep, ...started].sort((a, b) => at(a) - at(b));
    if (config.log.level !== old.log.level) {
      this.logger.level = config.log.level;
      result.logLevel = config.log.level;
    }
    this.current = effective;
    if (JSON.stringify(old.telemetry) !== JSON.stringify(effective.telemetry)) {
      // The targets swap at once (a new one is there before the router formats lines for it), then the old ones
      // take the late lines of the calls made before and deliver what they hold.
      const closing = this.telemetry?.apply(effective.telemetry);
      this.router.setTelemetry(routerTelemetryOf(effective.telemetry));
      await closing;
      result.telemetry = true;
    }
    if (securityChanged) {
      const rotated = !sameMaterial(material, this.material);
      this.material = material;
      if (newFiles && otherFiles) this.watch(newFiles);
      this.applySecurity();
      result.security = true;
      if (rotated && material)
        this.logger.info(
          {
            identity: material.identity,
            certificateExpires: certificateExpiry(material),
            certFile: newFiles?.certFile,
          },
          'certificate rotated',
        );
    }
    this.logReady(started);
    result.ok = true;
    const { ok: _ok, error: _error, ...changes } = result;
    this.logger.info(changes, 'reloaded');
    return result;
  }

  /** Stops on SIGTERM or SIGINT, once; `onStopped` runs after the drain. */
  stopOnSignals(onStopped: () => void): void {
    const onSignal = (signal: NodeJS.Signals) => {
      process.off('SIGTERM', onSignal);
      process.off('SIGINT', onSignal);
      this.logger.info({ signal }, 'signal received, draining');
      void this.stop().then(onStopped);
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  }

  /**
   * The listeners the kernel rules send hijacked connections to. The socket package loads only here: a sidecar on
   * registry takeover alone never needs the native addon.
   */
  private async startCapture(hijack: HijackConfig, router: RouterHandle): Promise<void> {
    const socket = require('@meshport/socket') as typeof import('@meshport/socket');
    const logger = this.logger.child({ part: 'capture' });
    const viaOriginalDst = (s: import('node:net').Socket): HostPort => {
      const { address, port } = socket.getOriginalDst(s);
      return { host: address, port };
    };
    const outbound = new CaptureListener({
      direction: 'outbound',
      listen: { host: '127.0.0.1', port: hijack.outboundCapturePort },
      originalDestination: viaOriginalDst,
      routeTable: this.book.table,
      adopt: (s) => router.adopt('outbound', s),
      relay: router.relay?.bind(router),
      logger,
    });
    this.captures.set('outboundCapture', outbound);
    await outbound.start();
    if (hijack.mode === 'connect-hook') await this.startCapture6(hijack, router, viaOriginalDst, logger);
    // Inbound is TPROXY in both tproxy and connect-hook modes (the hijack plan's choice): the destination is the
    // accepted socket's local address. Only redirect mode records it for SO_ORIGINAL_DST.
    const transparent = hijack.mode !== 'redirect';
    let server: import('node:net').Server | undefined;
    try {
      if (transparent) server = socket.transparentListen({ host: '0.0.0.0', port: hijack.inboundCapturePort });
    } catch (error) {
      const { code } = error as NodeJS.ErrnoException;
      const hint = code === 'EPERM' ? ': run meshport with CAP_NET_ADMIN (IP_TRANSPARENT)' : '';
      throw new SidecarError(
        'MESHPORT_CAPTURE_FAILED',
        `inbound capture on :${hijack.inboundCapturePort}: ${(error as Error).message}${hint}`,
        {
          cause: error,
        },
      );
    }
    const inbound = new CaptureListener({
      direction: 'inbound',
      listen: { host: '0.0.0.0', port: hijack.inboundCapturePort },
      server,
      originalDestination: transparent ? (s) => ({ host: s.localAddress!, port: s.localPort! }) : viaOriginalDst,
      routeTable: this.book.table,
      adopt: (s) => router.adopt('inbound', s),
      relay: router.relay?.bind(router),
      logger,
    });
    this.captures.set('inboundCapture', inbound);
    await inbound.start();
    logger.info(
      { mode: hijack.mode, outbound: outbound.address(), inbound: inbound.address() },
      'capture listeners ready',
    );
  }

  /**
   * The connect hook sends native IPv6 connects to [::1]:<outbound capture port> while something listens there
   * (packages/socket, connect6): this is that listener. A pod without IPv6 on loopback cannot bind it; its native IPv6
   * connects then go where they were going, and the log says so once.
   */
  private async startCapture6(
    hijack: HijackConfig,
    router: RouterHandle,
    originalDestination: (s: import('node:net').Socket) => HostPort,
    logger: Logger,
  ): Promise<void> {
    const outbound6 = new CaptureListener({
      direction: 'outbound',
      listen: { host: '::1', port: hijack.outboundCapturePort },
      originalDestination,
      routeTable: this.book.table,
      adopt: (s) => router.adopt('outbound', s),
      relay: router.relay?.bind(router),
      logger,
    });
    try {
      await outbound6.start();
      this.captures.set('outboundCapture6', outbound6);
    } catch (error) {
      logger.warn(
        { port: hijack.outboundCapturePort, err: (error as Error).message },
        'no outbound capture on [::1] (no IPv6 on loopback?): native IPv6 connects are not captured',
      );
    }
  }

  private registry(name: string) {
    for (const group of this.groups) {
      const running = group.set.get(name);
      if (running) return running;
    }
    return undefined;
  }

  private async startGroup(entries: RegistryConfig[]): Promise<RunningGroup> {
    const { inbound, outbound } = this.advertised!;
    const logger = this.logger.child({ part: 'registry' });
    const set = await startRegistries(entries, {
      logger,
      health: { logger },
      takeoverFor: (name, rules) =>
        new SidecarTakeover(this.book, name, inbound, outbound, rules, this.publishedIdentity),
    });
    return { key: groupKey(entries), entries, set };
  }

  /** Closes the groups, then forgets their route reports (after the close, so no late report of theirs comes back). */
  private async closeGroups(groups: RunningGroup[]): Promise<void> {
    await Promise.allSettled(groups.map((g) => g.set.close()));
    for (const group of groups) for (const entry of group.entries) this.book.forget(entry.name);
  }

  private logReady(groups: RunningGroup[]): void {
    for (const r of groups.flatMap((g) => g.set.entries)) {
      const facade = r.facade?.address();
      // `state`: started is not connected; a registry that cannot connect is warned about on its own (RegistryHealth).
      const state = r.health?.state;
      const upstream = r.config.upstream && redactUrl(r.config.upstream);
      this.logger.info(
        { registry: r.config.name, type: r.config.type, facade, upstream, ...(state ? { state } : {}) },
        'registry ready',
      );
    }
  }

  /** The outbound listener as an app in this pod dials it: a wildcard bind is reached on loopback. */
  private dialable(listen: HostPort, port: number): HostPort {
    const host = listen.host === '0.0.0.0' || listen.host === '::' ? '127.0.0.1' : listen.host;
    return { host, port };
  }
}

function sameMaterial(a: TlsMaterial | undefined, b: TlsMaterial | undefined): boolean {
  return a?.certChain === b?.certChain && a?.key === b?.key && a?.trustBundle === b?.trustBundle;
}

/** The version of this package, for meshport_build_info. */
const SIDECAR_VERSION: string = (() => {
  try {
    return (require('../../package.json') as { version: string }).version;
  } catch {
    return 'unknown';
  }
})();

/** Option keys whose values are secrets, shown as `***` on `/config`. */
const SECRET_KEY = /pass(word)?|secret|token|credential|private|auth/i;

function redactOptions(options: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(
    Object.entries(options).map(([k, v]) => {
      if (SECRET_KEY.test(k)) return [k, '***'];
      if (typeof v === 'string') return [k, redactUrl(v)];
      if (v && typeof v === 'object' && !Array.isArray(v)) return [k, redactOptions(v as Record<string, unknown>)];
      return [k, v];
    }),
  );
}

/** Registry entries that start and stop together, with what identifies their config. */
interface RunningGroup {
  readonly key: string;
  readonly entries: RegistryConfig[];
  readonly set: RegistrySet;
}

/**
 * The entries in groups tied by `via`: each registry with the sofa-mesh facades that publish through it (the config
 * only lets `via` name a registry that is not itself sofa-mesh, so a group is one registry and its facades).
 */
function registryGroups(entries: RegistryConfig[]): RegistryConfig[][] {
  const groups: RegistryConfig[][] = [];
  const byName = new Map<string, RegistryConfig[]>();
  for (const entry of entries) {
    if (entry.type === 'sofa-mesh') continue;
    const group = [entry];
    groups.push(group);
    byName.set(entry.name, group);
  }
  for (const entry of entries) {
    if (entry.type !== 'sofa-mesh') continue;
    const group = byName.get(entry.via!);
    if (group) group.push(entry);
    else groups.push([entry]); // not from parseConfig; startRegistries reports it
  }
  return groups;
}

function groupKey(entries: RegistryConfig[]): string {
  return JSON.stringify(entries);
}

/** A file registry that routes every service of its file reads the list at start: a reload restarts it to read it again. */
function refreshedOnReload(entries: RegistryConfig[]): boolean {
  return entries.some((r) => r.type === 'file' && !r.services && !r.facade);
}

/**
 * The hijack rules exclude only `hijack.uid` from capture: a sidecar running as any other uid has its own connections
 * (to remote sidecars, to the real registry) captured and sent back to itself. Said at start, not refused: a test or
 * a hand-run sidecar may run without the rules in place.
 */
function warnIfNotHijackUid(hijack: HijackConfig, logger: Logger, uid = process.getuid?.()): void {
  if (uid === undefined || uid === hijack.uid) return;
  logger.warn(
    { uid, hijackUid: hijack.uid, mode: hijack.mode },
    `meshport runs as uid ${uid}, not hijack.uid ${hijack.uid}: the hijack rules exclude only uid ${hijack.uid}, so meshport's own ` +
      `connections are captured and sent back to it (a loop). Run it as uid ${hijack.uid} (runAsUser) or set hijack.uid to ${uid} ` +
      'and apply the rules with that --uid',
  );
}
