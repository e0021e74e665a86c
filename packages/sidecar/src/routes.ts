// The sidecar's route book: what every registry reported, merged into the one route table the router reads, and
// the Takeover each facade calls to rewrite the app's registry traffic.

import {
  compileRules,
  emptyRuleUrls,
  formatProviderUrl,
  getParam,
  interfaceOfServiceKey,
  providersPerIdentity,
  providerWeight,
  rewriteEndpoint,
  routeKeyOf,
  withParam,
  type HostPort,
  type ProviderUrl,
  type RuleUrls,
  type RulesDialect,
} from '@meshport/registry-core';
import { MemoryRouteTable, endpointKey, type ClusterSpec, type Endpoint } from '@meshport/router';
import type { ReportingTakeover, RuleSource } from './registries';

/**
 * Outbound routes, one per service identity, are kept as each registry reported each read (an interface, or a service
 * where the registry answers per service), so a new answer to one read replaces exactly what the previous one said,
 * and two registries listing one service add up. Each route is compiled with the registry's rules for its interface. Reports are indexed by route key,
 * so a change costs the size of that service's reports, not the number of services (1k services x 10 endpoints is
 * the benchmark's load).
 */
export class RouteBook {
  readonly table = new MemoryRouteTable();
  /** Routes (`out:KEY`, `in:KEY`) whose last endpoint went, still served until the grace ends. */
  private readonly emptying = new Map<string, NodeJS.Timeout>();
  private readonly emptyGraceMs: number;
  private readonly warn: (fields: object, message: string) => void;
  private readonly info: (fields: object, message: string) => void;
  private readonly consumerHost: string;
  private readonly changes: RouteChangeLog;
  /** Whether endpoints carry the identity their provider published (this sidecar dials mTLS), see RouteBookOptions. */
  private readonly identities: boolean;

  constructor(options: RouteBookOptions = {}) {
    this.emptyGraceMs = options.emptyGraceMs ?? 1000;
    this.warn = options.warn ?? (() => {});
    this.info = options.info ?? (() => {});
    this.consumerHost = options.consumerHost ?? '127.0.0.1';
    this.identities = options.identities ?? true;
    this.changes = new RouteChangeLog(this.info, options.changeLogIntervalMs ?? 1000, options.changeLogLines ?? 10);
  }
  /** Inbound route key -> registry -> the app address that registry's facade saw published (one route, several claims). */
  private readonly inboundBy = new Map<string, Map<string, Endpoint>>();
  /** Route key -> (registry, scope) that reported it -> its providers. */
  private readonly byKey = new Map<string, Map<string, Reported[]>>();
  /** (registry, scope) -> the route keys its last report listed. */
  private readonly keysOf = new Map<string, Set<string>>();
  /** Interface -> the route keys of its identities, so a rule change recompiles exactly those. */
  private readonly keysOfInterface = new Map<string, Set<string>>();
  /** `interface dialect` -> registry -> the rules it last reported. */
  private readonly rulesOf = new Map<string, Map<string, RuleUrls>>();
  /** Route key -> the rule problems already logged and the warm-up recompile, for routes compiled with rules. */
  private readonly compiled = new Map<string, { problems: Set<string>; recompile?: NodeJS.Timeout }>();

  /**
   * The providers registry `source` last reported for `scope` (possibly none: an explicit deletion). The scope is
   * what was read: an interface (ZooKeeper and Redis list every identity of one), or a service key when the registry
   * answers per service (a file registry, SOFA Registry's data ids, the mesh API's subscriptions); a new report of
   * one scope replaces exactly what that scope said before.
   */
  report(source: string, scope: string, real: ProviderUrl[]): void {
    const reporter = `${source}\u0000${scope}`;
    const iface = interfaceOfServiceKey(scope);
    const now = new Map<string, Reported[]>();
    for (const url of real) {
      let key: string;
      try {
        key = routeKeyOf(url);
      } catch (error) {
        this.warn(
          { source, scope, url: formatProviderUrl(url), err: (error as Error).message },
          'provider URL names no service identity; not routed',
        );
        continue;
      }
      const list = now.get(key) ?? [];
      if (!list.some((u) => u.host === url.host && u.port === url.port)) list.push(toReported(url, this.identities));
      now.set(key, list);
    }
    const before = this.keysOf.get(reporter) ?? new Set<string>();
    for (const key of before) if (!now.has(key)) this.byKey.get(key)?.delete(reporter);
    for (const [key, urls] of now) {
      const reports = this.byKey.get(key) ?? new Map<string, Reported[]>();
      reports.set(reporter, urls);
      this.byKey.set(key, reports);
      const ofInterface = this.keysOfInterface.get(iface) ?? new Set<string>();
      ofInterface.add(key);
      this.keysOfInterface.set(iface, ofInterface);
    }
    this.keysOf.set(reporter, new Set(now.keys()));
    for (const key of new Set([...before, ...now.keys()])) this.merge(key, source);
  }

