// The router's Prometheus metrics, served through prom-client on the admin `/stats` page.
//
// Per-request counting is plain arithmetic on fields of ClusterMetrics; prom-client reads those fields only when
// scraped. Counting through prom-client on every request (even through label children, which still hash their
// labels) measured as 14-19% of a router's CPU under load.

import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client';
import { FOLDED_LABEL } from './telemetry';

/** Latency bucket upper bounds, in seconds. */
export const LATENCY_BUCKETS = [
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
];

/** The answers of a set of calls: by outcome, and how long each took (what a cluster and each of its methods keep). */
export class AnswerCounts {
  /** Answers by outcome: `ok`, `status-N` (an upstream's non-OK status), or a router failure name. */
  readonly outcomes = new Map<string, number>();
  /** Non-cumulative counts per bucket; the last slot is beyond the largest bound. */
  readonly latencyCounts = new Float64Array(LATENCY_BUCKETS.length + 1);
  latencySum = 0;
  latencyCount = 0;

  count(outcome: string): void {
    this.outcomes.set(outcome, (this.outcomes.get(outcome) ?? 0) + 1);
  }

  observe(seconds: number): void {
    let i = 0;
    while (i < LATENCY_BUCKETS.length && seconds > LATENCY_BUCKETS[i]) i++;
    this.latencyCounts[i]++;
    this.latencySum += seconds;
    this.latencyCount++;
  }
}

/** What the calls of one method of one cluster of one listener have seen (the per-service metrics). */
export class MethodMetrics extends AnswerCounts {
  requests = 0;
}

/** What one cluster of one listener has seen. */
export class ClusterMetrics extends AnswerCounts {
  readonly requests = { bolt: 0, dubbo: 0 };
  /**
   * By method (at most LabelCaps.methods names, later ones under FOLDED_LABEL) and requests by caller (at most
   * LabelCaps.callers): the per-service metrics. The TypeScript engine fills them per call through method() and
   * caller(); the native one's counters replace them when read.
   */
  readonly methods = new Map<string, MethodMetrics>();
  readonly callers = new Map<string, number>();
  /** Calls counted under FOLDED_LABEL because the method or caller cap was reached. */
  foldedMethods = 0;
  foldedCallers = 0;

  constructor(
    readonly listener: string,
    readonly cluster: string,
  ) {
    super();
  }

  /** The metrics of `name`, or of FOLDED_LABEL once `cap` methods are known (counted as folded). */
  method(name: string, cap: number): MethodMetrics {
    let m = this.methods.get(name);
    if (m !== undefined) return m;
    if (this.methods.size >= cap && name !== FOLDED_LABEL) {
      this.foldedMethods++;
      return this.method(FOLDED_LABEL, Number.POSITIVE_INFINITY);
    }
    this.methods.set(name, (m = new MethodMetrics()));
    return m;
  }

  /** Counts one request from `name`, or from FOLDED_LABEL once `cap` callers are known (counted as folded). */
  caller(name: string, cap: number): void {
    const n = this.callers.get(name);
    if (n !== undefined) this.callers.set(name, n + 1);
    else if (this.callers.size < cap) this.callers.set(name, 1);
    else {
      this.foldedCallers++;
      this.callers.set(FOLDED_LABEL, (this.callers.get(FOLDED_LABEL) ?? 0) + 1);
    }
  }
}

type Direction = 'in' | 'out';

/** One service (cluster) and method of one direction on the `/services` page: monotonic totals since start. */
export interface ServiceMethodTotals {
  direction: string;
  service: string;
  method: string;
  requests: number;
  outcomes: Record<string, number>;
  /** Non-cumulative counts per LATENCY_BUCKETS slot (the last one beyond the largest bound), in seconds. */
  latency: { counts: number[]; sum: number; count: number };
}

