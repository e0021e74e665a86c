// A cluster: one service's endpoints, how one is chosen, which are ejected, and the cluster's request limits.

import { createHash } from 'node:crypto';
import { methodConditionHolds } from '@meshport/registry-core';
import { type ClusterSpec, type Endpoint, type LbPolicy, type MethodRouter, endpointKey } from './route-table';
import type { ClusterMetrics } from './stats';

export interface OutlierOptions {
  /** Consecutive failures (connect failures, resets, timeouts) that eject an endpoint. @default 5 (Envoy) */
  consecutiveFailures?: number;
  /** First ejection lasts this long; the n-th lasts n times as long. @default 30000 (Envoy) */
  baseEjectionMs?: number;
  /** At most this share of a cluster is ejected at once, but always at least one endpoint. @default 10 (Envoy) */
  maxEjectionPercent?: number;
}

export interface ClusterLimits {
  /** Requests queued on connections still connecting. @default 1024 (Envoy's max_pending_requests) */
  maxPendingRequests?: number;
  /** Requests in flight. @default 1024 (Envoy's max_requests) */
  maxActiveRequests?: number;
}

export const OUTLIER_DEFAULTS: Required<OutlierOptions> = {
  consecutiveFailures: 5,
  baseEjectionMs: 30_000,
  maxEjectionPercent: 10,
};

export const CLUSTER_LIMIT_DEFAULTS: Required<ClusterLimits> = {
  maxPendingRequests: 1024,
  maxActiveRequests: 1024,
};

/** One endpoint with the state the router keeps about it. */
export class Host {
  readonly key: string;
  /**
   * The upstream pool's key when calls go over mutual TLS: the address and the identity expected there, so an
   * endpoint that changes identity gets new connections.
   */
  readonly tlsKey: string;
  /** Requests in flight to this endpoint, for least-request. */
  active = 0;
  consecutiveFailures = 0;
  ejectedUntil = 0;
  ejections = 0;
  /** Smooth weighted round-robin's running credit. */
  credit = 0;

  constructor(
    readonly endpoint: Endpoint,
    readonly weight: number,
  ) {
    this.key = endpointKey(endpoint);
    this.tlsKey = `${this.key} ${endpoint.identity ?? ''}`;
  }

  isEjected(now: number): boolean {
    return this.ejectedUntil > now;
  }
}

export class Cluster {
  hosts: Host[] = [];
  policy: LbPolicy = 'round-robin';
  hashHeader: string | undefined;
  /** The registry's method-dependent routing rules; undefined when there are none (the common case, no cost). */
  routers: MethodRouter[] | undefined;
  /** A timeout the registry's rules set (ms). */
  timeoutMs: number | undefined;
  private rules: ClusterSpec['rules'];
  /** The hosts the routers leave per method name, computed on first use; bounded, since names come from the wire. */
  private readonly hostsByMethod = new Map<string, Host[]>();
  pending = 0;
  active = 0;
  /** Its metric children, set by the router. */
  metrics: ClusterMetrics | undefined;
  /** Latest end of any ejection: before it, every host is usable and pick() can skip filtering. */
  private ejectionsEndAt = 0;
  private allWeighted = true;
  private equalWeights = true;
  private rrNext = 0;
  private ring: { points: Uint32Array; hosts: Host[] } | undefined;
  private readonly outlier: Required<OutlierOptions>;
  readonly limits: Required<ClusterLimits>;

  constructor(
    readonly name: string,
    spec: ClusterSpec,
    outlier: OutlierOptions = {},
    limits: ClusterLimits = {},
  ) {
    this.outlier = { ...OUTLIER_DEFAULTS, ...outlier };
    this.limits = { ...CLUSTER_LIMIT_DEFAULTS, ...limits };
    this.update(spec);
  }