  /**
   * The governance rules of `iface` (of the Dubbo or the sofa-rpc kind) as registry `source` last reported them.
   * Every identity of the interface is compiled again with them.
   */
  setRules(source: string, scope: string, dialect: RulesDialect, rules: RuleUrls): void {
    const iface = interfaceOfServiceKey(scope);
    const id = `${iface} ${dialect}`;
    const bySource = this.rulesOf.get(id) ?? new Map<string, RuleUrls>();
    bySource.set(source, rules);
    this.rulesOf.set(id, bySource);
    for (const key of this.keysOfInterface.get(iface) ?? []) this.merge(key, source);
  }

  /**
   * Drops every report of registry `source` (it was removed or restarted by a reload), and the inbound routes its
   * facade's apps published through it. A route only that registry listed empties with the usual grace, so a registry
   * restarted under the same name that reports it again within the grace keeps it without a gap. Returns the route
   * keys that had a report of `source`.
   */
  forget(source: string): string[] {
    const prefix = `${source}\u0000`;
    const touched = new Set<string>();
    for (const [reporter, keys] of this.keysOf) {
      if (!reporter.startsWith(prefix)) continue;
      for (const key of keys) {
        this.byKey.get(key)?.delete(reporter);
        touched.add(key);
      }
      this.keysOf.delete(reporter);
    }
    for (const bySource of this.rulesOf.values()) bySource.delete(source);
    for (const key of touched) this.merge(key, source);
    const inbound = [...this.inboundBy].filter(([, claims]) => claims.has(source)).map(([key]) => key);
    if (inbound.length > 0) {
      this.info(
        { registry: source, services: inbound, graceMs: this.emptyGraceMs },
        'registry closed: the inbound routes its apps published through it go',
      );
      for (const key of inbound) this.deleteInbound(key, source);
    }
    return [...touched];
  }

  /**
   * The app serves `key` at `app`, as registry `source`'s facade saw it published. The route is kept per registry, so
   * a registry that is closed (removed by a reload) takes its apps' inbound routes with it.
   */
  setInbound(key: string, app: Endpoint, source = ''): void {
    const claims = this.inboundBy.get(key) ?? new Map<string, Endpoint>();
    claims.delete(source); // the newest claim last: it is the one in force
    claims.set(source, app);
    this.inboundBy.set(key, claims);
    this.applyInbound(key, app, source);
  }

  /**
   * Registry `source` no longer has `key` published: another registry's claim takes over, or, when none is left, the
   * route goes after the grace, like an outbound route (an app re-registering deletes and creates its node again).
   */
  deleteInbound(key: string, source = ''): void {
    const claims = this.inboundBy.get(key);
    claims?.delete(source);
    const rest = claims && [...claims.values()].at(-1);
    if (rest) return this.applyInbound(key, rest, source);
    this.inboundBy.delete(key);
    if (this.table.inbound(key)) {
      this.emptyAfterGrace(`in:${key}`, () => {
        const gone = this.table.inbound(key);
        this.table.deleteInbound(key);
        if (gone) this.changes.note('inbound', key, [], [address(gone)], source);
      });
    }
  }

  /** For the admin page and tests: every route. */
  snapshot() {
    return this.table.snapshot();
  }

