// The ZooKeeper facade: a jute-level proxy between the app's ZooKeeper client and the real ensemble that rewrites
// provider nodes the app creates and provider lists it reads, through the sidecar's Takeover.

import net from 'node:net';
import {
  ClientGate,
  PacedWarning,
  decodeNodeName,
  encodeNodeName,
  type AllowRemote,
  formatProviderUrl,
  parseProviderUrl,
  type NodeNameStyle,
  type ProviderUrl,
  type RegistryFacade,
  type RegistryLogger,
  type Takeover,
} from '@meshport/registry-core';
import {
  CREATE_FLAG,
  decodeRecord,
  encodeFrame,
  JuteFrameSplitter,
  OP,
  peekString,
  RECORDS,
  REPLY_BODY_OFFSET,
  REQUEST_BODY_OFFSET,
  XID,
  ZK_ERR,
  type BadFrameLength,
  type RecordClass,
} from './jute';

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

/** WatcherEvent codes (ZooKeeper's Watcher.Event.EventType and KeeperState). */
const WATCH_EVENT = { nodeChildrenChanged: 4 } as const;
const WATCH_STATE = { syncConnected: 3 } as const;

/** Bounds of the wait for ZooKeeper's ConnectResponse, which is a third of the session timeout the app asks for. */
const HANDSHAKE_TIMEOUT_MIN_MS = 1_000;
const HANDSHAKE_TIMEOUT_MAX_MS = 10_000;

/** ZooKeeper's default client port, used for an upstream entry without one (as ZooKeeper clients do). */
const ZOOKEEPER_DEFAULT_PORT = 2181;

/**
 * `/<root...>/<interface>/providers` and a provider node under it. The root is one or more segments, which covers
 * `/sofa-rpc` (sofa-rpc-node, Java sofa-rpc), `/dubbo` or a Dubbo group, and a chroot the client put in front.
 */
const PROVIDERS_DIR = /^(?:\/[^/]+)+\/([^/]+)\/providers$/;
const PROVIDER_NODE = /^((?:\/[^/]+)+\/([^/]+)\/providers)\/([^/]+)$/;
/**
 * Dubbo's condition routers of an interface. The sidecar applies them to the real providers; the app is shown none,
 * because applied again to the one local URL it is handed, a rule naming provider hosts would leave it nothing.
 */
const ROUTERS_DIR = /^(?:\/[^/]+)+\/[^/]+\/routers$/;

/** Requests on the app's own node whose only change is the path (their replies carry no path). */
const PATH_ONLY_REQUESTS = new Map<number, RecordClass>([
  [OP.exists, RECORDS.ExistsRequest],
  [OP.getData, RECORDS.GetDataRequest],
  [OP.setData, RECORDS.SetDataRequest],
  [OP.getACL, RECORDS.GetACLRequest],
  [OP.setACL, RECORDS.SetACLRequest],
  [OP.check, RECORDS.CheckVersionRequest],
]);

/** A provider node the app created through the facade: the app's path and URL and what went upstream instead. */
interface OwnNode {
  readonly appPath: string;
  readonly upstreamPath: string;
  readonly appUrl: ProviderUrl;
  readonly ephemeral: boolean;
}

/**
 * What the facade knows of one ZooKeeper session of the app: its own provider nodes. It outlives a connection, so a
 * client that reconnects with the same session id (through this facade) keeps its mapping; it is dropped when the
 * session is closed, reported expired, or not resumed within its timeout.
 */
class FacadeSession {
  id: string | undefined;
  /** Negotiated session timeout, from the ConnectResponse. */
  timeoutMs = 0;
  readonly byAppPath = new Map<string, OwnNode>();
  readonly byUpstreamPath = new Map<string, OwnNode>();
  /** Connections currently carrying this session. */
  connections = 0;
  orphanTimer: NodeJS.Timeout | undefined;
  /** The last probe of an orphan timeout found no ZooKeeper server accepting. */
  upstreamWasDown = false;
  closeRequested = false;
  /**
   * Per providers dir: the children last shown to the app, and a hold in progress over an empty read. Kept with the
   * session, not the connection: after a ZooKeeper restart the app reads again on a new connection.
   */
  readonly shown = new Map<string, { children: string[]; hold?: NodeJS.Timeout; holdOver?: boolean }>();
  /** Writes to the app on the connection now carrying the session (for notifications the facade makes). */
  toApp: ((frame: Buffer) => void) | undefined;

