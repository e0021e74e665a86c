// Turns the `registries` list of the config into running adapters, facades and subscriptions, built-in or plugin.

import { readFile } from 'node:fs/promises';
import net from 'node:net';
import { pathToFileURL } from 'node:url';
import {
  ConnectionStateCell,
  FileRegistry,
  withServiceKey,
  type ConnectionError,
  type ConnectionState,
  type RegistryAdapter,
  type RegistryFacade,
  type RegistryLogger,
  type ProviderUrl,
  type RegistryPlugin,
  type RuleUrls,
  type RulesDialect,
  type Takeover,
  type Unsubscribe,
} from '@meshport/registry-core';
import type { ZooKeeperLayout } from '@meshport/registry-zookeeper';
import type { RegistryConfig } from './config';
import { SidecarError } from './errors';

/** One running `registries` entry. */
export interface RunningRegistry {
  readonly config: RegistryConfig;
  /** The upstream adapter, when something needs it: `services`, a sofa-mesh `via`, or no facade. */
  readonly adapter: RegistryAdapter | undefined;
  readonly facade: RegistryFacade | undefined;
  /** How its upstream session stands; undefined for an entry with no session of its own (see RegistrySet.status). */
  readonly health: RegistryHealth | undefined;
}

export interface RegistryWiring {
  logger: RegistryLogger;
  /** Where connection warnings go (a registry that cannot connect, is lost, is back); and how often. */
  health?: RegistryHealthOptions;
  /**
   * The Takeover for one entry (facades rewrite through it; subscriptions report through it). `rules` watches an
   * interface's governance rules in that entry's registry, when the registry keeps any.
   */
  takeoverFor(name: string, rules: RuleSource | undefined): Takeover | ReportingTakeover;
}

/**
 * A Takeover that also takes a subscription's answer on its own: what the sidecar subscribes itself (`services`, a
 * file registry) goes to the route book only, without the per-identity list a facade would hand its app, which
 * nobody reads there (at 10k endpoints that list was a rewritten copy of every URL on every change).
 */
export interface ReportingTakeover extends Takeover {
  providersReported(iface: string, real: ProviderUrl[]): void;
}

/** Where the rules of the interfaces an entry routes come from: `watch` starts watching (once per interface). */
export interface RuleSource {
  watch(iface: string, dialect: RulesDialect, onChange: (rules: RuleUrls) => void): void;
}

/** The running registries of one sidecar, closed together. */
export class RegistrySet {
  constructor(
    readonly entries: RunningRegistry[],
    private readonly unsubscribes: Unsubscribe[],
    private readonly adapters: RegistryAdapter[],
  ) {}

  get(name: string): RunningRegistry | undefined {
    return this.entries.find((r) => r.config.name === name);
  }

  /**
   * Each entry as the `/registries` page shows it. An entry without a session of its own reports how it reaches its
   * registry instead: a sofa-mesh facade through its `via` entry (that entry's state), a facade with nothing to
   * subscribe as `passthrough` (each app session is passed through to the upstream, which answers the app itself).
   */
  status(): RegistryStatus[] {
    return this.entries.map((r) => {
      if (r.health) return r.health.status(r.facade);
      const via = r.config.type === 'sofa-mesh' ? this.get(r.config.via!)?.health : undefined;
      const base = {
        name: r.config.name,
        type: r.config.type,
        ...(r.config.upstream ? { upstream: redactUrl(r.config.upstream) } : {}),
      };
      const facade = facadeAddress(r.facade);
      if (via) {
        const { state, since, lastConnected, lastError, ready } = via.status(undefined);
        return {
          ...base,
          via: r.config.via,
          facade,
          state,
          since,
          lastConnected,
          lastError,
          ready,
          services: { routed: [], waiting: [] },
        };
      }
      return {
        ...base,
        facade,
        state: 'passthrough',
        since: this.started,
        ready: true,
        services: { routed: [], waiting: [] },
      };
    });
  }

  private readonly started = new Date().toISOString();

  /** Subscriptions, then facades (the apps stop talking), then adapters (ephemeral registrations go with them). */
  async close(): Promise<void> {
    this.entries.forEach((r) => r.health?.close());
    this.unsubscribes.splice(0).forEach((u) => u());
    await Promise.allSettled(this.entries.map((r) => r.facade?.close()));
    await Promise.allSettled(this.adapters.map((a) => a.close()));
  }
}