/** The admin `/services` page: the per-service metrics as JSON, for tools (`meshport top` reads it twice for rates). */
export interface ServicesPage {
  /** When read, Date.now() ms. */
  at: number;
  services: ServiceMethodTotals[];
  callers: { direction: string; service: string; caller: string; requests: number }[];
  /** Calls counted under FOLDED_LABEL, by direction and label. */
  folded: Record<string, { method: number; caller: number }>;
  buckets: number[];
}

/** The values of one metric family a daemon adds to `/stats` (see RouterStats.addCollected), read at scrape time. */
export type MetricFamilyValues = { labels: Record<string, string | number>; value: number }[];

export class RouterStats {
  readonly registry = new Registry();
  private readonly clusters = new Map<string, ClusterMetrics>();
  private readonly byteCounts: Record<string, Record<Direction, number>> = {};

  readonly connections = new Gauge({
    name: 'meshport_connections_active',
    help: 'Open caller connections by listener',
    labelNames: ['listener'] as const,
    registers: [this.registry],
  });
  readonly connectionsTotal = new Counter({
    name: 'meshport_connections_total',
    help: 'Caller connections accepted by listener',
    labelNames: ['listener'] as const,
    registers: [this.registry],
  });
  readonly connectionsRefused = new Counter({
    name: 'meshport_connections_refused_total',
    help: 'Caller connections closed at accept by a connection cap, by listener and reason (per-source-cap, max-connections)',
    labelNames: ['listener', 'reason'] as const,
    registers: [this.registry],
  });
  readonly tlsHandshakes = new Counter({
    name: 'meshport_tls_handshakes_total',
    help: 'Mutual TLS handshakes between sidecars that completed and verified, by direction (inbound, outbound)',
    labelNames: ['direction'] as const,
    registers: [this.registry],
  });
  readonly tlsHandshakeFailures = new Counter({
    name: 'meshport_tls_handshake_failures_total',
    help: 'Mutual TLS handshakes refused or failed, by direction and reason (no-client-cert, untrusted, expired, wrong-identity, no-identity, plaintext-refused, protocol, timeout)',
    labelNames: ['direction', 'reason'] as const,
    registers: [this.registry],
  });
  readonly callsDenied = new Counter({
    name: 'meshport_calls_denied_total',
    help: 'Inbound calls the authorization policy did not allow, by service (none: a service with no route)',
    labelNames: ['service'] as const,
    registers: [this.registry],
  });
  readonly badFrames = new Counter({
    name: 'meshport_bad_frames_total',
    help: 'Frames rejected as malformed or oversize, by listener and error code',
    labelNames: ['listener', 'code'] as const,
    registers: [this.registry],
  });

  constructor() {
    const stats = this;
    new Counter({
      name: 'meshport_requests_total',
      help: 'Requests received, by listener, cluster and protocol',
      labelNames: ['listener', 'cluster', 'protocol'] as const,
      registers: [this.registry],
      collect() {
        this.reset();
        for (const m of stats.clusters.values()) {
          for (const protocol of ['bolt', 'dubbo'] as const) {
            if (m.requests[protocol] > 0)
              this.inc({ listener: m.listener, cluster: m.cluster, protocol }, m.requests[protocol]);
          }
        }
      },
    });
    new Counter({
      name: 'meshport_responses_total',
      help: 'Answers sent to callers, by listener, cluster and outcome (ok, an upstream status, or the router failure)',
      labelNames: ['listener', 'cluster', 'outcome'] as const,
      registers: [this.registry],
      collect() {
        this.reset();
        for (const m of stats.clusters.values()) {
          for (const [outcome, n] of m.outcomes) this.inc({ listener: m.listener, cluster: m.cluster, outcome }, n);
        }
      },
    });
    new Counter({
      name: 'meshport_bytes_total',
      help: 'Bytes by listener (or upstream) and direction',
      labelNames: ['listener', 'direction'] as const,
      registers: [this.registry],
      collect() {
        this.reset();
        for (const [listener, dirs] of Object.entries(stats.byteCounts)) {
          for (const direction of ['in', 'out'] as const) this.inc({ listener, direction }, dirs[direction]);
        }
      },
    });
    this.registry.registerMetric(
      new LatencyHistogram(
        'meshport_request_duration_seconds',
        'Time from request received to answer written, by listener and cluster',
        function* () {
          for (const m of stats.clusters.values())
            yield { labels: { listener: m.listener, cluster: m.cluster }, of: m };
        },
      ) as never,
    );
    this.servicesFamilies();
  }

