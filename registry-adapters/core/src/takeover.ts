// The contract between a registry facade and the sidecar: what the facade reports of the app's registry traffic, and
// what the sidecar answers so the app publishes and sees meshport's addresses instead of real ones.

import {
  dubboServiceKeyOf,
  formatProviderUrl,
  getParam,
  rewriteEndpoint,
  sofaServiceKeyOf,
  type ProviderUrl,
} from './url';

/** host:port as a facade or the sidecar writes it into a provider URL. */
export interface HostPort {
  host: string;
  port: number;
}

/**
 * What a facade asks of the sidecar. Facades call it synchronously while passing a request or a reply through, so
 * rewriting never reorders the app's traffic (ZooKeeper clients drop the connection on a reply out of order).
 *
 * - `providerPublished`: the app announces it serves `url`. The sidecar records the app's address as the inbound
 *   route of that service and returns what to publish upstream instead: the same URL (every parameter kept) at the
 *   sidecar's inbound address.
 * - `providerWithdrawn`: the app withdrew `url` explicitly (the sidecar drops the inbound route). Returns the URL to
 *   withdraw upstream, the same one `providerPublished` returned.
 * - `providersRead`: the registry answered a read of `iface`'s providers with `real`, which the facade passes in
 *   untouched. `iface` names what was read: an interface, or a service key (`interface:version`, `group/...`) when the
 *   registry answers per service; each answer replaces the previous answer to the same read, and only that. The sidecar routes the services those URLs serve to their real endpoints and returns what the app sees:
 *   one provider per service identity present in `real` (see `providersPerIdentity`), each at the sidecar's outbound
 *   address with the parameters of a real provider of that identity, so the SDK's own version/group filter keeps
 *   exactly the ones it wants; nothing when `real` is empty (an explicit answer of the registry). It is only ever
 *   called with a registry's answer, never on an outage, so an empty list here is a real deletion.
 */
export interface Takeover {
  providerPublished(url: ProviderUrl): ProviderUrl;
  providerWithdrawn(url: ProviderUrl): ProviderUrl;
  providersRead(iface: string, real: ProviderUrl[]): ProviderUrl[];
}

/**
 * The route key a provider URL serves, which is the identity its SDK selects providers by, as the wire will carry it:
 * Dubbo `group/interface:version` for `dubbo://` URLs, SOFA `interface:version[:uniqueId]` for Bolt and scheme-less
 * ones. Throws MESHPORT_REGISTRY_BAD_URL for a URL that names no interface.
 */
export function routeKeyOf(url: ProviderUrl): string {
  return url.scheme === 'dubbo' ? dubboServiceKeyOf(url) : sofaServiceKeyOf(url);
}

/**
 * Whether the provider marks itself out of service: Dubbo's `disabled=true`, or `enabled` other than `true`
 * (sofa-rpc-node's and Dubbo's consumers both skip such providers).
 */
export function providerDisabled(url: ProviderUrl): boolean {
  const enabled = getParam(url, 'enabled');
  return getParam(url, 'disabled') === 'true' || (enabled !== undefined && enabled !== 'true');
}

/**
 * One provider URL per service identity (protocol + route key) in `real`, in the registry's order: what a facade
 * shows an app once every address is rewritten to the sidecar's. An enabled provider stands for its identity when
 * there is one, so the SDK does not filter out an identity that still has live providers. URLs that name no interface
 * are left out: they serve nothing a call could name.
 */
export function providersPerIdentity(real: readonly ProviderUrl[]): ProviderUrl[] {
  const chosen = new Map<string, ProviderUrl>();
  for (const url of real) {
    let identity: string;
    try {
      identity = `${url.scheme ?? ''}\u0000${routeKeyOf(url)}`;
    } catch {
      continue;
    }
    const current = chosen.get(identity);
    if (current === undefined || (providerDisabled(current) && !providerDisabled(url))) chosen.set(identity, url);
  }
  return [...chosen.values()];
}

/** A Takeover that only rewrites, for facades under test and for tools: it records nothing. */
export class RewriteOnlyTakeover implements Takeover {
  constructor(
    private readonly inbound: HostPort,
    private readonly outbound: HostPort,
  ) {}

  providerPublished(url: ProviderUrl): ProviderUrl {
    return rewriteEndpoint(url, this.inbound);
  }

  providerWithdrawn(url: ProviderUrl): ProviderUrl {
    return rewriteEndpoint(url, this.inbound);
  }

  providersRead(_iface: string, real: ProviderUrl[]): ProviderUrl[] {
    return providersPerIdentity(real).map((url) => rewriteEndpoint(url, this.outbound));
  }
}

/**
 * A RewriteOnlyTakeover that also records what the facade reported, URLs formatted as text, for facade test suites
 * (every registry package's facade is tested against the same recorder).
 */
export class RecordingTakeover extends RewriteOnlyTakeover {
  readonly published: string[] = [];
  readonly withdrawn: string[] = [];
  readonly reads: { iface: string; real: string[] }[] = [];

  override providerPublished(url: ProviderUrl): ProviderUrl {
    this.published.push(formatProviderUrl(url));
    return super.providerPublished(url);
  }

  override providerWithdrawn(url: ProviderUrl): ProviderUrl {
    this.withdrawn.push(formatProviderUrl(url));
    return super.providerWithdrawn(url);
  }

  override providersRead(iface: string, real: ProviderUrl[]): ProviderUrl[] {
    this.reads.push({ iface, real: real.map(formatProviderUrl) });
    return super.providersRead(iface, real);
  }
}
