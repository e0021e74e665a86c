// One app connection of the ZooKeeper facade and its upstream connection: frames both ways in order, the handshake,
// and which frames go through the rewrites, with the session bookkeeping each rewrite implies.

import type net from 'node:net';
import type { BadFrameLength } from './jute';
import { JuteFrameSplitter, OP, REPLY_BODY_OFFSET, REQUEST_BODY_OFFSET, XID, ZK_ERR } from './jute';
import {
  hideChildren,
  listReadOf,
  rewriteCreateReply,
  rewriteNotification,
  rewriteOwnNodeDelete,
  rewriteOwnNodePath,
  rewriteProviderCreate,
  rewriteProviderList,
  rewriteSetWatches,
  type ListRead,
  type OwnNode,
} from './facade-rewrite';
import type { FacadeContext, FacadeSession } from './facade-session';

/** Bounds of the wait for ZooKeeper's ConnectResponse, which is a third of the session timeout the app asks for. */
const HANDSHAKE_TIMEOUT_MIN_MS = 1_000;
const HANDSHAKE_TIMEOUT_MAX_MS = 10_000;

/** What the reply to a request the facade rewrote (or must rewrite the reply of) has to become. */
type Pending = { kind: 'create'; type: number; node: OwnNode } | { kind: 'delete'; node: OwnNode } | ListRead;

/**
 * One app connection and its upstream connection. Requests flow app -> upstream, replies and notifications
 * upstream -> app, each through one frame splitter; frames nobody rewrites are written on as views of the chunk
 * they arrived in.
 */