  /**
   * The per-service families (by direction, service and method or caller), read from the ClusterMetrics' method and
   * caller maps at scrape time like the families above: nothing per request goes through prom-client.
   */
  private servicesFamilies(): void {
    const stats = this;
    const methods = function* () {
      for (const m of stats.clusters.values()) {
        for (const [method, mm] of m.methods) yield { direction: m.listener, service: m.cluster, method, mm };
      }
    };
    new Counter({
      name: 'meshport_service_requests_total',
      help: 'Requests by direction (outbound, inbound), service (none: no route) and method (other: past the cap)',
      labelNames: ['direction', 'service', 'method'] as const,
      registers: [this.registry],
      collect() {
        this.reset();
        for (const { direction, service, method, mm } of methods()) {
          if (mm.requests > 0) this.inc({ direction, service, method }, mm.requests);
        }
      },
    });
    new Counter({
      name: 'meshport_service_responses_total',
      help: 'Answers by direction, service, method and outcome (as meshport_responses_total)',
      labelNames: ['direction', 'service', 'method', 'outcome'] as const,
      registers: [this.registry],
      collect() {
        this.reset();
        for (const { direction, service, method, mm } of methods()) {
          for (const [outcome, n] of mm.outcomes) this.inc({ direction, service, method, outcome }, n);
        }
      },
    });
    this.registry.registerMetric(
      new LatencyHistogram(
        'meshport_service_request_duration_seconds',
        'Time from request received to answer written, by direction, service and method',
        function* () {
          for (const { direction, service, method, mm } of methods())
            yield { labels: { direction, service, method }, of: mm };
        },
      ) as never,
    );
    new Counter({
      name: 'meshport_service_caller_requests_total',
      help: 'Requests by direction, service and caller (the mTLS identity, else the IP address; other: past the cap)',
      labelNames: ['direction', 'service', 'caller'] as const,
      registers: [this.registry],
      collect() {
        this.reset();
        for (const m of stats.clusters.values()) {
          for (const [caller, n] of m.callers) {
            if (n > 0) this.inc({ direction: m.listener, service: m.cluster, caller }, n);
          }
        }
      },
    });
    new Counter({
      name: 'meshport_service_labels_folded_total',
      help: 'Calls counted under the method or caller `other` because the label cap was reached, by direction and label',
      labelNames: ['direction', 'label'] as const,
      registers: [this.registry],
      collect() {
        this.reset();
        for (const [direction, folded] of Object.entries(stats.folded())) {
          if (folded.method > 0) this.inc({ direction, label: 'method' }, folded.method);
          if (folded.caller > 0) this.inc({ direction, label: 'caller' }, folded.caller);
        }
      },
    });
  }

  private folded(): ServicesPage['folded'] {
    const folded: ServicesPage['folded'] = { outbound: { method: 0, caller: 0 }, inbound: { method: 0, caller: 0 } };
    for (const m of this.clusters.values()) {
      const f = (folded[m.listener] ??= { method: 0, caller: 0 });
      f.method += m.foldedMethods;
      f.caller += m.foldedCallers;
    }
    return folded;
  }

