// The upstream ZooKeeper registry adapter: ephemeral provider nodes, watched provider lists and watched rule
// directories, in the sofa-rpc-node and Apache Dubbo layouts, kept safe through disconnects and session expiry.

import zookeeper from 'node-zookeeper-client';
import {
  decodeNodeName,
  emptyRuleUrls,
  encodeNodeName,
  interfaceOfServiceKey,
  parseProviderUrl,
  ConnectionStateCell,
  IntendedPublications,
  ProviderLists,
  providerUrlText,
  RegistryError,
  type ConnectionError,
  type ConnectionState,
  type NodeNameStyle,
  type ProvidersListener,
  type ProviderUrl,
  type RegistryAdapter,
  type RegistryLogger,
  type RuleUrls,
  type RulesDialect,
  type Unsubscribe,
  waitAtMost,
} from '@meshport/registry-core';
import { JuteFrameSplitter } from './jute';

/** Which SDK's tree the adapter writes and reads; both are `/{root}/{interface}/providers/{encoded URL}`. */
export type ZooKeeperLayout = 'sofa' | 'dubbo';

export interface ZooKeeperRegistryOptions {
  /** `h1:p1,h2:p2`, optionally with a chroot suffix `/path` (which must already exist, as for every ZK client). */
  connectString: string;
  /** The tree's root; '/sofa-rpc' for the sofa layout and '/dubbo' for the dubbo layout by default. */
  root?: string;
  /** @default 'sofa' */
  layout?: ZooKeeperLayout;
  /** Asked of the server, which clamps it to 2..20 ticks. @default 30000 */
  sessionTimeoutMs?: number;
  /** How node names are written: sofa-rpc-node's encodeURIComponent or Java's URLEncoder. Reading accepts both. */
  nodeNameEncoding?: NodeNameStyle;
  logger?: RegistryLogger;
  /**
   * Delay before retrying a ZooKeeper write or read that failed for a reason other than a lost connection (those are
   * redone on reconnect anyway); null gives up and logs. Attempts count from 1.
   */
  retryStrategy?: (attempt: number) => number | null;
}

export const ZOOKEEPER_REGISTRY_DEFAULTS = {
  sofaRoot: '/sofa-rpc',
  dubboRoot: '/dubbo',
  sessionTimeoutMs: 30_000,
  /** Java sofa-rpc marks an online provider with node data 0x01; sofa-rpc-node and Dubbo write none. */
  javaOnlineData: Buffer.from([0x01]),
} as const;

/** Tokens of armed watches, unique within the process. */
let watchTokens = 0;

/** Capped exponential backoff with jitter, so adapters that failed together do not retry together. */
const defaultRetryStrategy = (attempt: number): number | null =>
  attempt > 10 ? null : Math.min(100 * 2 ** attempt, 5_000) * (0.5 + Math.random() / 2);

/** What one subscribed service needs between reads. */
interface Subscription {
  /** Path of its providers node. */
  readonly path: string;
  /**
   * The token of the one child (or existence) watch this adapter counts on in the current session; undefined when
   * none is armed. A watch firing with another token is a duplicate (e.g. armed twice around a reconnect) and is
   * ignored, so duplicates never multiply.
   */
  armedWatch: number | undefined;
  /** Sequence of the latest read, so an older answer arriving late cannot overwrite a newer one. */
  readSeq: number;
}

/** What one watchRules call needs between reads. */
interface RuleWatch {
  readonly iface: string;
  readonly dialect: RulesDialect;
  readonly onChange: (rules: RuleUrls) => void;
  active: boolean;
  /**
   * The one watcher function armed on every rule path in the given session. node-zookeeper-client registers a
   * function once per path, so re-reading with the same function never piles up watchers.
   */
  watcher: { client: zookeeper.Client; fn: () => void } | undefined;
  /** A re-read is already scheduled: a burst of events (children and data) makes one read. */
  scheduled: boolean;
  readSeq: number;
  /** The last set pushed, as JSON, so an unchanged set is not pushed again. */
  lastPushed: string | undefined;
}