export class FacadeConnection {
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
    this.fromApp = new JuteFrameSplitter(
      facade.maxPacketBytes,
      (f) => this.onRequest(f),
      (bad) => this.onOversize(bad),
    );
    // ZooKeeper is trusted not to send more than its own jute.maxbuffer; only a negative length stops this side.
    this.fromUpstream = new JuteFrameSplitter(
      0x7fffffff,
      (f) => this.onReply(f),
      (bad) => this.onOversize(bad, 'upstream'),
    );
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
    this.facade.logger.warn(
      { ...bad, remote: this.app.remoteAddress, remotePort: this.app.remotePort, side },
      `${side} sent a packet length out of range; closing the connection`,
    );
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
      this.facade.logger.warn(
        { length: frame.length, remote: this.app.remoteAddress },
        'app sent a packet shorter than a request header; closing',
      );
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
        out = this.onCreate(frame, type);
        break;
      case OP.delete:
        out = this.onDelete(frame);
        break;
      case OP.getChildren:
      case OP.getChildren2: {
        const read = listReadOf(frame, type);
        if (read) this.pending.set(frame.readInt32BE(4), read);
        break;
      }
      case OP.setWatches:
        out = rewriteSetWatches(frame, this.session);
        break;
      case OP.closeSession:
        this.session.closeRequested = true;
        break;
      // Multi (14) passes through unrewritten: neither sofa-rpc nor Dubbo (nor Curator's creatingParentsIfNeeded)
      // registers providers in a transaction, and the library's TransactionRequest cannot decode a request.
      // SetWatches2 (105, persistent watches) likewise passes as is.
      default:
        out = rewriteOwnNodePath(frame, type, this.session);
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
      this.facade.logger.warn(
        { length: frame.length, remote: this.app.remoteAddress },
        'app did not start with a ZooKeeper ConnectRequest; closing',
      );
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
    const handshakeMs = Math.min(
      Math.max(Math.floor(askedTimeoutMs / 3), HANDSHAKE_TIMEOUT_MIN_MS),
      HANDSHAKE_TIMEOUT_MAX_MS,
    );
    this.handshakeTimer = setTimeout(() => {
      this.facade.logger.warn(
        { upstream: this.upstream?.remotePort, handshakeMs },
        'ZooKeeper did not answer the ConnectRequest; closing so the app retries',
      );
      this.destroy();
    }, handshakeMs);
    this.toUpstream(frame);
  }

  private onCreate(frame: Buffer, type: number): Buffer | undefined {
    const created = rewriteProviderCreate(frame, type, this.facade.takeover);
    if (!created) return undefined;
    if ('unreadable' in created) {
      this.facade.logger.warn(
        { error: created.unreadable, path: created.path },
        'a created provider node is not a provider URL; passing it through unrewritten',
      );
      return undefined;
    }
    // Mapped before the reply: requests pipelined behind the create may already name the node.
    this.session!.add(created.node);
    this.pending.set(frame.readInt32BE(4), { kind: 'create', type, node: created.node });
    return created.frame;
  }

  private onDelete(frame: Buffer): Buffer | undefined {
    const deleted = rewriteOwnNodeDelete(frame, this.session!);
    if (!deleted) return undefined;
    // A throwing takeover is logged; the node is deleted upstream anyway, as the app asked.
    this.facade.withdraw(deleted.node, 'on delete');
    // Unmapped at the reply (requests pipelined behind this one still name the node); a create of the same node
    // pipelined behind it replaces the mapping, which the reply then leaves alone.
    this.pending.set(frame.readInt32BE(4), { kind: 'delete', node: deleted.node });
    return deleted.frame;
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
      out = rewriteNotification(frame, this.session!);
    } else if (this.pending.size > 0) {
      const pending = this.pending.get(xid);
      if (pending) {
        this.pending.delete(xid);
        out = this.onRewrittenReply(frame, pending);
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

  private onRewrittenReply(frame: Buffer, pending: Pending): Buffer | undefined {
    const err = frame.readInt32BE(16);
    switch (pending.kind) {
      case 'create':
        return this.onCreateReply(frame, pending, err);
      case 'delete':
        if (err === ZK_ERR.ok || err === ZK_ERR.noNode) this.session!.remove(pending.node, true);
        else {
          // The node is still there (a version mismatch, say): it is still the app's, and still published.
          try {
            this.facade.takeover.providerPublished(pending.node.appUrl);
          } catch (error) {
            this.facade.logger.warn(
              { error, path: pending.node.appPath },
              'takeover.providerPublished failed after a failed delete',
            );
          }
        }
        return undefined;
      case 'providers':
        return err === ZK_ERR.ok ? this.onProviderList(frame, pending) : undefined;
      case 'routers':
        return err === ZK_ERR.ok ? hideChildren(frame, pending.type) : undefined;
    }
  }

  private onCreateReply(frame: Buffer, pending: Extract<Pending, { kind: 'create' }>, err: number): Buffer | undefined {
    const { node } = pending;
    // The app gets back the path it asked for, the node it will delete and watch.
    if (err === ZK_ERR.ok) return rewriteCreateReply(frame, pending.type, node);
    // NODE_EXISTS: the node is upstream already (this session's, written before a reconnect, or a twin): the mapping
    // holds. Any other failure means nothing was published.
    if (err !== ZK_ERR.nodeExists && this.session!.byAppPath.get(node.appPath) === node) {
      this.session!.remove(node);
      this.facade.withdraw(node, 'after a failed create');
    }
    return undefined;
  }

  private onProviderList(frame: Buffer, read: Extract<ListRead, { kind: 'providers' }>): Buffer | undefined {
    const session = this.session!;
    const list = rewriteProviderList(frame, read, this.facade.takeover, session, (names) =>
      session.showChildren(read.path, names, this.facade.emptyHoldMs),
    );
    const { unreadable } = list;
    if (unreadable.length > 0) {
      const leftOut = list.frame !== undefined || 'takeoverError' in list;
      this.facade.logger.warn(
        { path: read.path, unreadable: unreadable.slice(0, 5), count: unreadable.length },
        leftOut
          ? 'provider nodes that are not provider URLs left out'
          : 'no provider node is a provider URL; passing the list through',
      );
    }
    if ('takeoverError' in list) {
      this.facade.logger.warn(
        { error: list.takeoverError, path: read.path },
        'takeover.providersRead failed; passing the list through',
      );
    }
    return list.frame;
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