  /** The `/services` admin page: the same figures as the per-service families of `/stats`, as JSON. */
  services(): ServicesPage {
    const services: ServiceMethodTotals[] = [];
    const callers: ServicesPage['callers'] = [];
    for (const m of this.clusters.values()) {
      for (const [method, mm] of m.methods) {
        services.push({
          direction: m.listener,
          service: m.cluster,
          method,
          requests: mm.requests,
          outcomes: Object.fromEntries(mm.outcomes),
          latency: { counts: [...mm.latencyCounts], sum: mm.latencySum, count: mm.latencyCount },
        });
      }
      for (const [caller, requests] of m.callers) {
        callers.push({ direction: m.listener, service: m.cluster, caller, requests });
      }
    }
    return { at: Date.now(), services, callers, folded: this.folded(), buckets: [...LATENCY_BUCKETS] };
  }

  /** The metrics of one cluster of one listener, made once and kept by the caller (see Cluster.metrics). */
  cluster(listener: string, cluster: string): ClusterMetrics {
    const key = `${listener}|${cluster}`;
    let m = this.clusters.get(key);
    if (m === undefined) this.clusters.set(key, (m = new ClusterMetrics(listener, cluster)));
    return m;
  }

  /** Sets the byte totals of a listener (an engine that keeps its own running totals). */
  setBytes(listener: string, bytesIn: number, bytesOut: number): void {
    this.byteCounts[listener] = { in: bytesIn, out: bytesOut };
  }

  addBytes(listener: string, direction: Direction, n: number): void {
    (this.byteCounts[listener] ??= { in: 0, out: 0 })[direction] += n;
  }

  /**
   * Adds a gauge or counter family that `read` produces at scrape time: how the sidecar puts its registries', reloads'
   * and capture listeners' figures on the same `/stats` page without the router knowing what they are.
   */
  addCollected(name: string, help: string, type: 'gauge' | 'counter', read: () => MetricFamilyValues): void {
    this.registry.registerMetric({
      name,
      help,
      get: () => ({ name, help, type, values: read(), aggregator: 'sum' }),
    } as never);
  }

  /**
   * Process and runtime metrics (prom-client's defaults: CPU, memory, event-loop lag, GC, handles), once per stats.
   * Opt-in: a daemon has one router, but tests and benchmarks make many, and each call arms its own observers.
   */
  collectProcessMetrics(): void {
    if (this.processMetrics) return;
    this.processMetrics = true;
    collectDefaultMetrics({ register: this.registry });
  }

  private processMetrics = false;

  /** Open upstream connections by endpoint, counted when scraped. */
  trackUpstreams(list: () => Iterable<{ endpoint: string }>): void {
    new Gauge({
      name: 'meshport_upstream_connections',
      help: 'Open upstream connections by endpoint',
      labelNames: ['endpoint'] as const,
      registers: [this.registry],
      collect() {
        this.reset();
        for (const c of list()) this.inc({ endpoint: c.endpoint });
      },
    });
  }
}

/**
 * A histogram family as prom-client prints one (cumulative `_bucket` lines with `le`, then `+Inf`, `_sum`,
 * `_count`), read from the plain counts at scrape time.
 */
class LatencyHistogram {
  constructor(
    readonly name: string,
    readonly help: string,
    private readonly source: () => Iterable<{ labels: Record<string, string>; of: AnswerCounts }>,
  ) {}

  get() {
    const values: { labels: Record<string, string | number>; value: number; metricName: string }[] = [];
    for (const { labels, of: m } of this.source()) {
      if (m.latencyCount === 0) continue;
      let cumulative = 0;
      LATENCY_BUCKETS.forEach((le, i) => {
        cumulative += m.latencyCounts[i];
        values.push({ labels: { le, ...labels }, value: cumulative, metricName: `${this.name}_bucket` });
      });
      values.push({ labels: { le: '+Inf', ...labels }, value: m.latencyCount, metricName: `${this.name}_bucket` });
      values.push({ labels, value: m.latencySum, metricName: `${this.name}_sum` });
      values.push({ labels, value: m.latencyCount, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: 'histogram', values, aggregator: 'sum' };
  }
}