/**
 * A RegistryAdapter over one ZooKeeper session at a time. Every publication is an EPHEMERAL node owned by the current
 * session; when ZooKeeper expires that session the adapter opens a new one and writes them all again.
 */
export class ZooKeeperRegistry implements RegistryAdapter {
  private readonly root: string;
  private readonly layout: ZooKeeperLayout;
  private readonly nodeNameEncoding: NodeNameStyle;
  private readonly sessionTimeoutMs: number;
  private readonly logger: RegistryLogger;
  private readonly retryStrategy: (attempt: number) => number | null;
  private client!: zookeeper.Client;
  /** Runs while disconnected; see watchHandshake. */
  private handshakeWatchdog: NodeJS.Timeout | undefined;
  private readonly connection = new ConnectionStateCell('disconnected');
  private closed = false;
  /**
   * What this adapter means to have published, by providers directory: node paths; and the nodes unpublished while
   * the session could not be reached, removed once it can.
   */
  private readonly publications = new IntendedPublications();
  private readonly lists: ProviderLists;
  private readonly subscriptions = new Map<string, Subscription>();
  private readonly ruleWatches = new Set<RuleWatch>();
  private readonly timers = new Set<NodeJS.Timeout>();
  /** Resolved by the first connection, so the first publish/subscribe acts instead of only being remembered. */
  private firstConnection!: Promise<void>;
  private resolveFirstConnection!: () => void;

  constructor(private readonly options: ZooKeeperRegistryOptions) {
    const layout = (this.layout = options.layout ?? 'sofa');
    const root =
      options.root ??
      (layout === 'dubbo' ? ZOOKEEPER_REGISTRY_DEFAULTS.dubboRoot : ZOOKEEPER_REGISTRY_DEFAULTS.sofaRoot);
    this.root = '/' + root.replace(/^\/+|\/+$/g, '');
    this.nodeNameEncoding = options.nodeNameEncoding ?? (layout === 'dubbo' ? 'java' : 'js');
    this.sessionTimeoutMs = options.sessionTimeoutMs ?? ZOOKEEPER_REGISTRY_DEFAULTS.sessionTimeoutMs;
    this.logger = options.logger ?? { warn: () => {} };
    this.retryStrategy = options.retryStrategy ?? defaultRetryStrategy;
    this.lists = new ProviderLists((error, service) =>
      this.logger.warn({ error, service }, 'a providers listener threw'),
    );
    this.firstConnection = new Promise((resolve) => (this.resolveFirstConnection = resolve));
    this.openSession();
  }

  get state(): ConnectionState {
    return this.connection.value;
  }

  get lastError(): ConnectionError | undefined {
    return this.connection.lastError;
  }

  /** The current session's id and password: what ZooKeeper shows as the ephemeralOwner of our nodes, for diagnostics. */
  get session(): { id: Buffer; password: Buffer } {
    return { id: this.client.getSessionId(), password: this.client.getSessionPassword() };
  }

  /** Where `service`'s providers live: `/{root}/{interface}/providers`. */
  providersPath(service: string): string {
    const iface = interfaceOfServiceKey(service);
    return `${this.root}/${iface}/providers`;
  }

  async publish(service: string, url: ProviderUrl | string): Promise<void> {
    this.assertOpen();
    const text = providerUrlText(url);
    const dir = this.providersPath(service);
    const node = `${dir}/${encodeNodeName(text, this.nodeNameEncoding)}`;
    this.publications.publish(dir, node);
    await this.awaitFirstConnection();
    if (this.connection.value === 'connected') await this.createProviderNode(node, 1);
  }