  add(node: OwnNode): void {
    const old = this.byAppPath.get(node.appPath);
    if (old) this.byUpstreamPath.delete(old.upstreamPath);
    this.byAppPath.set(node.appPath, node);
    this.byUpstreamPath.set(node.upstreamPath, node);
  }

  /**
   * Forgets `node` unless a newer node took its app path meanwhile. After a delete the upstream path stays known
   * (until replaced or the session ends): the NodeDeleted notification of a watch on it may come after the reply.
   */
  remove(node: OwnNode, keepUpstream = false): void {
    if (this.byAppPath.get(node.appPath) === node) this.byAppPath.delete(node.appPath);
    if (!keepUpstream && this.byUpstreamPath.get(node.upstreamPath) === node) this.byUpstreamPath.delete(node.upstreamPath);
  }
}

/** What the reply to a request the facade rewrote (or must rewrite the reply of) has to become. */
type Pending =
  | { kind: 'create'; type: number; node: OwnNode }
  | { kind: 'delete'; node: OwnNode }
  | { kind: 'children'; type: number; iface: string; path: string }
  | { kind: 'routers'; type: number };

interface Upstream {
  host: string;
  port: number;
}

/**
 * What the facade's connections share: the takeover, the log, the packet limit, and the app's sessions by id
 * (16 hex digits). Internal, so the facade's public surface stays RegistryFacade's.
 */
class FacadeContext {
  readonly sessions = new Map<string, FacadeSession>();
  closed = false;
  /**
   * Set when the last dial (or orphan-timeout probe) found no server of the ensemble accepting, cleared by the next
   * that connects. While it is set, ZooKeeper cannot have expired an orphaned session (it restores sessions with a fresh timeout when it comes
   * back), so the session's providers are not withdrawn: that would drop the pod's inbound routes for the whole
   * outage while the provider nodes are still there.
   */
  upstreamDown = false;

  constructor(
    readonly takeover: Takeover,
    readonly logger: RegistryLogger,
    readonly maxPacketBytes: number,
    readonly emptyHoldMs: number,
    /** Whether any server of the ensemble accepts a TCP connection now. */
    readonly probeUpstream: () => Promise<boolean>,
  ) {}

  /** The state of session `id` when it is known here (a reconnect), else a new one not yet keyed. */
  adoptSession(id: string | undefined): FacadeSession {
    const session = (id !== undefined ? this.sessions.get(id) : undefined) ?? new FacadeSession();
    clearTimeout(session.orphanTimer);
    session.orphanTimer = undefined;
    session.upstreamWasDown = false;
    session.connections++;
    return session;
  }

  /** ZooKeeper gave the session its id and timeout (ConnectResponse). */
  keySession(session: FacadeSession, id: string, timeoutMs: number): void {
    session.timeoutMs = timeoutMs;
    if (session.id === id) return;
    session.id = id;
    this.sessions.set(id, session);
  }

  /** A connection carrying `session` ended; the session ends too if the app closed it, else once it must have expired. */
  releaseSession(session: FacadeSession): void {
    session.connections--;
    if (session.connections > 0 || this.closed) return;
    if (session.closeRequested || session.id === undefined) {
      this.endSession(session);
      return;
    }
    // The app's client normally reconnects within its timeout; past that ZooKeeper has expired the session.
    this.armOrphanTimer(session);
  }

  private armOrphanTimer(session: FacadeSession): void {
    clearTimeout(session.orphanTimer);
    session.orphanTimer = setTimeout(() => void this.orphanTimedOut(session), session.timeoutMs + 1_000);
    session.orphanTimer.unref();
  }

