// The router's Prometheus metrics (prom-client), served as text on the admin `/stats` page.

import { Counter, Gauge, Histogram, Registry } from 'prom-client';

type CounterChild = ReturnType<Counter<string>['labels']>;
type HistogramChild = ReturnType<Histogram<string>['labels']>;

/** Label children of one cluster, made once: a labelled lookup per request costs more than the request's routing. */
export interface ClusterMetrics {
  requests: { bolt: CounterChild; dubbo: CounterChild };
  latency: HistogramChild;
  outcome(outcome: string): CounterChild;
}

export class RouterStats {
  readonly registry = new Registry();
  readonly requests = new Counter({
    name: 'meshport_requests_total',
    help: 'Requests received, by listener, cluster and protocol',
    labelNames: ['listener', 'cluster', 'protocol'] as const,
    registers: [this.registry],
  });
  readonly responses = new Counter({
    name: 'meshport_responses_total',
    help: 'Answers sent to callers, by listener, cluster and outcome (ok, an upstream status, or the router failure)',
    labelNames: ['listener', 'cluster', 'outcome'] as const,
    registers: [this.registry],
  });
  readonly latency = new Histogram({
    name: 'meshport_request_duration_seconds',
    help: 'Time from request received to answer written, by listener and cluster',
    labelNames: ['listener', 'cluster'] as const,
    buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });
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
  readonly bytes = new Counter({
    name: 'meshport_bytes_total',
    help: 'Bytes by listener (or upstream) and direction',
    labelNames: ['listener', 'direction'] as const,
    registers: [this.registry],
  });
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
  readonly badFrames = new Counter({
    name: 'meshport_bad_frames_total',
    help: 'Frames rejected as malformed or oversize, by listener and error code',
    labelNames: ['listener', 'code'] as const,
    registers: [this.registry],
  });

  private readonly byCluster = new Map<string, ClusterMetrics>();
  private readonly byteChildren = new Map<string, CounterChild>();

  cluster(listener: string, cluster: string): ClusterMetrics {
    const key = `${listener}|${cluster}`;
    let m = this.byCluster.get(key);
    if (m === undefined) {
      const outcomes = new Map<string, CounterChild>();
      m = {
        requests: {
          bolt: this.requests.labels({ listener, cluster, protocol: 'bolt' }),
          dubbo: this.requests.labels({ listener, cluster, protocol: 'dubbo' }),
        },
        latency: this.latency.labels({ listener, cluster }),
        outcome: (outcome) => {
          let c = outcomes.get(outcome);
          if (c === undefined) outcomes.set(outcome, (c = this.responses.labels({ listener, cluster, outcome })));
          return c;
        },
      };
      this.byCluster.set(key, m);
    }
    return m;
  }

  bytesOf(listener: string, direction: 'in' | 'out'): CounterChild {
    const key = `${listener}|${direction}`;
    let c = this.byteChildren.get(key);
    if (c === undefined) this.byteChildren.set(key, (c = this.bytes.labels({ listener, direction })));
    return c;
  }
}