  async unpublish(service: string, url: ProviderUrl | string): Promise<void> {
    this.assertOpen();
    const dir = this.providersPath(service);
    const node = `${dir}/${encodeNodeName(providerUrlText(url), this.nodeNameEncoding)}`;
    if (!this.publications.unpublish(dir, node)) return;
    if (this.connection.value === 'connected') await this.removeProviderNode(node);
  }

  async subscribe(service: string, onChange: ProvidersListener): Promise<Unsubscribe> {
    this.assertOpen();
    const { remove, push } = this.lists.add(service, onChange);
    let sub = this.subscriptions.get(service);
    if (!sub)
      this.subscriptions.set(service, (sub = { path: this.providersPath(service), armedWatch: undefined, readSeq: 0 }));
    await this.awaitFirstConnection();
    if (this.connection.value === 'connected') {
      // A later subscriber of a service already watched gets the current list too, but only it is pushed to.
      const urls = await this.readProviders(service, sub, sub.armedWatch === undefined);
      if (urls) push(urls);
    }
    let removed = false;
    return () => {
      if (removed) return;
      removed = true;
      remove();
      // The ZooKeeper watch stays registered until it fires; its firing then finds no subscription and stops.
      if (!this.lists.has(service)) this.subscriptions.delete(service);
    };
  }

  /**
   * Where the SDKs of this layout keep `iface`'s rules: Dubbo `/{root}/{iface}/configurators` and `/routers`,
   * Java sofa-rpc `/{root}/{iface}/configs` and `/overrides`.
   */
  rulePaths(
    iface: string,
    dialect: RulesDialect = this.layout,
  ): { configurators: string; routers: string } | { configs: string; overrides: string } {
    // The other SDK's rules live in that SDK's own tree, at its default root.
    const root =
      dialect === this.layout
        ? this.root
        : dialect === 'dubbo'
          ? ZOOKEEPER_REGISTRY_DEFAULTS.dubboRoot
          : ZOOKEEPER_REGISTRY_DEFAULTS.sofaRoot;
    const base = `${root}/${interfaceOfServiceKey(iface)}`;
    return dialect === 'dubbo'
      ? { configurators: `${base}/configurators`, routers: `${base}/routers` }
      : { configs: `${base}/configs`, overrides: `${base}/overrides` };
  }

  /**
   * Watches `iface`'s rule directories (see rulePaths) and pushes the whole set on every change: children of
   * `configurators`, `routers` and `overrides` as decoded URLs (a name that is not valid percent-encoding is passed
   * as it is, for compileRules to report), `configs` as child name -> node data. A missing directory is no rules.
   * `dialect` picks whose rules (default: this adapter's layout): an app may publish Dubbo URLs into the sofa tree
   * (sofa-rpc-node's Dubbo protocol) while its operators write Dubbo's rules under /dubbo.
   */
  async watchRules(
    iface: string,
    onChange: (rules: RuleUrls) => void,
    dialect: RulesDialect = this.layout,
  ): Promise<Unsubscribe> {
    this.assertOpen();
    const watch: RuleWatch = {
      dialect,
      iface: interfaceOfServiceKey(iface),
      onChange,
      active: true,
      watcher: undefined,
      scheduled: false,
      readSeq: 0,
      lastPushed: undefined,
    };
    this.ruleWatches.add(watch);
    await this.awaitFirstConnection();
    if (this.connection.value === 'connected') await this.refreshRules(watch);
    return () => {
      // The ZooKeeper watches stay registered until they fire; their firing then finds the watch inactive.
      watch.active = false;
      this.ruleWatches.delete(watch);
    };
  }

  onStateChange(listener: (state: ConnectionState) => void): Unsubscribe {
    return this.connection.onChange(listener);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.stopHandshakeWatchdog();
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
    this.lists.clear();
    this.subscriptions.clear();
    for (const watch of this.ruleWatches) watch.active = false;
    this.ruleWatches.clear();
    this.publications.clear();
    this.connection.clear();
    this.resolveFirstConnection();
    await this.closeClient(this.client);
  }

