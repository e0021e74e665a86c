// The route key a request is looked up by, with a cache of Dubbo keys that belongs to one router, not the process.

import type { FrameHeader } from '@meshport/protocol';

/**
 * The route key of a request, which is the identity its SDK selected providers by: Bolt's `service` header as is
 * (`interface:version[:uniqueId]`); Dubbo's `group/interface:version`, each part left out when empty, the group read
 * from the attachments (as `dubboServiceKey` in @meshport/registry-core builds it from a provider URL). Builds a new
 * string per Dubbo call with a version or group: for callers off the per-request path (RouteKeys caches).
 */
export function routeKey(header: FrameHeader): string | undefined {
  const service = header.service;
  if (service === undefined) return undefined;
  if (header.protocol !== 'dubbo') return service;
  return dubboKey(service, header.group || '', header.version || '');
}

function dubboKey(service: string, group: string, version: string): string {
  const key = version ? `${service}:${version}` : service;
  return group ? `${group}/${key}` : key;
}

/**
 * routeKey for the per-request path: Dubbo keys by interface, then group, then version, so a request reuses the key
 * string (and its cached hash) instead of building a new one to hash on every lookup (4% of a provider router's time
 * under Dubbo load). One per router: routers in one process (tests, a capture listener beside a sidecar) see
 * different services and must not evict each other's keys. Bounded: an unknown service name costs one entry, and the
 * cache starts over when full.
 */
export class RouteKeys {
  private readonly byService = new Map<string, Map<string, Map<string, string>>>();
  private count = 0;

  constructor(private readonly max = 4096) {}

  /** Keys held now (at most `max`). */
  get size(): number {
    return this.count;
  }

  of(header: FrameHeader): string | undefined {
    const service = header.service;
    if (service === undefined) return undefined;
    if (header.protocol !== 'dubbo') return service;
    const version = header.version || '';
    const group = header.group || '';
    if (!version && !group) return service;
    let byGroup = this.byService.get(service);
    let byVersion = byGroup?.get(group);
    let key = byVersion?.get(version);
    if (key === undefined) {
      key = dubboKey(service, group, version);
      if (this.count >= this.max) {
        this.byService.clear();
        this.count = 0;
        byGroup = byVersion = undefined;
      }
      if (byGroup === undefined) this.byService.set(service, (byGroup = new Map()));
      if (byVersion === undefined) byGroup.set(group, (byVersion = new Map()));
      byVersion.set(version, key);
      this.count++;
    }
    return key;
  }
}
