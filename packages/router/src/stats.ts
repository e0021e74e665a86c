// The router's Prometheus metrics (prom-client), served as text on the admin `/stats` page.

import { Counter, Gauge, Histogram, Registry } from 'prom-client';

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
  readonly upstreamConnections = new Gauge({
    name: 'meshport_upstream_connections',
    help: 'Open upstream connections by cluster',
    labelNames: ['cluster'] as const,
    registers: [this.registry],
  });
  readonly badFrames = new Counter({
    name: 'meshport_bad_frames_total',
    help: 'Frames rejected as malformed or oversize, by listener and error code',
    labelNames: ['listener', 'code'] as const,
    registers: [this.registry],
  });
}