  // -------------------------------------------------------------------------------------------------------------
  // Sessions.

  private openSession(): void {
    const client = zookeeper.createClient(this.options.connectString.replace(/\/+$/, ''), {
      sessionTimeout: this.sessionTimeoutMs,
      spinDelay: 200,
      // Requests are not retried inside the client: a lost request is redone by the reconnect handling here.
      retries: 0,
    });
    frameSocketReads(client);
    recordSocketErrors(client, (error) => {
      if (!this.closed && client === this.client) this.connection.fail(error);
    });
    this.client = client;
    client.on('state', (state: zookeeper.State) => {
      // A client replaced after an expiry may still report; only the current one speaks for the adapter.
      if (this.closed || client !== this.client) return;
      if (state === zookeeper.State.SYNC_CONNECTED) this.onConnected();
      else if (state === zookeeper.State.DISCONNECTED) {
        this.connection.set('disconnected');
        this.watchHandshake(client);
      } else if (state === zookeeper.State.EXPIRED) this.onExpired(client);
    });
    client.connect();
    // The first connection too: a server still starting accepts and does not answer, and the client would wait for
    // its whole connect timeout (the session timeout) before trying again.
    this.watchHandshake(client);
  }

  /**
   * node-zookeeper-client arms no timer between a TCP connect and the server's answer to its ConnectRequest, so a
   * connection accepted by a server that is still starting (or already stopping) can hang for good, and the adapter
   * with it. While disconnected, a socket that stayed the same for a whole period without a session is destroyed,
   * which makes the client try again (with the same session id, so the session and its ephemerals survive).
   */
  private watchHandshake(client: zookeeper.Client): void {
    if (this.handshakeWatchdog) return;
    const periodMs = Math.max(500, Math.min(2_000, Math.floor(this.sessionTimeoutMs / 3)));
    let seen: unknown;
    const tick = () => {
      this.handshakeWatchdog = undefined;
      if (this.closed || client !== this.client || this.connection.value === 'connected') return;
      const socket = (
        client as unknown as {
          connectionManager?: { socket?: { connecting?: boolean; destroyed?: boolean; destroy(): void } };
        }
      ).connectionManager?.socket;
      if (socket && socket === seen && !socket.connecting && !socket.destroyed) {
        this.logger.warn(
          { connectString: this.options.connectString },
          'ZooKeeper accepted the connection but did not answer; retrying',
        );
        this.connection.fail(new Error('ZooKeeper accepted the connection but did not answer'));
        socket.destroy();
      }
      seen = socket;
      this.handshakeWatchdog = setTimeout(tick, periodMs);
    };
    this.handshakeWatchdog = setTimeout(tick, periodMs);
  }

  private stopHandshakeWatchdog(): void {
    clearTimeout(this.handshakeWatchdog);
    this.handshakeWatchdog = undefined;
  }

  private onConnected(): void {
    this.stopHandshakeWatchdog();
    this.connection.set('connected');
    this.resolveFirstConnection();
    void this.reconcile(this.client);
  }

  /**
   * Same session or a new one: make upstream match what is intended, then re-read every list (a change during the
   * outage may not have fired a watch). Publications go first, so that after an expiry a subscriber of our own
   * providers never reads the moment between ZooKeeper deleting them and us writing them again.
   */
  private async reconcile(client: zookeeper.Client): Promise<void> {
    await Promise.allSettled(
      this.publications.replay(
        (_dir, node) => this.removeProviderNode(node),
        (_dir, node) => this.createProviderNode(node, 1),
      ),
    );
    if (this.closed || client !== this.client) return;
    for (const [service, sub] of this.subscriptions) void this.refresh(service, sub, sub.armedWatch === undefined);
    for (const watch of this.ruleWatches) void this.refreshRules(watch);
  }

