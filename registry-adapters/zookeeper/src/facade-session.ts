// The ZooKeeper facade's session bookkeeping: the app's sessions outlive its connections (a client resumes its session
// on a new one), so their provider nodes, held lists and end are kept here, apart from any socket.

import type { RegistryLogger, Takeover } from '@meshport/registry-core';
import { childrenChangedNotification, type OwnNode, type OwnNodes } from './facade-rewrite';

/**
 * What the facade knows of one ZooKeeper session of the app: its own provider nodes. It outlives a connection, so a
 * client that reconnects with the same session id (through this facade) keeps its mapping; it is dropped when the
 * session is closed, reported expired, or not resumed within its timeout.
 */
export class FacadeSession implements OwnNodes {
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
    if (!keepUpstream && this.byUpstreamPath.get(node.upstreamPath) === node)
      this.byUpstreamPath.delete(node.upstreamPath);
  }

  /**
   * The children to show for a read of `path`: `children`, unless they are none and the app was shown some, in which
   * case it is shown those again for `holdMs` (see ZooKeeperFacadeOptions.emptyHoldMs) and then told the list changed,
   * so it reads the empty list. A read with providers ends a hold.
   */
  showChildren(path: string, children: string[], holdMs: number): string[] {
    const entry = this.shown.get(path);
    if (children.length > 0 || !entry || entry.children.length === 0 || entry.holdOver) {
      if (entry) clearTimeout(entry.hold);
      this.shown.set(path, { children });
      return children;
    }
    entry.hold ??= setTimeout(() => {
      entry.holdOver = true;
      this.toApp?.(childrenChangedNotification(path));
    }, holdMs);
    entry.hold.unref();
    return entry.children;
  }
}

/**
 * What the facade's connections share: the takeover, the log, the packet limit, and the app's sessions by id
 * (16 hex digits). Internal, so the facade's public surface stays RegistryFacade's.
 */
export class FacadeContext {
  readonly sessions = new Map<string, FacadeSession>();
  closed = false;
  /**
   * Set when the last dial (or orphan-timeout probe) found no server of the ensemble accepting, cleared by the next
   * that connects. While it is set, ZooKeeper cannot have expired an orphaned session (it restores sessions with a
   * fresh timeout when it comes back), so the session's providers are not withdrawn: that would drop the pod's inbound
   * routes for the whole outage while the provider nodes are still there.
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

  /** A connection carrying `session` ended; the session ends too if the app closed it, else once it must be expired. */
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