  /**
   * An orphaned session's timeout is over. When ZooKeeper cannot be reached now, or could not be during the wait, it
   * has not expired the session (it restores sessions with a new timeout when it starts again): wait another timeout,
   * probing the ensemble, so that a session whose app is really gone still ends a timeout after ZooKeeper is back.
   */
  private async orphanTimedOut(session: FacadeSession): Promise<void> {
    session.orphanTimer = undefined;
    const up = await this.probeUpstream().catch(() => false);
    if (session.connections > 0 || this.closed || session.orphanTimer) return;
    if (session.id === undefined || this.sessions.get(session.id) !== session) return; // ended meanwhile
    const wait = !up || this.upstreamDown || session.upstreamWasDown;
    this.upstreamDown = !up;
    session.upstreamWasDown = !up;
    if (wait) this.armOrphanTimer(session);
    else this.endSession(session);
  }

  /**
   * The session is over (closed by the app, expired, or abandoned): ZooKeeper has deleted its ephemeral nodes, so
   * their providers are withdrawn from the sidecar too. Persistent ones stay published upstream.
   */
  endSession(session: FacadeSession): void {
    clearTimeout(session.orphanTimer);
    if (session.id !== undefined && this.sessions.get(session.id) === session) this.sessions.delete(session.id);
    for (const node of session.byAppPath.values()) {
      if (node.ephemeral) this.withdraw(node, 'at session end');
    }
    session.byAppPath.clear();
    for (const entry of session.shown.values()) clearTimeout(entry.hold);
    session.shown.clear();
    session.byUpstreamPath.clear();
  }

  /** Tells the sidecar a provider of the app is gone; a throwing takeover is logged, never breaks the connection. */
  withdraw(node: OwnNode, when: string): void {
    try {
      this.takeover.providerWithdrawn(node.appUrl);
    } catch (error) {
      this.logger.warn({ error, path: node.appPath }, `takeover.providerWithdrawn failed ${when}`);
    }
  }

  clear(): void {
    this.closed = true;
    for (const session of this.sessions.values()) clearTimeout(session.orphanTimer);
    this.sessions.clear();
  }
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
    this.upstreamConnectTimeoutMs = options.upstreamConnectTimeoutMs ?? ZOOKEEPER_FACADE_DEFAULTS.upstreamConnectTimeoutMs;
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
      this.refusedWarning.warn({ upstream: this.upstreams }, 'no ZooKeeper server of the ensemble accepted; closing the app connection');
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

/**
 * One app connection and its upstream connection. Requests flow app -> upstream, replies and notifications
 * upstream -> app, each through one frame splitter; frames nobody rewrites are written on as views of the chunk
 * they arrived in.
 */
class FacadeConnection {
  destroyed = false;
  private upstream: net.Socket | undefined;
  private session: FacadeSession | undefined;
  /** Session id the app asked to resume (16 hex digits), or undefined for a new session. */
  private requestedSession: string | undefined;
  private connected = false;
  /** Runs from the ConnectRequest to ZooKeeper's answer; see onConnectRequest. */
  private handshakeTimer: NodeJS.Timeout | undefined;
  /**
   * Requests whose replies need rewriting, by xid. Keyed rather than a FIFO of every request: ZooKeeper answers auth
   * packets (xid -4) outside the request pipeline, so only the replies of ordinary xids are in request order, and
   * this way an unrewritten reply costs one map lookup.
   */
  private readonly pending = new Map<number, Pending>();
  private readonly fromApp: JuteFrameSplitter;
  private readonly fromUpstream: JuteFrameSplitter;

  constructor(
    private readonly facade: FacadeContext,
    private readonly app: net.Socket,
  ) {
    this.fromApp = new JuteFrameSplitter(facade.maxPacketBytes, (f) => this.onRequest(f), (bad) => this.onOversize(bad));
    // ZooKeeper is trusted not to send more than its own jute.maxbuffer; only a negative length stops this side.
    this.fromUpstream = new JuteFrameSplitter(0x7fffffff, (f) => this.onReply(f), (bad) => this.onOversize(bad, 'upstream'));
    app.on('error', () => this.destroy());
    app.on('close', () => this.destroy());
  }