/**
 * Starts every entry: adapters first, so a sofa-mesh entry's `via` is running whatever its position in the list,
 * then facades and subscriptions. On any failure, what was started is closed again and the error is thrown.
 */
export async function startRegistries(entries: RegistryConfig[], wiring: RegistryWiring): Promise<RegistrySet> {
  const adapters = new Map<string, RegistryAdapter>();
  const running: RunningRegistry[] = [];
  const unsubscribes: Unsubscribe[] = [];
  const opened: RegistryAdapter[] = [];
  const set = new RegistrySet(running, unsubscribes, opened);
  const healths = new Map<string, RegistryHealth>();
  try {
    const needed = new Set(entries.filter((e) => e.type === 'sofa-mesh').map((e) => e.via!));
    for (const entry of entries) {
      if (entry.type === 'sofa-mesh') continue;
      if (entry.facade && !entry.services && !needed.has(entry.name)) continue; // the facade passes through; no session of our own
      const adapter = await createAdapter(entry, wiring.logger);
      adapters.set(entry.name, adapter);
      opened.push(adapter);
      // At once, before the first connection can happen: every state change counts and is seen.
      healths.set(entry.name, new RegistryHealth(entry, adapter, wiring.health));
    }
    for (const entry of entries) {
      const adapter = adapters.get(entry.name);
      const health = healths.get(entry.name);
      const rules =
        entry.type === 'zookeeper' ? ruleSource(entry, adapter, wiring.logger, opened, unsubscribes) : undefined;
      const takeover = wiring.takeoverFor(entry.name, rules);
      // A facade with no session of its own upstream: its state is what the app connections' dials see, and a probe
      // until the first one succeeds, so a registry nobody can reach is seen before an app tries.
      const passthrough =
        !adapter && entry.facade && entry.type !== 'sofa-mesh' ? new PassthroughUpstream(entry) : undefined;
      if (passthrough) {
        healths.set(entry.name, new RegistryHealth(entry, passthrough, wiring.health));
        healths.get(entry.name)!.expect([]);
        unsubscribes.push(() => passthrough.close());
      }
      const facade = entry.facade ? createFacade(entry, takeover, adapters, wiring.logger, passthrough) : undefined;
      running.push({ config: entry, adapter, facade, health: health ?? healths.get(entry.name) });
      await facade?.start();
      if (adapter) {
        const services = await servicesToRoute(entry);
        health?.expect(services);
        // Reported per service: two identities of one interface subscribed here are two answers, not one. A URL
        // filed under the service without naming it is that service's provider.
        const report =
          'providersReported' in takeover
            ? takeover.providersReported.bind(takeover)
            : takeover.providersRead.bind(takeover);
        // All at once: each subscribe waits for the adapter's first connection (up to its session timeout), so one
        // after the other, a registry that is down held the start for that wait times the number of services.
        const subscribed = await Promise.allSettled(
          services.map((service) =>
            adapter.subscribe(service, (urls) => {
              health?.reported(service);
              report(
                service,
                urls.map((u) => withServiceKey(u, service)),
              );
            }),
          ),
        );
        for (const result of subscribed) if (result.status === 'fulfilled') unsubscribes.push(result.value);
        const failed = subscribed.find((r): r is PromiseRejectedResult => r.status === 'rejected');
        if (failed) throw failed.reason;
      }
    }
    return set;
  } catch (err) {
    healths.forEach((h) => h.close());
    await set.close();
    throw err;
  }
}

/**
 * The rules of a ZooKeeper entry, watched through its adapter; a facade-only entry, which needs no session of its own
 * for the app's traffic, gets one for the rules when the first interface is routed. Watch failures are logged: rules
 * are then missing, never the route.
 */
function ruleSource(
  entry: RegistryConfig,
  existing: RegistryAdapter | undefined,
  logger: RegistryLogger,
  opened: RegistryAdapter[],
  unsubscribes: Unsubscribe[],
): RuleSource {
  let adapter: Promise<RegistryAdapter> | undefined = existing && Promise.resolve(existing);
  const watched = new Set<string>();
  let closed = false;
  unsubscribes.push(() => {
    closed = true;
  });
  return {
    watch(iface, dialect, onChange) {
      const id = `${iface} ${dialect}`;
      if (closed || watched.has(id)) return;
      watched.add(id);
      adapter ??= createAdapter(entry, logger).then((created) => {
        // Made after the set closed: nobody else will close it.
        if (closed) void created.close();
        else opened.push(created);
        return created;
      });
      adapter
        .then(async (a) => {
          if (closed || !a.watchRules) return;
          const stop = await a.watchRules(iface, (rules) => !closed && onChange(rules), dialect);
          if (closed) stop();
          else unsubscribes.push(stop);
        })
        .catch((error: Error) => {
          watched.delete(id);
          logger.warn(
            { registry: entry.name, iface, dialect, err: error.message },
            'cannot watch the registry rules of this interface; routing without them',
          );
        });
    },
  };
}