  /** New endpoint set from the route table; hosts that stay keep their counters and ejection state. */
  update(spec: ClusterSpec): void {
    const old = new Map(this.hosts.map((h) => [h.key, h]));
    this.hosts = spec.endpoints.map((e) => {
      const kept = old.get(endpointKey(e));
      const weight = Math.max(0, e.weight ?? 100);
      return kept && kept.weight === weight && kept.endpoint.identity === e.identity ? kept : new Host(e, weight);
    });
    this.allWeighted = this.hosts.every((h) => h.weight > 0);
    this.equalWeights = this.hosts.every((h) => h.weight === this.hosts[0]!.weight);
    this.ejectionsEndAt = Math.max(0, ...this.hosts.map((h) => h.ejectedUntil));
    this.policy = spec.policy ?? 'round-robin';
    this.hashHeader = spec.hashHeader;
    this.ring = undefined;
    this.routers = spec.routers && spec.routers.length > 0 ? spec.routers : undefined;
    this.timeoutMs = spec.timeoutMs;
    this.rules = spec.rules;
    this.hostsByMethod.clear();
  }

  /** The hosts a call of `method` may go to under the routers (all of them when there are none). */
  hostsFor(method: string): Host[] {
    if (this.routers === undefined) return this.hosts;
    const known = this.hostsByMethod.get(method);
    if (known !== undefined) return known;
    let hosts: Host[] = this.hosts;
    for (const router of this.routers) {
      if (!router.methods.every((c) => methodConditionHolds(c, method))) continue;
      if (router.blacklist) {
        hosts = [];
        continue;
      }
      const kept: Host[] = hosts.filter((h) => router.allowed.includes(h.key));
      if (kept.length > 0 || router.force) hosts = kept;
    }
    hosts = hosts.filter((h) => h.weight > 0);
    if (this.hostsByMethod.size >= 1024) this.hostsByMethod.clear();
    this.hostsByMethod.set(method, hosts);
    return hosts;
  }

  /** Whether one more request may start, under the cluster's limits. */
  hasCapacity(): boolean {
    return this.active < this.limits.maxActiveRequests && this.pending < this.limits.maxPendingRequests;
  }

  /**
   * Chooses an endpoint by the cluster's policy among those not ejected and not in `exclude` (endpoints a retry has
   * already failed on). Undefined when none is left.
   */
  pick(hashKey: string | undefined, exclude?: ReadonlySet<Host>, now = Date.now(), method = ''): Host | undefined {
    const allowed = this.routers === undefined ? undefined : this.hostsFor(method);
    const usable = (h: Host) =>
      !h.isEjected(now) && !exclude?.has(h) && h.weight > 0 && (allowed === undefined || allowed.includes(h));
    // The common case, nothing ejected or excluded and no routing rule, needs no filtered copy of the host list.
    const everyHost = exclude === undefined && this.allWeighted && now >= this.ejectionsEndAt && allowed === undefined;
    const candidates = everyHost ? this.hosts : this.hosts.filter(usable);
    if (candidates.length === 0) return undefined;
    switch (this.policy) {
      case 'weighted-random':
        return weightedRandom(candidates);
      case 'least-request':
        return leastRequest(candidates);
      case 'consistent-hash':
        return hashKey === undefined ? this.roundRobin(candidates) : this.byHash(hashKey, usable);
      default:
        return this.roundRobin(candidates);
    }
  }

  /**
   * Round-robin that honors weights (the provider URL's `weight`, a rule's override, warm-up): the SDKs this sidecar
   * stands in for balance by weight, so a provider at weight 200 must get twice the calls of one at 100. Smooth
   * weighted round-robin (as nginx): each pick adds every candidate's weight to its credit and takes the one with the
   * most, which interleaves instead of sending runs. Equal weights take the plain rotation, which costs nothing.
   */
  private roundRobin(candidates: Host[]): Host {
    if (this.equalWeights) {
      const host = candidates[this.rrNext % candidates.length];
      this.rrNext = (this.rrNext + 1) % 0x7fffffff;
      return host;
    }
    let best = candidates[0];
    let total = 0;
    for (const h of candidates) {
      h.credit += h.weight;
      total += h.weight;
      if (h.credit > best.credit) best = h;
    }
    best.credit -= total;
    return best;
  }