  private onExpired(old: zookeeper.Client): void {
    // ZooKeeper has deleted our ephemerals and forgotten our watches; lists are kept as they were, since an expiry
    // says nothing about the providers, and are re-read once the new session is up.
    this.connection.set('expired');
    for (const sub of this.subscriptions.values()) sub.armedWatch = undefined;
    this.stopHandshakeWatchdog();
    void this.closeClient(old);
    this.openSession();
  }

  private closeClient(client: zookeeper.Client): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, 1_000);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      // The client reports DISCONNECTED once its socket is gone; a client that never connected may not report.
      client.once('disconnected', done);
      client.once('expired', done);
      client.close();
      if (client.getState() !== zookeeper.State.SYNC_CONNECTED) setImmediate(done);
    });
  }

  private async awaitFirstConnection(): Promise<void> {
    await waitAtMost(this.firstConnection, this.sessionTimeoutMs);
    this.assertOpen();
  }

  // -------------------------------------------------------------------------------------------------------------
  // Publications.

  private nodeData(): Buffer | null {
    return this.layout === 'sofa' && this.nodeNameEncoding === 'java'
      ? ZOOKEEPER_REGISTRY_DEFAULTS.javaOnlineData
      : null;
  }

  private async createProviderNode(node: string, attempt: number): Promise<void> {
    const client = this.client;
    const parent = directoryOf(node);
    try {
      await call<string>((cb) => client.mkdirp(parent, null, zookeeper.CreateMode.PERSISTENT, cb));
      // Unpublished or closed while the parent was being made: do not write a node nobody wants.
      if (!this.isIntended(node) || client !== this.client) return;
      await call<string>((cb) => client.create(node, this.nodeData(), zookeeper.CreateMode.EPHEMERAL, cb));
    } catch (error) {
      // Already there: ours from this session (a reconnect) or another publisher's; either way one provider.
      if (codeOf(error) === zookeeper.Exception.NODE_EXISTS) return;
      this.retryLater(error, attempt, `publishing ${node}`, () => {
        if (this.isIntended(node)) void this.createProviderNode(node, attempt + 1);
      });
    }
  }

  private async removeProviderNode(node: string): Promise<void> {
    const client = this.client;
    try {
      await call<void>((cb) => client.remove(node, -1, (err) => cb(err, undefined)));
      this.publications.removed(directoryOf(node), node);
    } catch (error) {
      if (codeOf(error) === zookeeper.Exception.NO_NODE) {
        this.publications.removed(directoryOf(node), node);
        return;
      }
      // Left pending: the next connection retries it.
      if (!isConnectionError(error)) this.logger.warn({ error, node }, 'could not remove a provider node');
    }
  }

  private isIntended(node: string): boolean {
    return !this.closed && this.publications.has(directoryOf(node), node);
  }

  // -------------------------------------------------------------------------------------------------------------
  // Subscriptions.

  private async refresh(service: string, sub: Subscription, arm: boolean, attempt = 1): Promise<void> {
    const urls = await this.readProviders(service, sub, arm, attempt);
    if (urls && this.subscriptions.get(service) === sub) this.lists.push(service, urls);
  }

  /**
   * The provider list as ZooKeeper has it now, arming a watch when asked. Undefined when ZooKeeper could not say
   * (lost connection, expiry, closed): the caller then pushes nothing and the last list stands.
   */
  private async readProviders(
    service: string,
    sub: Subscription,
    arm: boolean,
    attempt = 1,
  ): Promise<string[] | undefined> {
    const client = this.client;
    const seq = ++sub.readSeq;
    const token = arm ? ++watchTokens : undefined;
    const watcher = token !== undefined ? () => this.onWatch(client, service, sub, token) : undefined;
    if (token !== undefined) sub.armedWatch = token;
    let children: string[];
    try {
      children = await call<string[]>((cb) => client.getChildren(sub.path, watcher, cb));
    } catch (error) {
      if (codeOf(error) === zookeeper.Exception.NO_NODE) {
        // No providers node: ZooKeeper's own answer that there are none. getChildren set no watch on a missing node,
        // so watch for its creation instead.
        if (token !== undefined) await this.watchCreation(client, service, sub, token);
        return seq === sub.readSeq && !this.closed ? [] : undefined;
      }
      if (token !== undefined && sub.armedWatch === token) sub.armedWatch = undefined;
      if (!isConnectionError(error)) {
        this.retryLater(error, attempt, `reading ${sub.path}`, () => {
          if (this.subscriptions.get(service) === sub)
            void this.refresh(service, sub, sub.armedWatch === undefined, attempt + 1);
        });
      }
      return undefined;
    }
    // A newer read has been issued meanwhile (or the adapter closed): its answer is the one that counts.
    if (seq !== sub.readSeq || this.closed || client !== this.client) return undefined;
    const urls: string[] = [];
    for (const name of children) {
      try {
        urls.push(providerUrlText(parseProviderUrl(decodeNodeName(name))));
      } catch (error) {
        this.logger.warn({ error, path: sub.path, name }, 'skipping a provider node that is not a provider URL');
      }
    }
    return [...new Set(urls)].sort();
  }

  private async watchCreation(
    client: zookeeper.Client,
    service: string,
    sub: Subscription,
    token: number,
  ): Promise<void> {
    try {
      const stat = await call<zookeeper.Stat | null>((cb) =>
        client.exists(sub.path, () => this.onWatch(client, service, sub, token), cb),
      );
      // Created between the two calls: read now rather than wait for a change that may never come.
      if (stat) setImmediate(() => this.onWatch(client, service, sub, token));
    } catch {
      if (sub.armedWatch === token) sub.armedWatch = undefined;
    }
  }

  private onWatch(client: zookeeper.Client, service: string, sub: Subscription, token: number): void {
    // A watch of an old session, an unsubscribed service, a closed adapter or a duplicate ends here.
    if (this.closed || client !== this.client || this.subscriptions.get(service) !== sub) return;
    if (sub.armedWatch !== token) return;
    sub.armedWatch = undefined;
    void this.refresh(service, sub, true);
  }

  // -------------------------------------------------------------------------------------------------------------
  // Rules.

  private async refreshRules(watch: RuleWatch, attempt = 1): Promise<void> {
    const rules = await this.readRules(watch, attempt);
    if (!rules || !watch.active || this.closed) return;
    const text = JSON.stringify(rules);
    if (text === watch.lastPushed) return;
    watch.lastPushed = text;
    try {
      watch.onChange(rules);
    } catch (error) {
      this.logger.warn({ error, iface: watch.iface }, 'a rules listener threw');
    }
  }

  /** The rule set as ZooKeeper has it now, watches armed; undefined when ZooKeeper could not say. */
  private async readRules(watch: RuleWatch, attempt: number): Promise<RuleUrls | undefined> {
    const client = this.client;
    const seq = ++watch.readSeq;
    if (watch.watcher?.client !== client) watch.watcher = { client, fn: () => this.onRuleWatch(watch, client) };
    const watcher = watch.watcher.fn;
    const paths = this.rulePaths(watch.iface, watch.dialect);
    const rules = emptyRuleUrls();
    try {
      if ('routers' in paths) {
        [rules.configurators, rules.routers] = await Promise.all([
          this.readRuleUrls(client, paths.configurators, watcher),
          this.readRuleUrls(client, paths.routers, watcher),
        ]);
      } else {
        [rules.configs, rules.overrides] = await Promise.all([
          this.readConfigs(client, paths.configs, watcher),
          this.readRuleUrls(client, paths.overrides, watcher),
        ]);
      }
    } catch (error) {
      if (!isConnectionError(error)) {
        this.retryLater(error, attempt, `reading the rules of ${watch.iface}`, () => {
          if (watch.active) void this.refreshRules(watch, attempt + 1);
        });
      }
      return undefined;
    }
    // A newer read has been issued meanwhile (or the session or the watch is gone): its answer is the one that counts.
    if (seq !== watch.readSeq || this.closed || client !== this.client || !watch.active) return undefined;
    return rules;
  }

  private async readRuleUrls(client: zookeeper.Client, path: string, watcher: () => void): Promise<string[]> {
    const names = await this.ruleChildren(client, path, watcher);
    return [
      ...new Set(
        names.map((name) => {
          try {
            return decodeNodeName(name);
          } catch {
            return name;
          }
        }),
      ),
    ].sort();
  }

  private async readConfigs(
    client: zookeeper.Client,
    path: string,
    watcher: () => void,
  ): Promise<Record<string, string>> {
    const names = (await this.ruleChildren(client, path, watcher)).sort();
    const values = await Promise.all(
      names.map(async (name) => {
        try {
          // sofa-rpc's PathChildrenCache watches each config's data too: a changed value is a changed rule.
          const data = await call<Buffer | null>((cb) => getDataWatched(client, `${path}/${name}`, watcher, cb));
          return [name, data ? data.toString('utf8') : ''] as const;
        } catch (error) {
          // Deleted since the listing: the children watch reports it.
          if (codeOf(error) === zookeeper.Exception.NO_NODE) return undefined;
          throw error;
        }
      }),
    );
    return Object.fromEntries(values.filter((v) => v !== undefined));
  }

  /** A rule directory's children; [] when it does not exist, with its creation watched instead. */
  private async ruleChildren(client: zookeeper.Client, path: string, watcher: () => void): Promise<string[]> {
    try {
      return await call<string[]>((cb) => client.getChildren(path, watcher, cb));
    } catch (error) {
      if (codeOf(error) !== zookeeper.Exception.NO_NODE) throw error;
      const stat = await call<zookeeper.Stat | null>((cb) => client.exists(path, watcher, cb));
      // Created between the two calls: read again rather than wait for a change that may never come.
      if (stat) setImmediate(watcher);
      return [];
    }
  }

  private onRuleWatch(watch: RuleWatch, client: zookeeper.Client): void {
    if (this.closed || client !== this.client || !watch.active || watch.scheduled) return;
    watch.scheduled = true;
    setImmediate(() => {
      watch.scheduled = false;
      if (!this.closed && client === this.client && watch.active) void this.refreshRules(watch);
    });
  }

  private retryLater(error: unknown, attempt: number, what: string, again: () => void): void {
    if (this.closed) return;
    // A lost connection or an expiry is healed by onConnected, which redoes everything.
    if (isConnectionError(error)) return;
    const delay = this.retryStrategy(attempt);
    if (delay === null) {
      this.logger.warn({ error, attempt }, `giving up ${what}`);
      return;
    }
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      if (!this.closed) again();
    }, delay);
    this.timers.add(timer);
  }

  private assertOpen(): void {
    if (this.closed) throw new RegistryError('MESHPORT_REGISTRY_CLOSED', 'ZooKeeper registry adapter is closed');
  }
}