// Registry packages load when the config names their type: a sidecar on ZooKeeper alone does not carry ioredis or the
// SOFA codecs in memory (about 9 MB of the 80 MB budget).
const zookeeperPackage = () => require('@meshport/registry-zookeeper') as typeof import('@meshport/registry-zookeeper');
const redisPackage = () => require('@meshport/registry-redis') as typeof import('@meshport/registry-redis');
const sofaPackage = () => require('@meshport/registry-sofa') as typeof import('@meshport/registry-sofa');

async function createAdapter(entry: RegistryConfig, logger: RegistryLogger): Promise<RegistryAdapter> {
  const o = entry.options;
  switch (entry.type) {
    case 'file':
      return new FileRegistry({ path: entry.upstream!, logger });
    case 'zookeeper':
      return new (zookeeperPackage().ZooKeeperRegistry)({
        connectString: entry.upstream!,
        layout: o.layout as ZooKeeperLayout | undefined,
        root: o.root as string | undefined,
        sessionTimeoutMs: o.sessionTimeoutMs as number | undefined,
        logger,
      });
    case 'redis':
      return new (redisPackage().RedisRegistry)({
        url: redisUrl(entry.upstream!),
        root: o.root as string | undefined,
        logger,
      });
    case 'sofa-registry':
      return new (sofaPackage().SofaRegistryClient)({ ...(o as object), servers: entry.upstream!, logger });
    default:
      return (await loadPlugin(entry.type)).createRegistryAdapter({
        name: entry.name,
        upstream: entry.upstream,
        options: o,
        logger,
      });
  }
}