  attach(upstream: net.Socket): void {
    this.upstream = upstream;
    upstream.setNoDelay(true);
    upstream.on('error', () => this.destroy());
    // An upstream gone means the app's client must reconnect (and resume its session) on its own.
    upstream.on('close', () => this.destroy());
    pipeFrames(this.app, upstream, this.fromApp, () => this.destroyed);
    pipeFrames(upstream, this.app, this.fromUpstream, () => this.destroyed);
    this.app.resume();
  }

  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.fromApp.stop();
    this.fromUpstream.stop();
    this.app.destroy();
    this.upstream?.destroy();
    this.pending.clear();
    clearTimeout(this.handshakeTimer);
    if (this.session?.toApp === this.sendToApp) this.session.toApp = undefined;
    if (this.session) this.facade.releaseSession(this.session);
    this.session = undefined;
  }

  private onOversize(bad: BadFrameLength, side: 'app' | 'upstream' = 'app'): void {
    this.facade.logger.warn({ ...bad, remote: this.app.remoteAddress, remotePort: this.app.remotePort, side },
      `${side} sent a packet length out of range; closing the connection`);
    this.destroy();
  }

  private toUpstream(frame: Buffer): void {
    writeFrame(this.upstream!, this.app, frame);
  }

  private readonly sendToApp = (frame: Buffer): void => {
    if (!this.destroyed) this.toApp(frame);
  };

  private toApp(frame: Buffer): void {
    writeFrame(this.app, this.upstream!, frame);
  }

  // ---------------------------------------------------------------------------------------------------------------
  // App -> ZooKeeper.

  private onRequest(frame: Buffer): void {
    if (this.destroyed) return;
    if (!this.session) {
      this.onConnectRequest(frame);
      return;
    }
    if (frame.length < REQUEST_BODY_OFFSET) {
      this.facade.logger.warn({ length: frame.length, remote: this.app.remoteAddress }, 'app sent a packet shorter than a request header; closing');
      this.destroy();
      return;
    }
    const type = frame.readInt32BE(8);
    let out: Buffer | undefined;
    switch (type) {
      case OP.create:
      case OP.create2:
      case OP.createContainer:
      case OP.createTTL:
        out = this.rewriteCreate(frame, type);
        break;
      case OP.delete:
        out = this.rewriteDelete(frame);
        break;
      case OP.getChildren:
      case OP.getChildren2:
        this.noteChildrenRead(frame, type);
        break;
      case OP.setWatches:
        out = this.rewriteSetWatches(frame);
        break;
      case OP.closeSession:
        this.session.closeRequested = true;
        break;
      // Multi (14) passes through unrewritten: neither sofa-rpc nor Dubbo (nor Curator's creatingParentsIfNeeded)
      // registers providers in a transaction, and the library's TransactionRequest cannot decode a request.
      // SetWatches2 (105, persistent watches) likewise passes as is.
      default: {
        const cls = PATH_ONLY_REQUESTS.get(type);
        if (cls && this.session.byAppPath.size > 0) out = this.rewriteOwnPath(frame, cls);
      }
    }
    this.toUpstream(out ?? frame);
  }

  /**
   * The ConnectRequest (no request header) goes on as raw bytes: the Java client appends a readOnly byte that a
   * decode-and-encode would drop. Only its shape is checked, so that a stray protocol is refused here.
   */
  private onConnectRequest(frame: Buffer): void {
    // len | protocolVersion int | lastZxidSeen long | timeOut int | sessionId long | passwd buffer [| readOnly]
    const passwdLength = frame.length >= 32 ? frame.readInt32BE(28) : -2;
    if (frame.length < 32 || passwdLength < -1 || 32 + Math.max(passwdLength, 0) > frame.length) {
      this.facade.logger.warn({ length: frame.length, remote: this.app.remoteAddress }, 'app did not start with a ZooKeeper ConnectRequest; closing');
      this.destroy();
      return;
    }
    const id = frame.toString('hex', 20, 28);
    this.requestedSession = id === '0000000000000000' ? undefined : id;
    this.session = this.facade.adoptSession(this.requestedSession);
    this.session.toApp = this.sendToApp;
    // A ZooKeeper server that is still starting can accept the connection and never answer, and node-zookeeper-client
    // waits for that answer forever. Like the Java client's connect timeout, give up after a share of the session
    // timeout the app asked for: closing makes its client try again (same session) while the session still lives.
    const askedTimeoutMs = frame.readInt32BE(16);
    const handshakeMs = Math.min(Math.max(Math.floor(askedTimeoutMs / 3), HANDSHAKE_TIMEOUT_MIN_MS), HANDSHAKE_TIMEOUT_MAX_MS);
    this.handshakeTimer = setTimeout(() => {
      this.facade.logger.warn({ upstream: this.upstream?.remotePort, handshakeMs }, 'ZooKeeper did not answer the ConnectRequest; closing so the app retries');
      this.destroy();
    }, handshakeMs);
    this.toUpstream(frame);
  }

