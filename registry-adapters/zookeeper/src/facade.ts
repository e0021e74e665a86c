// The ZooKeeper facade: a jute-level proxy between the app's ZooKeeper client and the real ensemble that rewrites
// provider nodes the app creates and provider lists it reads, through the sidecar's Takeover. This file is the server
// (listen, admit, dial the ensemble); facade-connection.ts carries one app connection, facade-session.ts the app's
// sessions, facade-rewrite.ts the rewrites themselves.

import net from 'node:net';
import {
  ClientGate,
  PacedWarning,
  type AllowRemote,
  type RegistryFacade,
  type RegistryLogger,
  type Takeover,
} from '@meshport/registry-core';
import { FacadeConnection } from './facade-connection';
import { FacadeContext } from './facade-session';

export interface ZooKeeperFacadeOptions {
  /** Where the app's ZooKeeper client connects. Port 0 takes any free port (see `address()`). @default 127.0.0.1:0 */
  listen?: { host: string; port: number };
  /**
   * The real ensemble, `h1:p1,h2:p2` (port 2181 when omitted). Each app connection goes to the next server in turn
   * that accepts. No chroot suffix: the app's client applies its own chroot, so the facade sees full paths.
   */
  upstream: string;
  /** The sidecar's side of the rewriting. */
  takeover: Takeover;
  /** @default console.warn */
  logger?: RegistryLogger;
  /**
   * Non-loopback clients this facade accepts: `true` any, a list of addresses/CIDRs, absent or `false` none. A facade
   * bound wider than loopback still refuses other hosts unless this allows them (anyone who reaches a facade can
   * publish providers in the app's name). Loopback clients are always accepted.
   */
  allowRemote?: AllowRemote;
  /**
   * Largest packet accepted from the app, length prefix excluded. ZooKeeper refuses packets above jute.maxbuffer
   * (1 MiB by default) and so does the facade, before buffering them. @default 1 MiB + 1 KiB
   */
  maxPacketBytes?: number;
  /** How long one upstream server may take to accept the TCP connection before the next is tried. @default 5000 */
  upstreamConnectTimeoutMs?: number;
  /**
   * Told how each app connection's dial to the ensemble went: undefined when a server accepted, the last error when
   * none did. The sidecar shows a facade's upstream state from it when it has no session of its own there.
   */
  onUpstream?: (error: Error | undefined) => void;
  /**
   * How long an app that was shown providers keeps being shown them after a read finds none. sofa-rpc-node
   * re-registers by deleting its node and creating it again on every reconnect, so a ZooKeeper restart would otherwise
   * hand every consumer an empty list for a moment, and SOFA RPC closes all its connections on an empty list. When the
   * list is still empty at the end of the hold, the app gets a child-changed notification and reads the empty list.
   * @default 1000
   */
  emptyHoldMs?: number;
}

export const ZOOKEEPER_FACADE_DEFAULTS = {
  listen: { host: '127.0.0.1', port: 0 },
  maxPacketBytes: 1024 * 1024 + 1024,
  upstreamConnectTimeoutMs: 5_000,
  emptyHoldMs: 1_000,
  logger: { warn: (detail: object, message: string) => console.warn(`meshport zookeeper facade: ${message}`, detail) },
  allowRemote: false as AllowRemote,
} satisfies Required<Omit<ZooKeeperFacadeOptions, 'upstream' | 'takeover' | 'onUpstream'>>;

/** ZooKeeper's default client port, used for an upstream entry without one (as ZooKeeper clients do). */
const ZOOKEEPER_DEFAULT_PORT = 2181;

interface Upstream {
  host: string;
  port: number;
}

/**
 * A RegistryFacade for ZooKeeper clients (sofa-rpc-node, Java sofa-rpc, Dubbo, zkCli). Every app connection gets its
 * own upstream connection and everything passes through in order as raw bytes; only provider creates, deletes, reads
 * of provider lists and what refers to the app's own provider nodes are decoded and rewritten. The app's session,
 * ephemeral nodes and watches stay its own: the facade never opens a session of its own.
 */
export class ZooKeeperFacade implements RegistryFacade {
  private readonly listen: { host: string; port: number };
  private readonly upstreams: Upstream[];
  private readonly upstreamConnectTimeoutMs: number;
  private readonly context: FacadeContext;
  /** Closes non-loopback clients at accept unless `allowRemote` lets them in. */
  readonly clients: ClientGate;
  private server: net.Server | undefined;
  private bound: { host: string; port: number } | undefined;
  private readonly connections = new Set<FacadeConnection>();
  /** Where the next app connection starts trying, so connections spread over the ensemble. */
  private nextUpstream = 0;
  /** An app's client retries every few hundred ms while the ensemble is down: one line a minute says so. */
  private readonly refusedWarning: PacedWarning;
  private readonly onUpstream: ((error: Error | undefined) => void) | undefined;