/** The slice of node-zookeeper-client's ConnectionManager that frameSocketReads replaces and calls. */
interface ConnectionManagerReads {
  socket: { destroyed: boolean; destroy(): void } | undefined;
  pendingBuffer: Buffer | null;
  onSocketData(chunk: Buffer): void;
}

/**
 * Hands node-zookeeper-client's reply handler one whole frame at a time. Its own onSocketData handles the first
 * frame of a chunk and then calls itself with `Buffer.concat([rest, empty])`: every frame copies the whole remainder
 * of its chunk, so a 64 KiB read of a thousand watch events or a bulk of getChildren answers allocates megabytes of
 * short-lived buffers, quadratic in the frames per read. At 10k endpoints those copies left about 40 MB of freed but
 * fragmented malloc heap in the sidecar (RSS, not V8 heap). Split here, each frame is a view of the chunk it arrived
 * in (only a frame split across reads is assembled), and the library's handler, given exactly one frame with nothing
 * pending, does what it did before. A frame after one that made the library destroy its socket is dropped, where the
 * library would have kept it to prepend to the next connection's first read.
 */
function frameSocketReads(client: zookeeper.Client): void {
  const manager = (client as unknown as { connectionManager?: ConnectionManagerReads }).connectionManager;
  if (!manager || typeof manager.onSocketData !== 'function') return; // another version of the library: left as it is
  const handleFrame = manager.onSocketData;
  let framedSocket: ConnectionManagerReads['socket'];
  let splitter: JuteFrameSplitter | undefined;
  // The client binds onSocketData when it connects, so an own property set before connect() is the one it uses.
  manager.onSocketData = function (this: ConnectionManagerReads, chunk: Buffer): void {
    const socket = this.socket;
    if (!splitter || framedSocket !== socket) {
      // A new connection starts with no partial frame.
      framedSocket = socket;
      const frames = new JuteFrameSplitter(
        // ZooKeeper is trusted not to send more than its own jute.maxbuffer; only a negative length stops this side.
        0x7fffffff,
        (frame) => {
          if (this.socket !== socket || socket?.destroyed) {
            frames.stop();
            return;
          }
          this.pendingBuffer = null;
          handleFrame.call(this, frame);
        },
        () => socket?.destroy(), // a negative length: the stream is lost; the client reconnects
      );
      splitter = frames;
    }
    splitter.push(chunk);
  };
}