  private rewriteCreate(frame: Buffer, type: number): Buffer | undefined {
    const path = peekString(frame, REQUEST_BODY_OFFSET);
    const m = path !== undefined ? PROVIDER_NODE.exec(path) : null;
    if (!m) return undefined;
    const [, dir, , name] = m as unknown as [string, string, string, string];
    const record = decodeRecord(type === OP.createTTL ? RECORDS.CreateTTLRequest : RECORDS.CreateRequest, frame, REQUEST_BODY_OFFSET);
    if (!record) return undefined;
    const flags = record.flags as number;
    // A sequential provider node gets a counter appended upstream, which is no provider URL any SDK writes.
    if (flags & CREATE_FLAG.sequential) return undefined;
    let appUrl: ProviderUrl;
    let upstreamPath: string;
    try {
      const text = decodeNodeName(name);
      appUrl = parseProviderUrl(text);
      const style = nodeNameStyleOf(name, text) ?? defaultStyleOf(dir);
      upstreamPath = `${dir}/${encodeNodeName(formatProviderUrl(this.facade.takeover.providerPublished(appUrl)), style)}`;
    } catch (error) {
      this.facade.logger.warn({ error, path }, 'a created provider node is not a provider URL; passing it through unrewritten');
      return undefined;
    }
    const node: OwnNode = { appPath: path!, upstreamPath, appUrl, ephemeral: (flags & CREATE_FLAG.ephemeral) !== 0 };
    // Mapped before the reply: requests pipelined behind the create may already name the node.
    this.session!.add(node);
    this.pending.set(frame.readInt32BE(4), { kind: 'create', type, node });
    record.path = upstreamPath;
    return encodeFrame(frame, REQUEST_BODY_OFFSET, record);
  }

  private rewriteDelete(frame: Buffer): Buffer | undefined {
    const session = this.session!;
    if (session.byAppPath.size === 0) return undefined;
    const path = peekString(frame, REQUEST_BODY_OFFSET);
    // Only the app's own nodes: deleting someone else's provider node is not the app withdrawing a service of its own.
    const node = path !== undefined ? session.byAppPath.get(path) : undefined;
    if (!node) return undefined;
    const record = decodeRecord(RECORDS.DeleteRequest, frame, REQUEST_BODY_OFFSET);
    if (!record) return undefined;
    // A throwing takeover is logged; the node is deleted upstream anyway, as the app asked.
    this.facade.withdraw(node, 'on delete');
    // Unmapped at the reply (requests pipelined behind this one still name the node); a create of the same node
    // pipelined behind it replaces the mapping, which the reply then leaves alone.
    this.pending.set(frame.readInt32BE(4), { kind: 'delete', node });
    record.path = node.upstreamPath;
    return encodeFrame(frame, REQUEST_BODY_OFFSET, record);
  }

  private rewriteOwnPath(frame: Buffer, cls: RecordClass): Buffer | undefined {
    const path = peekString(frame, REQUEST_BODY_OFFSET);
    const node = path !== undefined ? this.session!.byAppPath.get(path) : undefined;
    if (!node) return undefined;
    const record = decodeRecord(cls, frame, REQUEST_BODY_OFFSET);
    if (!record) return undefined;
    record.path = node.upstreamPath;
    return encodeFrame(frame, REQUEST_BODY_OFFSET, record);
  }

