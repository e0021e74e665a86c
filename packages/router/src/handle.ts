// What the sidecar, the admin server and the tests hold of a router, whichever engine carries its requests.

import type net from 'node:net';
import type { Logger } from 'pino';
import type { ListenerName } from './caller';
import type { RouterSecurity } from './security';
import type { RouterStats } from './stats';
import type { RouterTelemetry } from './telemetry';

export type EngineName = 'native' | 'js';

/** One cluster as the admin `/routes` page shows it (Cluster.describe, with its listener). */
export interface ClusterState {
  listener: ListenerName;
  name: string;
  policy: string;
  pending: number;
  active: number;
  limits: { maxPendingRequests: number; maxActiveRequests: number };
  timeoutMs?: number;
  rules?: unknown;
  routers?: unknown[];
  endpoints: {
    address: string;
    weight: number;
    active: number;
    healthy: boolean;
    consecutiveFailures: number;
    ejections: number;
    ejectedForMs: number;
    /** The identity the provider published (Endpoint.identity): calls to it go over mutual TLS. */
    identity?: string;
  }[];
}

export interface RouterHandle {
  /** Which engine carries the requests: the native loop thread, or the TypeScript reference. */
  readonly engine: EngineName;
  readonly logger: Logger;
  readonly stats: RouterStats;
  start(): Promise<void>;
  address(listener: ListenerName | 'admin'): net.AddressInfo;
  readonly isDraining: boolean;
  /** Caller connections holding an unfinished frame. */
  readonly partialFrames: number;
  /** Calls in flight, across all callers. */
  readonly inflight: number;
  drain(deadlineMs?: number): Promise<void>;
  drainOnSignals(signals?: NodeJS.Signals[]): void;
  /**
   * Replaces the mutual-TLS material, mode and authorization policy at run time (rotation, a policy reload): new
   * connections, both directions, use the new certificate and mode; existing ones finish with what they began with.
   * The policy applies to every request from then on. undefined: plaintext everywhere, every call allowed.
   */
  setSecurity(security: RouterSecurity | undefined): void;
  /**
   * Which calls get an access log line and a span from now on (a config reload); undefined parts are off. Lines
   * already formatted still reach the sink.
   */
  setTelemetry(telemetry: RouterTelemetry | undefined): void;
  /** For the admin `/routes` page. */
  describeRoutes(): ClusterState[] | Promise<ClusterState[]>;
  /** For the admin `/config` page. */
  describeConfig(): Record<string, unknown>;
  /** Serves a connection accepted elsewhere (a capture listener); bytes already read must have been unshifted. */
  adopt(listener: ListenerName, socket: net.Socket): void;
  /**
   * Relays a captured connection that carries nothing to route to its original destination (an IP address), with
   * the bytes already read from it; undefined when the engine leaves relaying to its caller (the TypeScript one).
   */
  relay?(socket: net.Socket, to: { host: string; port: number }, head: Buffer): void;
}