  constructor(options: ZooKeeperFacadeOptions) {
    const logger = options.logger ?? ZOOKEEPER_FACADE_DEFAULTS.logger;
    this.listen = options.listen ?? ZOOKEEPER_FACADE_DEFAULTS.listen;
    this.upstreamConnectTimeoutMs =
      options.upstreamConnectTimeoutMs ?? ZOOKEEPER_FACADE_DEFAULTS.upstreamConnectTimeoutMs;
    this.upstreams = parseEnsemble(options.upstream, logger);
    this.clients = new ClientGate(options.allowRemote, 'zookeeper facade', logger);
    this.refusedWarning = new PacedWarning(logger);
    this.onUpstream = options.onUpstream;
    this.context = new FacadeContext(
      options.takeover,
      logger,
      options.maxPacketBytes ?? ZOOKEEPER_FACADE_DEFAULTS.maxPacketBytes,
      options.emptyHoldMs ?? ZOOKEEPER_FACADE_DEFAULTS.emptyHoldMs,
      () => this.probeUpstream(),
    );
  }

  /** Whether any server of the ensemble accepts a TCP connection (closed right away). */
  private async probeUpstream(): Promise<boolean> {
    for (const target of this.upstreams) {
      const accepted = await new Promise<boolean>((resolve) => {
        const socket = net.connect({ host: target.host, port: target.port });
        const done = (ok: boolean) => {
          clearTimeout(timer);
          socket.destroy();
          resolve(ok);
        };
        const timer = setTimeout(() => done(false), this.upstreamConnectTimeoutMs);
        socket.once('connect', () => done(true));
        socket.once('error', () => done(false));
      });
      if (accepted) return true;
    }
    return false;
  }

  async start(): Promise<void> {
    if (this.server) return;
    const server = net.createServer((socket) => this.accept(socket));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.listen.port, this.listen.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', (error) => this.context.logger.warn({ error }, 'listener error'));
    const address = server.address() as net.AddressInfo;
    this.bound = { host: address.address, port: address.port };
  }

  async close(): Promise<void> {
    if (this.context.closed) return;
    this.context.clear();
    for (const connection of this.connections) connection.destroy();
    this.connections.clear();
    const server = this.server;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  address(): { host: string; port: number } {
    if (!this.bound) throw new Error('ZooKeeperFacade: address() before start() resolved');
    return { ...this.bound };
  }

  private accept(app: net.Socket): void {
    if (this.context.closed) {
      app.destroy();
      return;
    }
    if (!this.clients.admit(app)) return;
    // Nothing is read from the app until its upstream connection is up: TCP holds the ConnectRequest meanwhile.
    app.pause();
    app.setNoDelay(true);
    const start = this.nextUpstream++ % this.upstreams.length;
    const connection = new FacadeConnection(this.context, app);
    this.connections.add(connection);
    app.once('close', () => this.connections.delete(connection));
    this.dialUpstream(start, 0, connection);
  }

  /** Tries the ensemble's servers in turn from `start`; the app connection closes when none accepts. */
  private dialUpstream(start: number, attempt: number, connection: FacadeConnection, lastError?: Error): void {
    if (connection.destroyed) return;
    if (attempt >= this.upstreams.length) {
      this.onUpstream?.(lastError ?? new Error('no ZooKeeper server of the ensemble accepted'));
      this.refusedWarning.warn(
        { upstream: this.upstreams },
        'no ZooKeeper server of the ensemble accepted; closing the app connection',
      );
      this.context.upstreamDown = true;
      connection.destroy();
      return;
    }
    const target = this.upstreams[(start + attempt) % this.upstreams.length]!;
    const socket = net.connect({ host: target.host, port: target.port });
    const timer = setTimeout(() => socket.destroy(new Error('connect timeout')), this.upstreamConnectTimeoutMs);
    const onError = (error: Error) => {
      clearTimeout(timer);
      socket.destroy();
      this.dialUpstream(start, attempt + 1, connection, error);
    };
    socket.once('error', onError);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.off('error', onError);
      this.context.upstreamDown = false;
      this.onUpstream?.(undefined);
      if (connection.destroyed || this.context.closed) {
        socket.destroy();
        return;
      }
      connection.attach(socket);
    });
  }
}

function parseEnsemble(upstream: string, logger: RegistryLogger): Upstream[] {
  const slash = upstream.indexOf('/');
  if (slash >= 0) {
    logger.warn({ upstream }, "the upstream chroot suffix is ignored: the app's client applies its own chroot");
    upstream = upstream.slice(0, slash);
  }
  const servers: Upstream[] = [];
  for (const entry of upstream
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)) {
    const m = /^(\[[^\]]+\]|[^:]+)(?::(\d{1,5}))?$/.exec(entry);
    if (!m) {
      logger.warn({ entry }, 'skipping an upstream entry that is not host[:port]');
      continue;
    }
    servers.push({ host: m[1]!.replace(/^\[|\]$/g, ''), port: m[2] ? Number(m[2]) : ZOOKEEPER_DEFAULT_PORT });
  }
  if (servers.length === 0) servers.push({ host: '127.0.0.1', port: ZOOKEEPER_DEFAULT_PORT });
  return servers;
}