  private noteChildrenRead(frame: Buffer, type: number): void {
    const path = peekString(frame, REQUEST_BODY_OFFSET);
    const m = path !== undefined ? PROVIDERS_DIR.exec(path) : null;
    if (m) this.pending.set(frame.readInt32BE(4), { kind: 'children', type, iface: m[1]!, path: path! });
    else if (path !== undefined && ROUTERS_DIR.test(path)) this.pending.set(frame.readInt32BE(4), { kind: 'routers', type });
  }

  /** On reconnect the client re-arms its watches by path: watches on its own nodes name the app paths. */
  private rewriteSetWatches(frame: Buffer): Buffer | undefined {
    const session = this.session!;
    if (session.byAppPath.size === 0) return undefined;
    const record = decodeRecord(RECORDS.SetWatches, frame, REQUEST_BODY_OFFSET);
    if (!record) return undefined;
    let changed = false;
    for (const field of ['dataWatches', 'existWatches', 'childWatches']) {
      const paths = record[field] as string[] | undefined;
      if (!paths) continue;
      record[field] = paths.map((p) => {
        const node = session.byAppPath.get(p);
        if (!node) return p;
        changed = true;
        return node.upstreamPath;
      });
    }
    return changed ? encodeFrame(frame, REQUEST_BODY_OFFSET, record) : undefined;
  }

  // ---------------------------------------------------------------------------------------------------------------
  // ZooKeeper -> app.

  private onReply(frame: Buffer): void {
    if (this.destroyed) return;
    if (!this.connected) {
      this.onConnectResponse(frame);
      return;
    }
    if (frame.length < REPLY_BODY_OFFSET) {
      this.toApp(frame);
      return;
    }
    const xid = frame.readInt32BE(4);
    let out: Buffer | undefined;
    if (xid === XID.notification) {
      if (this.session!.byUpstreamPath.size > 0) out = this.rewriteNotification(frame);
    } else if (this.pending.size > 0) {
      const pending = this.pending.get(xid);
      if (pending) {
        this.pending.delete(xid);
        out = this.rewriteReply(frame, pending);
      }
    }
    this.toApp(out ?? frame);
  }

  /** Passed on as raw bytes (the Java server adds a readOnly byte); the session id and timeout are only peeked. */
  private onConnectResponse(frame: Buffer): void {
    this.connected = true;
    clearTimeout(this.handshakeTimer);
    const session = this.session;
    // len | protocolVersion int | timeOut int | sessionId long | passwd buffer [| readOnly]
    if (session && frame.length >= 20) {
      const timeoutMs = frame.readInt32BE(8);
      const id = frame.toString('hex', 12, 20);
      if (timeoutMs <= 0 || id === '0000000000000000') {
        // ZooKeeper's answer to resuming an expired session: it is gone, with its ephemeral nodes.
        this.facade.endSession(session);
      } else {
        if (this.requestedSession !== undefined && this.requestedSession !== id) this.facade.endSession(session);
        this.facade.keySession(session, id, timeoutMs);
      }
    }
    this.toApp(frame);
  }

  private rewriteReply(frame: Buffer, pending: Pending): Buffer | undefined {
    const err = frame.readInt32BE(16);
    switch (pending.kind) {
      case 'create':
        return this.rewriteCreateReply(frame, pending, err);
      case 'delete':
        if (err === ZK_ERR.ok || err === ZK_ERR.noNode) this.session!.remove(pending.node, true);
        else {
          // The node is still there (a version mismatch, say): it is still the app's, and still published.
          try {
            this.facade.takeover.providerPublished(pending.node.appUrl);
          } catch (error) {
            this.facade.logger.warn({ error, path: pending.node.appPath }, 'takeover.providerPublished failed after a failed delete');
          }
        }
        return undefined;
      case 'children':
        return err === ZK_ERR.ok ? this.rewriteChildrenReply(frame, pending) : undefined;
      case 'routers':
        return err === ZK_ERR.ok ? this.hideChildren(frame, pending.type) : undefined;
    }
  }