/**
 * node-zookeeper-client swallows the error of every connection attempt (it only retries), so an adapter that cannot
 * connect would say nothing about why: this hands each one (ECONNREFUSED, ENOTFOUND, a connect timeout) to `record`.
 */
function recordSocketErrors(client: zookeeper.Client, record: (error: Error) => void): void {
  const manager = (
    client as unknown as { connectionManager?: { onSocketError?(e: Error): void; onSocketConnectTimeout?(): void } }
  ).connectionManager;
  if (!manager || typeof manager.onSocketError !== 'function' || typeof manager.onSocketConnectTimeout !== 'function')
    return;
  const onError = manager.onSocketError;
  const onTimeout = manager.onSocketConnectTimeout;
  // Bound at each connect, like onSocketData: own properties set before connect() are the ones used.
  manager.onSocketError = function (this: unknown, error: Error): void {
    record(error);
    onError.call(this, error);
  };
  manager.onSocketConnectTimeout = function (this: unknown): void {
    record(Object.assign(new Error('connect timed out'), { code: 'ETIMEDOUT' }));
    onTimeout.call(this);
  };
}

/** The providers directory a provider node is in (an encoded node name has no '/'). */
function directoryOf(node: string): string {
  return node.slice(0, node.lastIndexOf('/'));
}

function call<T>(start: (cb: (err: Error | null, value: T) => void) => void): Promise<T> {
  return new Promise((resolve, reject) => start((err, value) => (err ? reject(err) : resolve(value))));
}

/** getData(path, watcher, cb): node-zookeeper-client has it, the package's type declarations only the unwatched form. */
function getDataWatched(
  client: zookeeper.Client,
  path: string,
  watcher: () => void,
  cb: (err: Error | null, data: Buffer | null) => void,
): void {
  (
    client.getData as unknown as (
      path: string,
      watcher: () => void,
      cb: (err: Error | null, data: Buffer | null) => void,
    ) => void
  ).call(client, path, watcher, cb);
}

function codeOf(error: unknown): number | undefined {
  return error instanceof zookeeper.Exception ? error.getCode() : undefined;
}

function isConnectionError(error: unknown): boolean {
  const code = codeOf(error);
  return code === zookeeper.Exception.CONNECTION_LOSS || code === zookeeper.Exception.SESSION_EXPIRED;
}
