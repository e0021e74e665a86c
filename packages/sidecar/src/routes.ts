// The sidecar's route book: what every registry reported, merged into the one route table the router reads, and
// the Takeover each facade calls to rewrite the app's registry traffic.

import {
  formatProviderUrl,
  providerDisabled,
  providerEndpoint,
  providersPerIdentity,
  rewriteEndpoint,
  routeKeyOf,
  type HostPort,
  type ProviderUrl,
  type Takeover,
} from '@meshport/registry-core';
import { MemoryRouteTable, type Endpoint } from '@meshport/router';

/**
 * Outbound routes are kept as each registry reported each interface, so a new read of one interface replaces exactly
 * what the previous read of it said, and two registries listing one service add up. Reports are indexed by route key,
 * so a change costs the size of that service's reports, not the number of services (1k services x 10 endpoints is
 * the benchmark's load).
 */
export class RouteBook {
  readonly table = new MemoryRouteTable();
  /** Routes (`out:KEY`, `in:KEY`) whose last endpoint went, still served until the grace ends. */
  private readonly emptying = new Map<string, NodeJS.Timeout>();

  /**
   * @param emptyGraceMs how long a route whose registries now list no endpoint keeps its last ones. SDKs re-register
   * by delete-then-create (sofa-rpc-node removes its own node before creating it again on every reconnect), so an
   * explicit deletion is often followed by the same provider a few milliseconds later; calls in that gap would
   * otherwise fail with no route. A route that stays empty past the grace is deleted.
   */
  constructor(
    private readonly emptyGraceMs = 1000,
    /** Where a provider URL the book cannot route is reported (it would otherwise vanish without a word). */
    private readonly warn: (fields: object, message: string) => void = () => {},
  ) {}
  /** Route key -> (registry, interface) that reported it -> its endpoints. */
  private readonly byKey = new Map<string, Map<string, Endpoint[]>>();
  /** (registry, interface) -> the route keys its last report listed. */
  private readonly keysOf = new Map<string, Set<string>>();

  /** The providers of `iface` as registry `source` last reported them (possibly none: an explicit deletion). */
  report(source: string, iface: string, real: ProviderUrl[]): void {
    const reporter = `${source}\u0000${iface}`;
    const now = new Map<string, Endpoint[]>();
    for (const url of real) {
      let key: string;
      try {
        key = routeKeyOf(url);
      } catch (error) {
        this.warn({ source, iface, url: formatProviderUrl(url), err: (error as Error).message }, 'provider URL names no service identity; not routed');
        continue;
      }
      // A provider that marks itself out of service is one its SDK would never call.
      if (providerDisabled(url)) continue;
      const { host, port, weight } = providerEndpoint(url);
      const list = now.get(key) ?? [];
      if (!list.some((e) => e.host === host && e.port === port)) list.push({ host, port, weight });
      now.set(key, list);
    }
    const before = this.keysOf.get(reporter) ?? new Set<string>();
    for (const key of before) if (!now.has(key)) this.byKey.get(key)?.delete(reporter);
    for (const [key, endpoints] of now) {
      const reports = this.byKey.get(key) ?? new Map<string, Endpoint[]>();
      reports.set(reporter, endpoints);
      this.byKey.set(key, reports);
    }
    this.keysOf.set(reporter, new Set(now.keys()));
    for (const key of new Set([...before, ...now.keys()])) this.merge(key);
  }

  /**
   * Drops every report of registry `source` (it was removed or restarted by a reload). A route only that registry
   * listed empties with the usual grace, so a registry restarted under the same name that reports it again within the
   * grace keeps it without a gap. Returns the route keys that had a report of `source`.
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
    for (const key of touched) this.merge(key);
    return [...touched];
  }

  setInbound(key: string, app: Endpoint): void {
    this.cancelEmptying(`in:${key}`);
    const current = this.table.inbound(key);
    if (current?.host !== app.host || current.port !== app.port) this.table.setInbound(key, app);
  }

  /** After the grace, like an outbound route: an app re-registering deletes and creates its node again. */
  deleteInbound(key: string): void {
    if (this.table.inbound(key)) this.emptyAfterGrace(`in:${key}`, () => this.table.deleteInbound(key));
  }

  /** For the admin page and tests: every route. */
  snapshot() {
    return this.table.snapshot();
  }

  private merge(key: string): void {
    const endpoints: Endpoint[] = [];
    for (const reported of this.byKey.get(key)?.values() ?? []) {
      for (const e of reported) if (!endpoints.some((x) => x.host === e.host && x.port === e.port)) endpoints.push(e);
    }
    const current = this.table.outbound(key)?.endpoints ?? [];
    if (endpoints.length === 0) {
      this.byKey.delete(key);
      if (current.length > 0) this.emptyAfterGrace(`out:${key}`, () => this.table.deleteOutbound(key));
      return;
    }
    this.cancelEmptying(`out:${key}`);
    if (!sameEndpoints(current, endpoints)) this.table.setOutbound(key, { endpoints });
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

  /** Stops the grace timers (the sidecar is stopping). */
  close(): void {
    for (const timer of this.emptying.values()) clearTimeout(timer);
    this.emptying.clear();
  }
}

function sameEndpoints(a: Endpoint[], b: Endpoint[]): boolean {
  return a.length === b.length && a.every((e, i) => e.host === b[i]!.host && e.port === b[i]!.port && e.weight === b[i]!.weight);
}

/**
 * The Takeover of one registry entry: the app publishes at the sidecar's inbound address and reads the sidecar's
 * outbound address; the real addresses go into the route book.
 */
export class SidecarTakeover implements Takeover {
  constructor(
    private readonly book: RouteBook,
    private readonly source: string,
    /** node.ip and the inbound listener's port: what other pods dial. */
    private readonly inbound: HostPort,
    /** The outbound listener as the app dials it. */
    private readonly outbound: HostPort,
  ) {}

  providerPublished(url: ProviderUrl): ProviderUrl {
    // An app that publishes meshport's own address back (a URL it was handed) must not become a route to itself.
    if (!this.isSidecar(url)) this.book.setInbound(routeKeyOf(url), { host: url.host, port: url.port });
    return rewriteEndpoint(url, this.inbound);
  }

  providerWithdrawn(url: ProviderUrl): ProviderUrl {
    if (!this.isSidecar(url)) this.book.deleteInbound(routeKeyOf(url));
    return rewriteEndpoint(url, this.inbound);
  }

  providersRead(iface: string, real: ProviderUrl[]): ProviderUrl[] {
    this.book.report(this.source, iface, real);
    return providersPerIdentity(real).map((url) => rewriteEndpoint(url, this.outbound));
  }

  private isSidecar(url: ProviderUrl): boolean {
    return [this.inbound, this.outbound].some((a) => url.host === a.host && url.port === a.port);
  }
}