  /** Ring hash (as Envoy's ring_hash): 100 points per weight-100 endpoint; walk clockwise to a usable host. */
  private byHash(key: string, usable: (h: Host) => boolean): Host | undefined {
    this.ring ??= buildRing(this.hosts);
    const { points, hosts } = this.ring;
    if (points.length === 0) return undefined;
    const h = hash32(key);
    let lo = 0;
    let hi = points.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (points[mid] < h) lo = mid + 1;
      else hi = mid;
    }
    for (let i = 0; i < points.length; i++) {
      const host = hosts[(lo + i) % points.length];
      if (usable(host)) return host;
    }
    return undefined;
  }

  recordSuccess(host: Host): void {
    host.consecutiveFailures = 0;
  }

  /** A local-origin failure: connect failure, reset with the request in flight, or timeout. */
  recordFailure(host: Host, now = Date.now()): void {
    host.consecutiveFailures++;
    if (host.consecutiveFailures < this.outlier.consecutiveFailures || host.isEjected(now)) return;
    const ejected = this.hosts.filter((h) => h.isEjected(now)).length;
    const allowed = Math.max(1, Math.floor((this.hosts.length * this.outlier.maxEjectionPercent) / 100));
    if (ejected >= allowed) return;
    host.ejections++;
    host.ejectedUntil = now + this.outlier.baseEjectionMs * host.ejections;
    this.ejectionsEndAt = Math.max(this.ejectionsEndAt, host.ejectedUntil);
    host.consecutiveFailures = 0;
  }

  /** For `/routes`. */
  describe(now = Date.now()) {
    return {
      name: this.name,
      policy: this.policy,
      pending: this.pending,
      active: this.active,
      limits: this.limits,
      ...(this.timeoutMs !== undefined ? { timeoutMs: this.timeoutMs } : {}),
      ...(this.rules ? { rules: this.rules, routers: this.routers ?? [] } : {}),
      endpoints: this.hosts.map((h) => ({
        address: h.key,
        weight: h.weight,
        active: h.active,
        healthy: !h.isEjected(now),
        consecutiveFailures: h.consecutiveFailures,
        ejections: h.ejections,
        ejectedForMs: h.isEjected(now) ? h.ejectedUntil - now : 0,
        ...(h.endpoint.identity !== undefined ? { identity: h.endpoint.identity } : {}),
      })),
    };
  }
}

function weightedRandom(candidates: Host[]): Host {
  let total = 0;
  for (const h of candidates) total += h.weight;
  let r = Math.random() * total;
  for (const h of candidates) {
    r -= h.weight;
    if (r < 0) return h;
  }
  return candidates[candidates.length - 1];
}

/** Power of two choices, Envoy's least_request default: two random hosts, the one with fewer in flight. */
function leastRequest(candidates: Host[]): Host {
  if (candidates.length === 1) return candidates[0];
  const a = candidates[Math.floor(Math.random() * candidates.length)];
  let b = candidates[Math.floor(Math.random() * (candidates.length - 1))];
  if (b === a) b = candidates[candidates.length - 1];
  return b.active < a.active ? b : a;
}

function hash32(text: string): number {
  return createHash('md5').update(text).digest().readUInt32BE(0);
}

function buildRing(hosts: Host[]): { points: Uint32Array; hosts: Host[] } {
  const entries: { point: number; host: Host }[] = [];
  for (const host of hosts) {
    const replicas = Math.max(1, Math.round(host.weight));
    for (let i = 0; i < replicas; i++) entries.push({ point: hash32(`${host.key}_${i}`), host });
  }
  entries.sort((x, y) => x.point - y.point);
  return { points: Uint32Array.from(entries.map((e) => e.point)), hosts: entries.map((e) => e.host) };
}