  /**
   * Builds the route of one identity from every registry's report: its providers, with the rules its SDK would have
   * applied (weights and warm-up, disabled providers, the registry's override and condition rules).
   */
  private merge(key: string, cause?: string): void {
    const urls: Reported[] = [];
    for (const reported of this.byKey.get(key)?.values() ?? []) {
      for (const u of reported) if (!urls.some((x) => x.host === u.host && u.port === x.port)) urls.push(u);
    }
    const known = this.compiled.get(key);
    clearTimeout(known?.recompile);
    const spec = urls.length === 0 ? undefined : this.compile(key, urls);
    if (spec === undefined || spec.endpoints.length === 0) {
      if (urls.length === 0) this.byKey.delete(key);
      this.compiled.delete(key);
      if (this.table.outbound(key)) {
        this.emptyAfterGrace(`out:${key}`, () => {
          const gone = this.table.outbound(key);
          this.table.deleteOutbound(key);
          if (gone) this.changes.note('outbound', key, [], gone.endpoints.map(address), cause);
        });
      }
      return;
    }
    this.cancelEmptying(`out:${key}`);
    const current = this.table.outbound(key);
    if (current === undefined || !sameSpec(current, spec)) {
      this.table.setOutbound(key, spec);
      this.noteEndpoints(key, current?.endpoints ?? [], spec.endpoints, cause ?? this.reportersOf(key));
    }
  }

  private applyInbound(key: string, app: Endpoint, source: string): void {
    this.cancelEmptying(`in:${key}`);
    const current = this.table.inbound(key);
    if (current?.host === app.host && current.port === app.port) return;
    this.table.setInbound(key, app);
    this.changes.note('inbound', key, [address(app)], current ? [address(current)] : [], source);
  }

  private noteEndpoints(
    key: string,
    before: readonly Endpoint[],
    after: readonly Endpoint[],
    registries: string | string[],
  ): void {
    const was = new Set(before.map(address));
    const is = new Set(after.map(address));
    const added = [...is].filter((a) => !was.has(a));
    const removed = [...was].filter((a) => !is.has(a));
    this.changes.note('outbound', key, added, removed, registries);
  }

  /** The registries whose reports list `key` now. */
  private reportersOf(key: string): string[] {
    return [
      ...new Set(
        [...(this.byKey.get(key)?.keys() ?? [])].map((reporter) => reporter.slice(0, reporter.indexOf('\u0000'))),
      ),
    ];
  }

  private compile(key: string, urls: Reported[]): ClusterSpec {
    const dialect: RulesDialect = urls[0]!.dubbo ? 'dubbo' : 'sofa';
    const identity = identityOfKey(key, dialect);
    const rules = emptyRuleUrls();
    let anyRule = false;
    for (const reported of this.rulesOf.get(`${identity.interface} ${dialect}`)?.values() ?? []) {
      rules.configurators.push(...reported.configurators);
      rules.routers.push(...reported.routers);
      rules.overrides.push(...reported.overrides);
      Object.assign(rules.configs, reported.configs);
      anyRule ||=
        reported.configurators.length +
          reported.routers.length +
          reported.overrides.length +
          Object.keys(reported.configs).length >
        0;
    }
    // The common case, a SOFA service with no rules and no warm-up, needs only each provider's own weight: no URL is
    // parsed again (a sidecar with 10,000 endpoints re-merges a route per registration).
    if (!anyRule && dialect === 'sofa' && !urls.some((u) => u.warmup)) {
      this.compiled.delete(key);
      return {
        endpoints: urls
          .filter((u) => !u.disabled && u.weight > 0)
          .map(({ host, port, weight, identity }) =>
            identity ? { host, port, weight, identity } : { host, port, weight },
          ),
      };
    }
    const nowMs = Date.now();
    const providers = urls.map((u) => u.text);
    const route = compileRules({
      dialect,
      providers,
      rules,
      consumer: { host: this.consumerHost, ...identity },
      nowMs,
    });
    const live = route.providers.filter((p) => !p.disabled && p.weight > 0);
    const identityAt = new Map(urls.flatMap((u) => (u.identity ? [[`${u.host}\u0000${u.port}`, u.identity]] : [])));
    const spec: ClusterSpec = {
      endpoints: live.map((p) => {
        const identity = identityAt.get(`${p.host}\u0000${p.port}`);
        return identity
          ? { host: p.host, port: p.port, weight: p.weight, identity }
          : { host: p.host, port: p.port, weight: p.weight };
      }),
    };
    if (route.routers.length > 0) {
      spec.routers = route.routers.map((r) => ({
        methods: r.methods,
        allowed: r.allowed.map((i) => endpointKey(route.providers[i]!)),
        force: r.force,
        blacklist: r.blacklist,
      }));
    }
    const timeouts = new Set(live.map((p) => p.timeoutMs));
    if (timeouts.size === 1 && [...timeouts][0] !== undefined) spec.timeoutMs = [...timeouts][0];
    if (route.inForce.length > 0 || route.problems.length > 0)
      spec.rules = { inForce: route.inForce, problems: route.problems };
    // A rule that cannot be read is ignored (it never empties a route), and said once while it stands.
    const logged = new Set<string>();
    const before = this.compiled.get(key)?.problems;
    for (const problem of route.problems) {
      logged.add(problem.rule);
      if (!before?.has(problem.rule))
        this.warn(
          { service: key, rule: problem.rule, reason: problem.reason },
          'registry rule ignored: it cannot be applied',
        );
    }
    const entry: { problems: Set<string>; recompile?: NodeJS.Timeout } = { problems: logged };
    if (route.recompileAtMs !== undefined) {
      // A provider still warming up: its weight grows with time, so the route is compiled again when it ends.
      entry.recompile = setTimeout(() => this.merge(key), Math.max(0, route.recompileAtMs - nowMs) + 1);
      entry.recompile.unref();
    }
    this.compiled.set(key, entry);
    return spec;
  }