function createFacade(
  entry: RegistryConfig,
  takeover: Takeover,
  adapters: Map<string, RegistryAdapter>,
  logger: RegistryLogger,
  passthrough: PassthroughUpstream | undefined,
): RegistryFacade {
  const onUpstream = passthrough && ((error: Error | undefined) => passthrough.dialed(error));
  const listen = entry.facade!;
  // Loopback clients only unless the entry says otherwise (the facade closes other peers at accept).
  const allowRemote = entry.allowRemote;
  switch (entry.type) {
    case 'zookeeper':
      // The app's own client applies any chroot to the paths it sends; the facade only needs the servers.
      return new (zookeeperPackage().ZooKeeperFacade)({
        listen,
        upstream: entry.upstream!.replace(/\/.*$/, ''),
        takeover,
        logger,
        allowRemote,
        onUpstream,
      });
    case 'redis':
      return new (redisPackage().RedisFacade)({
        listen,
        upstream: entry.upstream!.replace(/^redis:\/\//, ''),
        takeover,
        logger,
        allowRemote,
        onUpstream,
      });
    case 'sofa-mesh':
      return new (sofaPackage().SofaMeshApiFacade)({
        listen,
        via: adapters.get(entry.via!)!,
        takeover,
        app: entry.app,
        logger,
        allowRemote,
      });
    default:
      throw new SidecarError('MESHPORT_CONFIG_INVALID', `registry '${entry.name}': type ${entry.type} has no facade`);
  }
}

/** The services subscribed without the app asking: the entry's list, or everything in a file registry. */
async function servicesToRoute(entry: RegistryConfig): Promise<string[]> {
  if (entry.services) return entry.services;
  if (entry.type !== 'file') return [];
  try {
    const doc = JSON.parse(await readFile(entry.upstream!, 'utf8')) as { services?: Record<string, unknown> };
    return Object.keys(doc.services ?? {});
  } catch {
    return []; // a missing or broken file: the file registry itself reports it
  }
}

/** The warnings of RegistryHealth and their pace. */
export interface RegistryHealthOptions {
  logger?: { warn(detail: object, message: string): void; info(detail: object, message: string): void };
  /** A registry that has not connected this long after it started (or after it was lost) is warned about even without an error. @default 5000 */
  warnAfterMs?: number;
  /** While a registry stays down, the warning is repeated this often. @default 60000 */
  warnEveryMs?: number;
}

export const REGISTRY_HEALTH_DEFAULTS = { warnAfterMs: 5_000, warnEveryMs: 60_000, checkEveryMs: 500 } as const;

/**
 * `connecting` until the first connection, `connected`, then `reconnecting` while a connection once made is down
 * (routes stay on the last known providers); `passthrough` for an entry with no session of its own.
 */
export type RegistryHealthState = 'connecting' | 'connected' | 'reconnecting' | 'passthrough';

/** One entry on the `/registries` admin page. */
export interface RegistryStatus {
  name: string;
  type: string;
  /** As configured, with any password replaced by `***`. */
  upstream?: string;
  /** Where its facade listens, when it has one. */
  facade?: { host: string; port: number };
  /** The entry a sofa-mesh facade publishes and subscribes through; its state is that entry's. */
  via?: string;
  state: RegistryHealthState;
  /** When it entered that state (ISO 8601). */
  since: string;
  /** When it last became connected, if ever. */
  lastConnected?: string;
  /** The last failure to connect or stay connected, kept after a reconnect. */
  lastError?: { message: string; code?: string; at: string; count: number };
  /** Connected once and every service it must route reported once: what `/ready` waits for. Stays true after. */
  ready: boolean;
  /** The services it subscribes itself (`services`, a file registry's list), and those not reported yet. */
  services: { routed: string[]; waiting: string[] };
  /** Changes of the adapter's connection state, by the state entered. */
  stateChanges?: Record<string, number>;
  /** Provider lists the registry has reported for the services it routes. */
  reports?: number;
}

/**
 * Watches one adapter's connection for the operator: the state shown on `/registries` and `/stats`, readiness, and
 * warnings at a bounded pace. A registry that cannot connect is warned about once its first error is known (or
 * after warnAfterMs without one), then every warnEveryMs while it stays down; a lost connection at once; and when it
 * is back after a warning, that is logged too.
 */
export class RegistryHealth {
  private current: RegistryHealthState = 'connecting';
  private since = Date.now();
  private lastConnectedAt: number | undefined;
  private wasReady = false;
  private readonly routed: string[] = [];
  private readonly waiting = new Set<string>();
  private expecting = true;
  private lastWarnAt: number | undefined;
  private readonly changes: Record<string, number> = {};
  private reportCount = 0;
  private readonly timer: NodeJS.Timeout;
  private readonly stopListening: Unsubscribe;
  private readonly warnAfterMs: number;
  private readonly warnEveryMs: number;

  constructor(
    readonly entry: RegistryConfig,
    private readonly adapter: WatchedConnection,
    private readonly options: RegistryHealthOptions = {},
  ) {
    this.warnAfterMs = options.warnAfterMs ?? REGISTRY_HEALTH_DEFAULTS.warnAfterMs;
    this.warnEveryMs = options.warnEveryMs ?? REGISTRY_HEALTH_DEFAULTS.warnEveryMs;
    this.stopListening = adapter.onStateChange((state) => this.onState(state));
    if (adapter.state === 'connected') this.onState('connected');
    this.timer = setInterval(() => this.check(), REGISTRY_HEALTH_DEFAULTS.checkEveryMs);
    this.timer.unref();
  }

  get state(): RegistryHealthState {
    return this.current;
  }

  /** Connected once and every service to route reported once; once true, true for good (routes outlive an outage). */
  get ready(): boolean {
    this.wasReady ||= this.lastConnectedAt !== undefined && !this.expecting && this.waiting.size === 0;
    return this.wasReady;
  }

  /** The services this entry subscribes itself: readiness waits for each to be reported once. */
  expect(services: string[]): void {
    this.routed.push(...services);
    for (const s of services) this.waiting.add(s);
    this.expecting = false;
  }

  reported(service: string): void {
    this.reportCount++;
    this.waiting.delete(service);
  }

  status(facade: RegistryFacade | undefined): RegistryStatus {
    const error = this.adapter.lastError;
    const iso = (ms: number) => new Date(ms).toISOString();
    return {
      name: this.entry.name,
      type: this.entry.type,
      ...(this.entry.upstream ? { upstream: redactUrl(this.entry.upstream) } : {}),
      ...(facade ? { facade: facadeAddress(facade) } : {}),
      state: this.current,
      since: iso(this.since),
      ...(this.lastConnectedAt !== undefined ? { lastConnected: iso(this.lastConnectedAt) } : {}),
      ...(error
        ? {
            lastError: {
              message: error.message,
              ...(error.code ? { code: error.code } : {}),
              at: iso(error.at),
              count: error.count,
            },
          }
        : {}),
      ready: this.ready,
      services: { routed: [...this.routed], waiting: [...this.waiting] },
      stateChanges: { ...this.changes },
      reports: this.reportCount,
    };
  }

  /** For `/stats`: the figures behind the registry metrics. */
  metrics(): {
    up: boolean;
    state: RegistryHealthState;
    lastConnectedAt?: number;
    changes: Record<string, number>;
    errors: number;
    reports: number;
  } {
    return {
      up: this.current === 'connected',
      state: this.current,
      lastConnectedAt: this.lastConnectedAt,
      changes: this.changes,
      errors: this.adapter.lastError?.count ?? 0,
      reports: this.reportCount,
    };
  }

  close(): void {
    clearInterval(this.timer);
    this.stopListening();
  }

  private onState(state: ConnectionState): void {
    this.changes[state] = (this.changes[state] ?? 0) + 1;
    const now = Date.now();
    if (state === 'connected') {
      if (this.current === 'connected') return;
      const wasDown = this.lastWarnAt !== undefined;
      const downForMs = now - this.since;
      this.current = 'connected';
      this.since = this.lastConnectedAt = now;
      this.lastWarnAt = undefined;
      if (wasDown)
        this.options.logger?.info(
          { registry: this.entry.name, type: this.entry.type, downForMs },
          'registry connected again',
        );
      return;
    }
    if (this.current !== 'connected') return; // still down: an expiry while disconnected changes nothing here
    this.current = 'reconnecting';
    this.since = now;
    this.warn('registry connection lost; routing on the last known providers while reconnecting', now);
  }

  private check(): void {
    if (this.current === 'connected') return;
    const now = Date.now();
    if (this.lastWarnAt === undefined) {
      const error = this.adapter.lastError;
      if ((error && error.at >= this.since) || now - this.since >= this.warnAfterMs) {
        this.warn(
          this.current === 'connecting'
            ? 'registry cannot connect'
            : 'registry still down; routing on the last known providers',
          now,
        );
      }
    } else if (now - this.lastWarnAt >= this.warnEveryMs) {
      this.warn(
        this.current === 'connecting'
          ? 'registry still cannot connect'
          : 'registry still down; routing on the last known providers',
        now,
      );
    }
  }

  private warn(message: string, now: number): void {
    this.lastWarnAt = now;
    const error = this.adapter.lastError;
    this.options.logger?.warn(
      {
        registry: this.entry.name,
        type: this.entry.type,
        upstream: this.entry.upstream && redactUrl(this.entry.upstream),
        state: this.current,
        downForMs: now - this.since,
        ...(error ? { error: error.message } : {}),
      },
      message,
    );
  }
}

/** What RegistryHealth watches: an adapter's connection, or a passthrough facade's upstream. */
export type WatchedConnection = Pick<RegistryAdapter, 'state' | 'lastError' | 'onStateChange'>;

/** How a PassthroughUpstream probes until an upstream first accepts. */
export const PASSTHROUGH_PROBE_DEFAULTS = { connectTimeoutMs: 2_000, minDelayMs: 500, maxDelayMs: 5_000 } as const;

/**
 * The upstream of a facade that has no session of its own: `connected` while the app connections' dials to it
 * succeed, `disconnected` (with the error) when one fails. Until the first success it also probes with a bare TCP
 * connect (closed at once), backing off to once every 5 s, so an upstream that refuses or does not resolve is seen
 * before any app connects; after that the apps' own dials tell, and nothing is sent on our own.
 */
export class PassthroughUpstream implements WatchedConnection {
  private readonly cell = new ConnectionStateCell('disconnected');
  private readonly targets: { host: string; port: number }[];
  private timer: NodeJS.Timeout | undefined;
  private probing: net.Socket | undefined;
  private attempt = 0;
  private closed = false;

  constructor(entry: RegistryConfig) {
    this.targets = upstreamAddresses(entry);
    this.probe(0);
  }

  get state(): ConnectionState {
    return this.cell.value;
  }

  get lastError(): ConnectionError | undefined {
    return this.cell.lastError;
  }

  onStateChange(listener: (state: ConnectionState) => void): Unsubscribe {
    return this.cell.onChange(listener);
  }

  /** An app connection's dial (or a probe): undefined when it connected, else why not. */
  dialed(error: Error | undefined): void {
    if (this.closed) return;
    if (error) {
      this.cell.fail(error);
      this.cell.set('disconnected');
    } else {
      this.cell.set('connected');
      clearTimeout(this.timer);
      this.probing?.destroy();
    }
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    this.probing?.destroy();
    this.cell.clear();
  }

  private probe(index: number): void {
    if (this.closed || this.cell.value === 'connected' || this.targets.length === 0) return;
    const target = this.targets[index]!;
    const socket = (this.probing = net.connect({ host: target.host, port: target.port }));
    socket.setTimeout(PASSTHROUGH_PROBE_DEFAULTS.connectTimeoutMs, () =>
      socket.destroy(Object.assign(new Error('connect timed out'), { code: 'ETIMEDOUT' })),
    );
    socket.once('connect', () => {
      socket.destroy();
      this.dialed(undefined);
    });
    socket.once('error', (error) => {
      if (this.closed || this.cell.value === 'connected') return;
      if (index + 1 < this.targets.length) return this.probe(index + 1);
      this.dialed(error);
      const delay = Math.min(
        PASSTHROUGH_PROBE_DEFAULTS.minDelayMs * 2 ** this.attempt++,
        PASSTHROUGH_PROBE_DEFAULTS.maxDelayMs,
      );
      this.timer = setTimeout(() => this.probe(0), delay);
      this.timer.unref();
    });
  }
}

/** The host:port pairs of an entry's upstream: a ZooKeeper ensemble (chroot dropped) or a Redis address or URL. */
function upstreamAddresses(entry: RegistryConfig): { host: string; port: number }[] {
  const text = (entry.upstream ?? '')
    .replace(/^[a-z]+:\/\//, '')
    .replace(/^[^@/]*@/, '')
    .replace(/\/.*$/, '');
  const fallback = entry.type === 'redis' ? 6379 : 2181;
  return text
    .split(',')
    .filter((part) => part !== '')
    .map((part) => {
      const m = /^\[?([^\]]*?)\]?(?::(\d+))?$/.exec(part.trim());
      return { host: m?.[1] ?? part, port: m?.[2] ? Number(m[2]) : fallback };
    });
}

function facadeAddress(facade: RegistryFacade | undefined): { host: string; port: number } | undefined {
  try {
    return facade?.address();
  } catch {
    return undefined; // not started yet
  }
}

/** `redis://user:secret@host` (or `user:secret@host`) -> `redis://user:***@host`; text without a password is kept. */
export function redactUrl(text: string): string {
  return text.replace(/(^|\/\/)([^/@:\s,]*:)[^/@\s]*@/g, '$1$2***@');
}

function redisUrl(upstream: string): string {
  return upstream.startsWith('redis://') || upstream.startsWith('rediss://') ? upstream : `redis://${upstream}`;
}

/** Loads a plugin by absolute path (the config resolved relative ones) or package name, CommonJS or ES module. */
export async function loadPlugin(type: string): Promise<RegistryPlugin> {
  let resolved: string;
  try {
    resolved = require.resolve(type, { paths: [process.cwd(), __dirname] });
  } catch (err) {
    throw new SidecarError(
      'MESHPORT_PLUGIN_INVALID',
      `registry plugin '${type}' cannot be found: ${(err as Error).message.split('\n')[0]}`,
      {
        cause: err,
      },
    );
  }
  let mod: Record<string, unknown>;
  try {
    mod = (await import(pathToFileURL(resolved).href)) as Record<string, unknown>;
  } catch (err) {
    throw new SidecarError(
      'MESHPORT_PLUGIN_INVALID',
      `registry plugin '${type}' failed to load: ${(err as Error).message}`,
      { cause: err },
    );
  }
  const plugin = (typeof mod.createRegistryAdapter === 'function' ? mod : mod.default) as
    | Partial<RegistryPlugin>
    | undefined;
  if (typeof plugin?.createRegistryAdapter !== 'function') {
    throw new SidecarError(
      'MESHPORT_PLUGIN_INVALID',
      `registry plugin '${type}' (${resolved}) does not export createRegistryAdapter(config)`,
    );
  }
  return plugin as RegistryPlugin;
}