  private rewriteCreateReply(frame: Buffer, pending: Extract<Pending, { kind: 'create' }>, err: number): Buffer | undefined {
    const { node } = pending;
    if (err === ZK_ERR.ok) {
      const cls = pending.type === OP.create ? RECORDS.CreateResponse : RECORDS.Create2Response;
      const record = decodeRecord(cls, frame, REPLY_BODY_OFFSET);
      if (!record) return undefined;
      // The app gets back the path it asked for, the node it will delete and watch.
      record.path = node.appPath;
      return encodeFrame(frame, REPLY_BODY_OFFSET, record);
    }
    // NODE_EXISTS: the node is upstream already (this session's, written before a reconnect, or a twin): the mapping
    // holds. Any other failure means nothing was published.
    if (err !== ZK_ERR.nodeExists && this.session!.byAppPath.get(node.appPath) === node) {
      this.session!.remove(node);
      this.facade.withdraw(node, 'after a failed create');
    }
    return undefined;
  }

  /**
   * A provider list read: every child that is a provider URL goes to the takeover, whose answer the app gets, named
   * in the style the children use. Children that are not provider URLs are left out of the reply as well as the
   * takeover's input: the app must see only what the sidecar routes, and something the facade cannot read might
   * still be an endpoint an SDK dials around the mesh. When no child at all is readable, the reply passes through
   * unrewritten rather than turning a non-empty list into an empty one (which makes SOFA RPC drop every connection).
   */
  /** The reply with no children; the Stat (GetChildren2) stays ZooKeeper's, which no SDK compares with the list. */
  private hideChildren(frame: Buffer, type: number): Buffer | undefined {
    const record = decodeRecord(type === OP.getChildren2 ? RECORDS.GetChildren2Response : RECORDS.GetChildrenResponse, frame, REPLY_BODY_OFFSET);
    if (!record) return undefined;
    record.children = [];
    return encodeFrame(frame, REPLY_BODY_OFFSET, record);
  }

  private rewriteChildrenReply(frame: Buffer, pending: Extract<Pending, { kind: 'children' }>): Buffer | undefined {
    const v2 = pending.type === OP.getChildren2;
    const record = decodeRecord(v2 ? RECORDS.GetChildren2Response : RECORDS.GetChildrenResponse, frame, REPLY_BODY_OFFSET);
    if (!record) return undefined;
    const children = (record.children as string[] | undefined) ?? [];
    const real: ProviderUrl[] = [];
    let style: NodeNameStyle | undefined;
    const unreadable: string[] = [];
    for (const name of children) {
      try {
        const text = decodeNodeName(name);
        real.push(parseProviderUrl(text));
        style ??= nodeNameStyleOf(name, text);
      } catch {
        unreadable.push(name);
      }
    }
    if (unreadable.length > 0) {
      this.facade.logger.warn({ path: pending.path, unreadable: unreadable.slice(0, 5), count: unreadable.length },
        real.length > 0 ? 'provider nodes that are not provider URLs left out' : 'no provider node is a provider URL; passing the list through');
      if (real.length === 0) return undefined;
    }
    let shown: ProviderUrl[];
    try {
      shown = this.facade.takeover.providersRead(pending.iface, real);
    } catch (error) {
      this.facade.logger.warn({ error, path: pending.path }, 'takeover.providersRead failed; passing the list through');
      return undefined;
    }
    const nameStyle = style ?? defaultStyleOf(pending.path);
    // The app's own providers also appear under the names it created: sofa-rpc-node's publish() waits until its own
    // URL shows up in the list it reads, and an app that calls itself may as well skip both hops.
    const own = children.flatMap((name) => {
      const node = this.session!.byUpstreamPath.get(`${pending.path}/${name}`);
      return node ? [node.appPath.slice(pending.path.length + 1)] : [];
    });
    // The Stat (GetChildren2) stays ZooKeeper's: its numChildren may then differ from the list, which no SDK reads.
    record.children = this.holdEmpty(pending.path, [...shown.map((url) => encodeNodeName(formatProviderUrl(url), nameStyle)), ...own]);
    return encodeFrame(frame, REPLY_BODY_OFFSET, record);
  }