  private emptyAfterGrace(id: string, remove: () => void): void {
    if (this.emptying.has(id)) return;
    const timer = setTimeout(() => {
      this.emptying.delete(id);
      remove();
    }, this.emptyGraceMs);
    timer.unref();
    this.emptying.set(id, timer);
  }

  private cancelEmptying(id: string): void {
    clearTimeout(this.emptying.get(id));
    this.emptying.delete(id);
  }

  /** Stops the grace timers (the sidecar is stopping), and logs the route changes not logged yet. */
  close(): void {
    for (const timer of this.emptying.values()) clearTimeout(timer);
    this.emptying.clear();
    for (const entry of this.compiled.values()) clearTimeout(entry.recompile);
    this.changes.close();
  }
}

export interface RouteBookOptions {
  /**
   * How long a route whose registries now list no endpoint keeps its last ones. SDKs re-register by
   * delete-then-create (sofa-rpc-node removes its own node before creating it again on every reconnect), so an
   * explicit deletion is often followed by the same provider a few milliseconds later; calls in that gap would
   * otherwise fail with no route. A route that stays empty past the grace is deleted. @default 1000
   */
  emptyGraceMs?: number;
  /** Where a provider URL the book cannot route, or a rule it cannot apply, is reported. */
  warn?: (fields: object, message: string) => void;
  /** Where route changes are logged (`route changed`, `routes changed`), and inbound routes a closed registry takes. */
  info?: (fields: object, message: string) => void;
  /**
   * A route's changes are logged at most once per this interval: the first at once, what follows within it
   * together at its end. @default 1000
   */
  changeLogIntervalMs?: number;
  /**
   * At most this many `route changed` lines per interval; more routes changed in one interval are one `routes changed`
   * summary line (a 10k-endpoint load logs a few lines, not 10k). @default 10
   */
  changeLogLines?: number;
  /** The consumer app's address as the registry's rules name consumers: the pod's node.ip. @default '127.0.0.1' */
  consumerHost?: string;
  /**
   * Whether an endpoint takes the identity its provider's URL publishes (`meshport.id`), which makes the router dial
   * it with mutual TLS and check that identity. A sidecar with `tls.mode: off` has no certificate to dial with, so it
   * leaves them out and dials plaintext (a permissive provider accepts it). @default true
   */
  identities?: boolean;
}

function address(e: { host: string; port: number }): string {
  return e.host.includes(':') ? `[${e.host}]:${e.port}` : `${e.host}:${e.port}`;
}

/** At most this many addresses are listed per side of a change; the counts are always given. */
const LISTED_ADDRESSES = 10;

/**
 * Route changes as log lines, rate-limited: a change while nothing was logged in the last interval is logged at once;
 * later ones are gathered (an endpoint that comes and goes within the interval cancels out) and logged together when
 * it ends, one line per route, or one summary line when more routes changed than `maxLines`.
 */
