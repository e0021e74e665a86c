// The route-table interface the registry adapters fill and the router reads, with an in-memory implementation.

import type { MethodCondition } from '@meshport/registry-core';

/** A place calls can go: a remote sidecar's inbound port (outbound routes) or the local app (inbound routes). */
export interface Endpoint {
  host: string;
  port: number;
  /** Relative weight for weighted random, from the provider URL's `weight` parameter. @default 100 */
  weight?: number;
  /**
   * The identity the provider's sidecar published (`meshport.id` in its URL): when set, calls to this endpoint go over
   * mutual TLS and the provider's certificate must carry exactly this identity. Unset: plaintext, as before.
   */
  identity?: string;
}

export type LbPolicy = 'round-robin' | 'weighted-random' | 'least-request' | 'consistent-hash';

/**
 * One of the registry's condition routing rules, as far as it depends on the call: compiled by the control plane
 * (the sidecar's route book), which has already applied everything that does not depend on the call.
 */
export interface MethodRouter {
  /** Every condition must hold for the call's method for the router to act; none: it acts on every call. */
  methods: MethodCondition[];
  /** The endpoints it keeps, as `endpointKey` spells them. */
  allowed: string[];
  /** When it keeps none: true leaves no endpoint (Dubbo's force=true), false leaves the list as it was. */
  force: boolean;
  /** A rule with nothing after `=>`: matching calls have no endpoint at all. */
  blacklist: boolean;
}

/** Where calls to one service go, and how one endpoint is chosen. */
export interface ClusterSpec {
  endpoints: Endpoint[];
  /** Condition routers that depend on the call's method, in the order they apply. */
  routers?: MethodRouter[];
  /** A timeout the registry's rules set for this service (ms): it wins over the one a request carries. */
  timeoutMs?: number;
  /** The registry rules in force and those ignored as unreadable, for the admin `/routes` page. */
  rules?: { inForce: string[]; problems: { rule: string; reason: string }[] };
  /** @default 'round-robin' */
  policy?: LbPolicy;
  /**
   * consistent-hash only: the Bolt header whose value is hashed (Dubbo carries no header before its arguments, so
   * Dubbo calls hash on the method name).
   */
  hashHeader?: string;
}

/**
 * What the router asks of the registry side. Keys are service names as the wire carries them: Bolt
 * `interface:version[:uniqueId]`; Dubbo `interface:version`, or `interface` when the call has no version.
 */
export interface RouteTable {
  /** Where calls to `service` leaving this pod go. */
  outbound(service: string): ClusterSpec | undefined;
  /** Where calls to `service` arriving at this pod go: the local app. */
  inbound(service: string): Endpoint | undefined;
  /**
   * Called after any change, with the services it touched when the table knows them (an engine that keeps a copy
   * of the routes updates only those); returns the unsubscribe function.
   */
  onChange(listener: (change?: RouteChange) => void): () => void;
  /**
   * Every service with a route, for the admin `/routes` page to list routes no call has used yet. Optional: a table
   * that cannot list (one that looks services up remotely) shows only the services that carried calls.
   */
  services?(): { outbound: string[]; inbound: string[] };
}

/** The services one change touched, by listener: each now has another route, or none. */
export interface RouteChange {
  outbound: string[];
  inbound: string[];
}

/** A RouteTable held in memory: what tests fill directly and what the `file` registry will fill. */
export class MemoryRouteTable implements RouteTable {
  private readonly outboundRoutes = new Map<string, ClusterSpec>();
  private readonly inboundRoutes = new Map<string, Endpoint>();
  private readonly listeners = new Set<(change?: RouteChange) => void>();

  outbound(service: string): ClusterSpec | undefined {
    return this.outboundRoutes.get(service);
  }

  inbound(service: string): Endpoint | undefined {
    return this.inboundRoutes.get(service);
  }

  onChange(listener: (change?: RouteChange) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  setOutbound(service: string, spec: ClusterSpec): this {
    this.outboundRoutes.set(service, spec);
    return this.changed({ outbound: [service], inbound: [] });
  }

  deleteOutbound(service: string): this {
    this.outboundRoutes.delete(service);
    return this.changed({ outbound: [service], inbound: [] });
  }

  setInbound(service: string, endpoint: Endpoint): this {
    this.inboundRoutes.set(service, endpoint);
    return this.changed({ outbound: [], inbound: [service] });
  }

  deleteInbound(service: string): this {
    this.inboundRoutes.delete(service);
    return this.changed({ outbound: [], inbound: [service] });
  }

  services(): { outbound: string[]; inbound: string[] } {
    return { outbound: [...this.outboundRoutes.keys()], inbound: [...this.inboundRoutes.keys()] };
  }

  /** Every route. */
  snapshot(): { outbound: Record<string, ClusterSpec>; inbound: Record<string, Endpoint> } {
    return { outbound: Object.fromEntries(this.outboundRoutes), inbound: Object.fromEntries(this.inboundRoutes) };
  }

  private changed(change: RouteChange): this {
    for (const l of this.listeners) l(change);
    return this;
  }
}

export function endpointKey(e: Endpoint): string {
  return e.host.includes(':') ? `[${e.host}]:${e.port}` : `${e.host}:${e.port}`;
}
