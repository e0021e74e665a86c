// What both engines share of a router's set-up: its options and their defaults, the logger, the `/config` page and
// signal handling. Its own module so that the native engine's control plane does not import the TypeScript engine.

import type net from 'node:net';
import pino, { type Logger } from 'pino';
import type { AdminOptions } from './admin';
import type { ListenerName } from './caller';
import { CLUSTER_LIMIT_DEFAULTS, OUTLIER_DEFAULTS, type ClusterLimits, type OutlierOptions } from './cluster';
import type { EngineName, RouterHandle } from './handle';
import type { ListenAddress } from './listener-admission';
import type { RouteTable } from './route-table';
import type { RouterSecurity } from './security';
import type { LabelCaps, RouterTelemetry, TelemetrySink } from './telemetry';

export interface RouterOptions {
  routeTable: RouteTable;
  /**
   * Which engine carries requests, for createRouter: `native` (@meshport/engine's loop thread) or `js` (this class).
   * @default the MESHPORT_ENGINE environment variable, else 'native'
   */
  engine?: EngineName;
  /** Where the app's calls come in. `false` to run without. @default { host: '127.0.0.1', port: 0 } */
  outbound?: ListenAddress | false;
  /** Where remote sidecars' calls come in. @default { host: '127.0.0.1', port: 0 } */
  inbound?: ListenAddress | false;
  /**
   * Mutual TLS between sidecars and the inbound authorization policy (security.ts). Absent: plaintext, every call
   * allowed. Replaced at run time with `setSecurity` (certificate rotation, a policy reload).
   */
  security?: RouterSecurity;
  /**
   * Access logs and trace spans (telemetry.ts): which calls each engine writes a line for. Absent: neither. Lines go
   * to `onTelemetry` in batches; replaced at run time with `setTelemetry` (a config reload).
   */
  telemetry?: RouterTelemetry;
  /** Where access log lines and spans go. Without it the router writes none, whatever `telemetry` says. */
  onTelemetry?: TelemetrySink;
  /** Caps on the per-service metrics' method and caller labels. @default LABEL_CAP_DEFAULTS */
  labelCaps?: Partial<LabelCaps>;
  /**
   * Admin HTTP; always bound to 127.0.0.1. `false` to run without. Pages, a readiness check and a `/config` page of
   * the embedding daemon's go here too (AdminExtensions). @default { port: 0 }
   */
  admin?: AdminOptions | false;
  /** Upstream connections per endpoint and protocol. @default 1 */
  connectionsPerEndpoint?: number;
  /** @default 16 MiB */
  maxFrameSize?: number;
  /** Timeout of a Bolt request whose frame carries none (0 or less). @default 3000 */
  boltDefaultTimeoutMs?: number;
  /** Timeout of Dubbo requests (the frame carries none). @default 3000 */
  dubboTimeoutMs?: number;
  /** Tries on other endpoints after a connect failure (the request never left). @default 2 */
  connectRetries?: number;
  /** @default 1000 */
  connectTimeoutMs?: number;
  /** Idle time on an upstream connection before a heartbeat is sent. @default 10000 */
  heartbeatIntervalMs?: number;
  /** An unanswered heartbeat closes the connection after this long (Bolt's own expectation). @default 1000 */
  heartbeatTimeoutMs?: number;
  /** Calls one caller connection may have in flight before the router stops reading it. @default 256 */
  maxCallerInflight?: number;
  /** How long a drain waits for calls in flight before failing them. @default 10000 */
  drainTimeoutMs?: number;
  /**
   * A caller must finish each frame within this long of its first byte, or its connection is closed (after the
   * answers of its accepted calls): a slow-loris caller trickling a header cannot hold a connection and a buffer for
   * ever. Time the router itself stops reading (backpressure) does not count. A connection the router has ended
   * (bad frame, drain, stall) is destroyed if the caller has not closed its side this long after. @default 10000
   */
  frameTimeoutMs?: number;
  /**
   * Caller connections that may hold an unfinished frame at once, over both listeners. Past it the one whose frame
   * began earliest is closed, so many stalled connections cannot crowd out callers that send whole frames. @default 1024
   */
  maxPartialFrames?: number;
  /**
   * Caller connections one remote address may hold on a listener; past it new ones from that address are closed at
   * accept. Callers that connect and send nothing hold no frame, only sockets: this keeps one host from taking them
   * all. @default 1024
   */
  maxConnectionsPerSource?: number;
  /** Caller connections a listener holds at once, over all sources; past it new ones are closed at accept. @default 16384 */
  maxConnections?: number;
  /**
   * For this long after start, a request for a service with no route yet waits for one instead of getting the
   * no-route error: a restarted sidecar's apps reconnect at once, before its registries have reported. Released as
   * soon as the route appears, refused as before when the hold is over. @default 0 (the sidecar sets 3000)
   */
  startupHoldMs?: number;
  outlier?: OutlierOptions;
  limits?: ClusterLimits;
  logger?: Logger;
}

export const ROUTER_DEFAULTS = {
  connectionsPerEndpoint: 1,
  maxFrameSize: 16 * 1024 * 1024,
  boltDefaultTimeoutMs: 3000,
  dubboTimeoutMs: 3000,
  connectRetries: 2,
  connectTimeoutMs: 1000,
  heartbeatIntervalMs: 10_000,
  heartbeatTimeoutMs: 1000,
  drainTimeoutMs: 10_000,
  maxCallerInflight: 256,
  frameTimeoutMs: 10_000,
  maxPartialFrames: 1024,
  maxConnectionsPerSource: 1024,
  maxConnections: 16_384,
  startupHoldMs: 0,
};

/** The options with every default filled in. */
export type RouterSettings = typeof ROUTER_DEFAULTS;

/** What both engines share of a router's set-up: its settings, logger, `/config` page and signal handling. */
export const routerSetup = {
  /** The defaults, overridden by every option given (an option set to undefined keeps its default). */
  settings(options: RouterOptions): RouterSettings {
    const given = Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined));
    return { ...ROUTER_DEFAULTS, ...(given as Partial<RouterSettings>) };
  },

  logger(options: RouterOptions): Logger {
    return options.logger ?? pino({ name: 'meshport-router', level: process.env.MESHPORT_LOG_LEVEL ?? 'info' });
  },

  /**
   * The `/config` page: the effective settings with every default filled in and where the listeners are bound. Not
   * the settings spread as they are: those also carry the route table and the logger from the options.
   */
  config(
    engine: EngineName,
    settings: RouterSettings,
    options: RouterOptions,
    bound: (name: ListenerName | 'admin') => net.AddressInfo | undefined,
  ) {
    const listeners: Record<string, { host: string; port: number }> = {};
    for (const name of ['outbound', 'inbound', 'admin'] as const) {
      const where = bound(name);
      if (where) listeners[name] = { host: where.address, port: where.port };
    }
    return {
      engine,
      ...Object.fromEntries(Object.keys(ROUTER_DEFAULTS).map((k) => [k, settings[k as keyof RouterSettings]])),
      listeners,
      outlier: { ...OUTLIER_DEFAULTS, ...options.outlier },
      limits: { ...CLUSTER_LIMIT_DEFAULTS, ...options.limits },
    };
  },

  /** Drains the router on the given signals, once. */
  drainOnSignals(router: Pick<RouterHandle, 'logger' | 'drain'>, signals: NodeJS.Signals[]): void {
    const onSignal = (signal: NodeJS.Signals) => {
      for (const s of signals) process.off(s, onSignal);
      router.logger.info({ signal }, 'signal received');
      void router.drain();
    };
    for (const s of signals) process.on(s, onSignal);
  },
};