class RouteChangeLog {
  private readonly pending = new Map<
    string,
    {
      direction: 'outbound' | 'inbound';
      service: string;
      added: Set<string>;
      removed: Set<string>;
      registries: Set<string>;
    }
  >();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly info: (fields: object, message: string) => void,
    private readonly intervalMs: number,
    private readonly maxLines: number,
  ) {}

  note(
    direction: 'outbound' | 'inbound',
    service: string,
    added: string[],
    removed: string[],
    registries: string | string[] | undefined,
  ): void {
    if (added.length === 0 && removed.length === 0) return;
    const id = `${direction} ${service}`;
    let change = this.pending.get(id);
    if (!change)
      this.pending.set(
        id,
        (change = { direction, service, added: new Set(), removed: new Set(), registries: new Set() }),
      );
    for (const a of added) if (!change.removed.delete(a)) change.added.add(a);
    for (const r of removed) if (!change.added.delete(r)) change.removed.add(r);
    for (const registry of typeof registries === 'string' ? [registries] : (registries ?? []))
      if (registry !== '') change.registries.add(registry);
    if (this.timer === undefined) this.flush();
  }

  close(): void {
    clearTimeout(this.timer);
    this.flush();
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private flush(): void {
    const changes = [...this.pending.values()].filter((c) => c.added.size + c.removed.size > 0);
    this.pending.clear();
    if (changes.length === 0) {
      this.timer = undefined;
      return;
    }
    const list = (set: Set<string>) => [...set].slice(0, LISTED_ADDRESSES);
    if (changes.length <= this.maxLines) {
      for (const c of changes) {
        this.info(
          {
            direction: c.direction,
            service: c.service,
            added: list(c.added),
            addedCount: c.added.size,
            removed: list(c.removed),
            removedCount: c.removed.size,
            registries: [...c.registries],
          },
          'route changed',
        );
      }
    } else {
      let added = 0;
      let removed = 0;
      const registries = new Set<string>();
      for (const c of changes) {
        added += c.added.size;
        removed += c.removed.size;
        for (const r of c.registries) registries.add(r);
      }
      this.info(
        {
          routes: changes.length,
          addedCount: added,
          removedCount: removed,
          registries: [...registries],
          services: changes.slice(0, LISTED_ADDRESSES).map((c) => c.service),
          intervalMs: this.intervalMs,
        },
        'routes changed',
      );
    }
    this.timer = setTimeout(() => this.flush(), this.intervalMs);
    this.timer.unref();
  }
}

/**
 * A reported provider as the book keeps it: what routing needs without rules, and the URL as text for when rules
 * must be compiled (a parsed URL holds an object per parameter: 2 KB an endpoint where the text is 300 bytes).
 */
interface Reported {
  host: string;
  port: number;
  weight: number;
  disabled: boolean;
  /** sofa-rpc's warm-up parameters are present: the weight depends on the time. */
  warmup: boolean;
  dubbo: boolean;
  text: string;
  /** `meshport.id`: the provider sidecar's identity, when it speaks mTLS. */
  identity?: string;
}

function toReported(url: ProviderUrl, identities: boolean): Reported {
  const identity = identities ? getParam(url, MESHPORT_ID) : undefined;
  return {
    ...(identity ? { identity } : {}),
    host: url.host,
    port: url.port,
    weight: providerWeight(url),
    // As compileRules' sofa dialect (sofa-rpc-node's filter) reads it, so a route does not change when a rule appears.
    disabled: sofaDisabled(url),
    warmup: getParam(url, 'warmupTime') !== undefined,
    dubbo: url.scheme === 'dubbo',
    text: formatProviderUrl(url),
  };
}

function sofaDisabled(url: ProviderUrl): boolean {
  const enabled = getParam(url, 'enabled');
  return enabled !== undefined && enabled !== '' && enabled !== 'true';
}

/** Whether two specs route alike: same endpoints and weights, same rules (rare, compared as JSON). */
function sameSpec(a: ClusterSpec, b: ClusterSpec): boolean {
  if (a.endpoints.length !== b.endpoints.length) return false;
  for (let i = 0; i < a.endpoints.length; i++) {
    const x = a.endpoints[i]!;
    const y = b.endpoints[i]!;
    if (x.host !== y.host || x.port !== y.port || x.weight !== y.weight || x.identity !== y.identity) return false;
  }
  if (a.routers === undefined && b.routers === undefined && a.rules === undefined && b.rules === undefined)
    return a.timeoutMs === b.timeoutMs;
  return JSON.stringify([a.routers, a.rules, a.timeoutMs]) === JSON.stringify([b.routers, b.rules, b.timeoutMs]);
}