  /**
   * The children to show for a read: `children`, unless they are none and the app was shown some, in which case it is
   * shown those again for `emptyHoldMs` (see ZooKeeperFacadeOptions.emptyHoldMs). A read with providers ends a hold.
   */
  private holdEmpty(path: string, children: string[]): string[] {
    const session = this.session!;
    const entry = session.shown.get(path);
    if (children.length > 0 || !entry || entry.children.length === 0 || entry.holdOver) {
      if (entry) clearTimeout(entry.hold);
      session.shown.set(path, { children });
      return children;
    }
    entry.hold ??= setTimeout(() => {
      entry.holdOver = true;
      // A notification (xid -1, zxid -1) the app's client handles like ZooKeeper's own: it re-reads, and now sees
      // the empty list. Notifications may come between any two replies, so this cannot break the reply order.
      const header = Buffer.alloc(REPLY_BODY_OFFSET);
      header.writeInt32BE(XID.notification, 4);
      header.writeBigInt64BE(-1n, 8);
      const event = new RECORDS.WatcherEvent();
      Object.assign(event, { type: WATCH_EVENT.nodeChildrenChanged, state: WATCH_STATE.syncConnected, path });
      session.toApp?.(encodeFrame(header, REPLY_BODY_OFFSET, event));
    }, this.facade.emptyHoldMs);
    entry.hold.unref();
    return entry.children;
  }

  private rewriteNotification(frame: Buffer): Buffer | undefined {
    // WatcherEvent: type int | state int | path ustring
    const path = peekString(frame, REPLY_BODY_OFFSET + 8);
    const node = path !== undefined ? this.session!.byUpstreamPath.get(path) : undefined;
    if (!node) return undefined;
    const record = decodeRecord(RECORDS.WatcherEvent, frame, REPLY_BODY_OFFSET);
    if (!record) return undefined;
    record.path = node.appPath;
    return encodeFrame(frame, REPLY_BODY_OFFSET, record);
  }
}

/**
 * Feeds `from`'s bytes to `splitter`, corking `to` per chunk so that the frames of one chunk leave in one writev.
 * Backpressure: writeFrame pauses the reading side when the writing side's buffer is full.
 */
function pipeFrames(from: net.Socket, to: net.Socket, splitter: JuteFrameSplitter, destroyed: () => boolean): void {
  from.on('data', (chunk: Buffer) => {
    if (destroyed()) return;
    to.cork();
    splitter.push(chunk);
    to.uncork();
  });
}

function writeFrame(to: net.Socket, from: net.Socket, frame: Buffer): void {
  if (to.destroyed) return;
  if (!to.write(frame) && !from.isPaused()) {
    from.pause();
    to.once('drain', () => from.resume());
  }
}

/**
 * Which SDK spelled a node name: sofa-rpc-node (encodeURIComponent) or Java (URLEncoder). Undefined when both spell
 * it the same, which is the usual case: they differ only on space and `!~'()`.
 */
function nodeNameStyleOf(name: string, text: string): NodeNameStyle | undefined {
  const js = encodeNodeName(text, 'js');
  const java = encodeNodeName(text, 'java');
  if (js === java) return undefined;
  if (name === js) return 'js';
  if (name === java) return 'java';
  // Spelled by neither exactly (lower-case hex, say): '+' is only ever URLEncoder's space.
  return name.includes('+') ? 'java' : 'js';
}

/** When the names do not tell: Dubbo's tree is written by Java, the rest by sofa-rpc-node's default. */
function defaultStyleOf(path: string): NodeNameStyle {
  return path.startsWith('/dubbo/') ? 'java' : 'js';
}

function parseEnsemble(upstream: string, logger: RegistryLogger): Upstream[] {
  const slash = upstream.indexOf('/');
  if (slash >= 0) {
    logger.warn({ upstream }, 'the upstream chroot suffix is ignored: the app\'s client applies its own chroot');
    upstream = upstream.slice(0, slash);
  }
  const servers: Upstream[] = [];
  for (const entry of upstream.split(',').map((s) => s.trim()).filter(Boolean)) {
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
