// Who may hold a connection on a listener, decided at accept before a byte is read: the client gate (allowRemote), one
// address's share (maxConnectionsPerSource) and the listener's total (maxConnections). Kept apart from the router,
// which only ever sees connections already admitted.

import net from 'node:net';
import type { Logger } from 'pino';
import { ClientGate, type AllowRemote } from '@meshport/registry-core';
import type { ListenerName } from './caller';
import { SourceLimit } from './source-limit';
import type { RouterStats } from './stats';

export interface ListenAddress {
  /** @default '127.0.0.1' */
  host?: string;
  /** 0 picks a free port. */
  port: number;
  /**
   * Which peers may connect, decided at accept (the sidecar passes a ClientGate built from `allowRemote`); a refused
   * socket is already destroyed when `admit` returns false. Absent: every peer.
   */
  clients?: { admit(socket: net.Socket): boolean };
  /**
   * The same gate as data both engines apply (`listeners.allowRemote`): loopback always, `true` any peer, a list of
   * addresses/CIDRs those; `false` loopback only. Used when `clients` is absent.
   */
  allowRemote?: AllowRemote;
}

export interface ConnectionCaps {
  maxConnectionsPerSource: number;
  maxConnections: number;
}

/** Why a connection was closed at accept: the label of meshport_connections_refused_total. */
export type RefusalReason = 'per-source-cap' | 'max-connections';

/** Where refusals are told: counted in the router's stats, and logged once per episode. */
export interface RefusalReport {
  readonly stats: Pick<RouterStats, 'connectionsRefused'>;
  readonly logger: Logger;
}

/** Drops past the listener cap come in floods: one warning per this long, not one per connection. */
const LISTENER_CAP_WARN_EVERY_MS = 10_000;

/**
 * A server for listener `name` whose `admitted` sees only the sockets the gate and both caps let in; every other is
 * closed before it is read, and counted.
 */
export function admittingServer(
  name: ListenerName,
  where: ListenAddress,
  caps: ConnectionCaps,
  report: RefusalReport,
  admitted: (socket: net.Socket) => void,
): net.Server {
  const refuse = (reason: RefusalReason, source: string, first: boolean) =>
    reportRefusal(name, reason, source, first, caps, report);
  const clients =
    where.clients ??
    (where.allowRemote !== undefined
      ? new ClientGate(where.allowRemote, `${name} listener`, report.logger)
      : undefined);
  const perSource = new SourceLimit(caps.maxConnectionsPerSource, (source, first) =>
    refuse('per-source-cap', source, first),
  );
  const server = net.createServer((socket) => {
    if (clients && !clients.admit(socket)) return;
    if (!perSource.admit(socket)) return;
    admitted(socket);
  });
  // Node closes connections past maxConnections itself, before our callback; 'drop' tells us about each.
  server.maxConnections = caps.maxConnections;
  let warnedAt = -Infinity;
  server.on('drop', (info?: { remoteAddress?: string }) => {
    const now = Date.now();
    const first = now - warnedAt > LISTENER_CAP_WARN_EVERY_MS;
    if (first) warnedAt = now;
    refuse('max-connections', info?.remoteAddress ?? '', first);
  });
  return server;
}

/** A connection closed at accept by a connection cap: counted, and logged when `first` (once per episode of refusals). */
function reportRefusal(
  listener: ListenerName,
  reason: RefusalReason,
  source: string,
  first: boolean,
  caps: ConnectionCaps,
  report: RefusalReport,
): void {
  report.stats.connectionsRefused.inc({ listener, reason });
  if (!first) return;
  const limit =
    reason === 'per-source-cap'
      ? `${source} holds maxConnectionsPerSource (${caps.maxConnectionsPerSource}) connections`
      : `the listener holds maxConnections (${caps.maxConnections})`;
  report.logger.warn(
    { listener, source, reason },
    `closing new connections at accept: ${limit}; more are counted in meshport_connections_refused_total`,
  );
}