/** The consumer side of a route key, as rules match it: interface, version, and the Dubbo group. */
function identityOfKey(key: string, dialect: RulesDialect): { interface: string; version?: string; group?: string } {
  const slash = dialect === 'dubbo' ? key.indexOf('/') : -1;
  const [iface, version] = key.slice(slash + 1).split(':');
  const identity: { interface: string; version?: string; group?: string } = { interface: iface! };
  if (version) identity.version = version;
  if (slash > 0) identity.group = key.slice(0, slash);
  return identity;
}

/**
 * The provider URL parameter that carries the identity of the provider's sidecar (`spiffe://...`, URL-encoded): a
 * consumer's sidecar that finds it dials that endpoint with mutual TLS and requires exactly that identity.
 */
export const MESHPORT_ID = 'meshport.id';

/** The URL without `meshport.id`: what an app is shown (its own sidecar is the one that speaks TLS). */
export function withoutMeshportId(url: ProviderUrl): ProviderUrl {
  return url.params.some((p) => p.name === MESHPORT_ID)
    ? { ...url, params: url.params.filter((p) => p.name !== MESHPORT_ID) }
    : url;
}

/**
 * The Takeover of one registry entry: the app publishes at the sidecar's inbound address and reads the sidecar's
 * outbound address; the real addresses go into the route book. With mutual TLS on, what the app publishes also
 * carries this sidecar's identity (`meshport.id`), and what the app reads never does.
 */
export class SidecarTakeover implements ReportingTakeover {
  constructor(
    private readonly book: RouteBook,
    private readonly source: string,
    /** node.ip and the inbound listener's port: what other pods dial. */
    private readonly inbound: HostPort,
    /** The outbound listener as the app dials it. */
    private readonly outbound: HostPort,
    /** The registry's governance rules, for the registries that keep them. */
    private readonly rules?: RuleSource,
    /**
     * This sidecar's identity, published with the app's services when mutual TLS is on (tls.mode permissive or
     * strict); undefined: published without one, so consumers dial plaintext.
     */
    private readonly identity?: string,
  ) {}

  providerPublished(url: ProviderUrl): ProviderUrl {
    // An app that publishes meshport's own address back (a URL it was handed) must not become a route to itself.
    if (!this.isSidecar(url)) this.book.setInbound(routeKeyOf(url), { host: url.host, port: url.port }, this.source);
    return this.published(url);
  }

  providerWithdrawn(url: ProviderUrl): ProviderUrl {
    if (!this.isSidecar(url)) this.book.deleteInbound(routeKeyOf(url), this.source);
    return this.published(url);
  }

  providersRead(iface: string, real: ProviderUrl[]): ProviderUrl[] {
    this.providersReported(iface, real);
    return providersPerIdentity(real).map((url) => withoutMeshportId(rewriteEndpoint(url, this.outbound)));
  }

  /** The app's URL as published upstream: at the inbound address, with this sidecar's identity or none. */
  private published(url: ProviderUrl): ProviderUrl {
    const upstream = withoutMeshportId(rewriteEndpoint(url, this.inbound));
    return this.identity ? withParam(upstream, MESHPORT_ID, this.identity) : upstream;
  }

  /** The route book's half of providersRead: the real providers and their rules, no list for an app. */
  providersReported(iface: string, real: ProviderUrl[]): void {
    if (this.rules) {
      // The rules that apply are those of the providers' SDK: Dubbo's for dubbo:// URLs, sofa-rpc's for the others.
      const ofInterface = interfaceOfServiceKey(iface);
      for (const dialect of new Set(real.map((u): RulesDialect => (u.scheme === 'dubbo' ? 'dubbo' : 'sofa')))) {
        this.rules.watch(ofInterface, dialect, (rules) => this.book.setRules(this.source, ofInterface, dialect, rules));
      }
    }
    this.book.report(this.source, iface, real);
  }

  private isSidecar(url: ProviderUrl): boolean {
    return [this.inbound, this.outbound].some((a) => url.host === a.host && url.port === a.port);
  }
}
