// The upstream Redis registry adapter: provider hashes with expiry timestamps and keyspace messages, in the Apache
// Dubbo 2.7 Redis registry layout, kept safe through disconnects and a registry that restarts empty.

import { Cluster, Redis, type ClusterNode, type ClusterOptions, type RedisOptions } from 'ioredis';
import {
  interfaceOfServiceKey,
  parseProviderUrl,
  ConnectionStateCell,
  IntendedPublications,
  ProviderLists,
  providerUrlText,
  RegistryError,
  type ConnectionError,
  type ConnectionState,
  type ProvidersListener,
  type ProviderUrl,
  type RegistryAdapter,
  type RegistryLogger,
  type Unsubscribe,
  waitAtMost,
} from '@meshport/registry-core';

export interface RedisRegistryOptions {
  /** `redis://[:password@]host:port[/db]` for a standalone server; merged with `redis` when both are given. */
  url?: string;
  /** ioredis options, passed through: a standalone server, or Sentinel with `sentinels` and `name`. */
  redis?: RedisOptions;
  /** A Redis Cluster instead of one server; `url` and `redis` are then ignored. */
  cluster?: { nodes: ClusterNode[]; options?: ClusterOptions };
  /** @default '/dubbo' */
  root?: string;
  /** How far ahead each provider field's expiry timestamp is written. @default 60000 */
  expiryMs?: number;
  /** How often this adapter's own fields are written again with a new expiry. @default 30000 */
  renewMs?: number;
  /** How long the first publish or subscribe waits for the first connection before only being remembered. @default 10000 */
  connectTimeoutMs?: number;
  logger?: RegistryLogger;
}

export const REDIS_REGISTRY_DEFAULTS = {
  root: '/dubbo',
  expiryMs: 60_000,
  renewMs: 30_000,
  connectTimeoutMs: 10_000,
  registerMessage: 'register',
  unregisterMessage: 'unregister',
} as const;

type Client = Redis | Cluster;

/** What one subscribed service needs between reads. */
interface Subscription {
  /** Its providers hash: `/{root}/{interface}/providers`. */
  readonly key: string;
  /** The channel pattern covering every category of its interface. */
  readonly pattern: string;
  /** The providers last pushed, URL text -> expiry epoch ms as last read. */
  known: Map<string, number>;
  /** Sequence of the latest read, so an older answer arriving late cannot overwrite a newer one. */
  readSeq: number;
  /** Set when a read that may remove providers was asked for; the next read that completes honours it. */
  replace: boolean;
  /** Re-reads when the earliest known field expires. */
  expiryTimer: NodeJS.Timeout | undefined;
}

/**
 * A RegistryAdapter over two Redis connections: one for commands, one dedicated to PSUBSCRIBE. Every publication is a
 * hash field whose value is its expiry time; the adapter renews its fields, and after any reconnect writes them all
 * again (a restarted Redis without persistence has lost them).
 *
 * Removals are trusted only from what says so: an `unregister` message, or a field's expiry time passing. A read after
 * a reconnect or a `register` message only adds, keeping known providers until their last known expiry, so a
 * registry that comes back empty never empties a list before the providers have had their chance to write again.
 */
export class RedisRegistry implements RegistryAdapter {
  private readonly root: string;
  private readonly expiryMs: number;
  private readonly renewMs: number;
  private readonly connectTimeoutMs: number;
  private readonly logger: RegistryLogger;
  private readonly cmd: Client;
  private readonly sub: Client;
  private cmdReady = false;
  private subReady = false;
  private readonly connection = new ConnectionStateCell('disconnected');
  /** When the adapter last became connected (ms since the epoch); 0 before. */
  private connectedAt = 0;
  private closed = false;
  /** What this adapter means to have published, by hash key: URL text fields; and the removals Redis has not confirmed. */
  private readonly publications = new IntendedPublications();
  private readonly lists: ProviderLists;
  private readonly subscriptions = new Map<string, Subscription>();
  /** Subscribed patterns and how many services use each. */
  private readonly patterns = new Map<string, number>();
  private readonly renewTimer: NodeJS.Timeout;
  private readonly firstConnection: Promise<void>;
  private resolveFirstConnection!: () => void;

  constructor(options: RedisRegistryOptions = {}) {
    this.root = '/' + (options.root ?? REDIS_REGISTRY_DEFAULTS.root).replace(/^\/+|\/+$/g, '');
    this.expiryMs = options.expiryMs ?? REDIS_REGISTRY_DEFAULTS.expiryMs;
    this.renewMs = options.renewMs ?? REDIS_REGISTRY_DEFAULTS.renewMs;
    this.connectTimeoutMs = options.connectTimeoutMs ?? REDIS_REGISTRY_DEFAULTS.connectTimeoutMs;
    this.logger = options.logger ?? { warn: () => {} };
    this.lists = new ProviderLists((error, service) =>
      this.logger.warn({ error, service }, 'a providers listener threw'),
    );
    this.firstConnection = new Promise((resolve) => (this.resolveFirstConnection = resolve));
    this.cmd = createClient(options);
    this.sub = createClient(options);
    this.wire();
    this.renewTimer = setInterval(() => this.renew(), this.renewMs);
  }

  get state(): ConnectionState {
    return this.connection.value;
  }

  get lastError(): ConnectionError | undefined {
    return this.connection.lastError;
  }

  /** Where `service`'s providers live: `/{root}/{interface}/providers`. */
  providersKey(service: string): string {
    return `${this.interfacePath(service)}/providers`;
  }

  async publish(service: string, url: ProviderUrl | string): Promise<void> {
    this.assertOpen();
    const key = this.providersKey(service);
    const text = providerUrlText(url);
    this.publications.publish(key, text);
    await this.awaitFirstConnection();
    if (this.cmdReady) await this.writeField(key, text, true);
  }

  async unpublish(service: string, url: ProviderUrl | string): Promise<void> {
    this.assertOpen();
    const key = this.providersKey(service);
    const text = providerUrlText(url);
    if (!this.publications.unpublish(key, text)) return;
    if (this.cmdReady) await this.removeField(key, text);
  }

  async subscribe(service: string, onChange: ProvidersListener): Promise<Unsubscribe> {
    this.assertOpen();
    const { remove } = this.lists.add(service, onChange);
    let sub = this.subscriptions.get(service);
    if (!sub) {
      sub = {
        key: this.providersKey(service),
        pattern: `${this.interfacePath(service)}/*`,
        known: new Map(),
        readSeq: 0,
        replace: true,
        expiryTimer: undefined,
      };
      this.subscriptions.set(service, sub);
      await this.addPattern(sub.pattern);
    }
    await this.awaitFirstConnection();
    // A later subscriber of a service already read gets the list too; ProviderLists pushes only what it has not seen.
    if (this.connection.value === 'connected') await this.refresh(service, sub, false);
    let removed = false;
    const current = sub;
    return () => {
      if (removed) return;
      removed = true;
      remove();
      if (!this.lists.has(service) && this.subscriptions.get(service) === current) {
        this.subscriptions.delete(service);
        clearTimeout(current.expiryTimer);
        void this.dropPattern(current.pattern);
      }
    };
  }

  onStateChange(listener: (state: ConnectionState) => void): Unsubscribe {
    return this.connection.onChange(listener);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.renewTimer);
    for (const sub of this.subscriptions.values()) clearTimeout(sub.expiryTimer);
    this.subscriptions.clear();
    this.lists.clear();
    this.publications.clear();
    this.patterns.clear();
    this.connection.clear();
    this.resolveFirstConnection();
    await Promise.all([quit(this.cmd), quit(this.sub)]);
  }

  // -------------------------------------------------------------------------------------------------------------
  // Connections.

  private wire(): void {
    const warn = (which: string) => (error: unknown) => {
      if (this.closed) return;
      const before = this.connection.lastError;
      this.connection.fail(error);
      // ioredis retries every second or so: the same error again while still down is counted, not logged again (the
      // sidecar warns about a registry that stays down at its own bounded pace).
      if (
        before &&
        this.connection.value !== 'connected' &&
        before.at >= this.connectedAt &&
        before.message === this.connection.lastError!.message
      )
        return;
      this.logger.warn({ error, connection: which }, 'Redis connection error');
    };
    this.cmd.on('error', warn('command'));
    this.sub.on('error', warn('subscriber'));
    this.cmd.on('ready', () => {
      if (this.closed) return;
      this.cmdReady = true;
      this.maybeConnected();
    });
    this.sub.on('ready', () => void this.onSubscriberReady());
    const lost = (which: 'cmd' | 'sub') => () => {
      if (which === 'cmd') this.cmdReady = false;
      else this.subReady = false;
      if (!this.closed) this.connection.set('disconnected');
    };
    this.cmd.on('close', lost('cmd'));
    this.sub.on('close', lost('sub'));
    this.sub.on('pmessage', (_pattern: string, channel: string, message: string) => this.onMessage(channel, message));
  }

  private async onSubscriberReady(): Promise<void> {
    if (this.closed) return;
    const done = new Set<string>();
    try {
      // Patterns added while a PSUBSCRIBE is in flight are picked up by the next round.
      for (;;) {
        const patterns = [...this.patterns.keys()].filter((p) => !done.has(p));
        if (patterns.length === 0 || this.closed) break;
        await this.sub.psubscribe(...patterns);
        for (const p of patterns) done.add(p);
      }
    } catch (error) {
      // The connection went again; its next 'ready' retries.
      if (!this.closed) this.logger.warn({ error }, 'could not subscribe to provider channels');
      return;
    }
    if (this.closed || this.sub.status !== 'ready') return;
    this.subReady = true;
    this.maybeConnected();
  }

  private maybeConnected(): void {
    if (!this.cmdReady || !this.subReady || this.connection.value === 'connected') return;
    this.connectedAt = Date.now();
    this.connection.set('connected');
    this.resolveFirstConnection();
    void this.reconcile();
  }

  /**
   * After any (re)connection: make Redis hold what is intended (a restarted Redis may have lost it all), then re-read
   * every list (a message sent during the outage was not heard). The reads only add; see the class comment.
   */
  private async reconcile(): Promise<void> {
    await Promise.allSettled(
      this.publications.replay(
        (key, field) => this.removeField(key, field),
        (key, field) => this.writeField(key, field, true),
      ),
    );
    if (this.closed || this.connection.value !== 'connected') return;
    for (const [service, sub] of this.subscriptions) void this.refresh(service, sub, false);
  }

  private async awaitFirstConnection(): Promise<void> {
    await waitAtMost(this.firstConnection, this.connectTimeoutMs);
    this.assertOpen();
  }

  // -------------------------------------------------------------------------------------------------------------
  // Publications.

  /** HSET the field with a fresh expiry; PUBLISH `register` when asked, or when the field was missing (a renewal). */
  private async writeField(key: string, field: string, announce: boolean): Promise<void> {
    try {
      const added = await this.cmd.hset(key, field, String(Date.now() + this.expiryMs));
      // Unpublished meanwhile: take it back rather than leave a field nobody renews.
      if (!this.publications.has(key, field)) {
        if (!this.closed) await this.removeField(key, field);
        return;
      }
      if (announce || added > 0) await this.cmd.publish(key, REDIS_REGISTRY_DEFAULTS.registerMessage);
    } catch (error) {
      // Redone by the next reconnect or renewal.
      if (!this.closed && this.cmdReady) this.logger.warn({ error, key, field }, 'could not publish a provider');
    }
  }

  private async removeField(key: string, field: string): Promise<void> {
    try {
      await this.cmd.hdel(key, field);
      await this.cmd.publish(key, REDIS_REGISTRY_DEFAULTS.unregisterMessage);
      this.publications.removed(key, field);
    } catch (error) {
      // Left pending: the next connection retries it.
      if (!this.closed && this.cmdReady) this.logger.warn({ error, key, field }, 'could not remove a provider');
    }
  }

  private renew(): void {
    if (this.closed || !this.cmdReady) return;
    for (const [key, field] of this.publications.published()) void this.writeField(key, field, false);
  }

  // -------------------------------------------------------------------------------------------------------------
  // Subscriptions.

  private async addPattern(pattern: string): Promise<void> {
    const count = this.patterns.get(pattern) ?? 0;
    this.patterns.set(pattern, count + 1);
    if (count > 0 || !this.subReady) return;
    try {
      await this.sub.psubscribe(pattern);
    } catch (error) {
      // The subscriber connection went; its 'ready' subscribes every pattern again.
      if (!this.closed) this.logger.warn({ error, pattern }, 'could not subscribe to provider channels');
    }
  }

  private async dropPattern(pattern: string): Promise<void> {
    const count = (this.patterns.get(pattern) ?? 1) - 1;
    if (count > 0) {
      this.patterns.set(pattern, count);
      return;
    }
    this.patterns.delete(pattern);
    if (this.closed || !this.subReady) return;
    try {
      await this.sub.punsubscribe(pattern);
    } catch {
      // Gone with the connection anyway.
    }
  }

  private onMessage(channel: string, message: string): void {
    if (this.closed) return;
    const replace = message !== REDIS_REGISTRY_DEFAULTS.registerMessage;
    for (const [service, sub] of this.subscriptions) {
      if (channel.startsWith(sub.pattern.slice(0, -1))) void this.refresh(service, sub, replace);
    }
  }

  /**
   * Reads the providers hash and pushes the live providers. With `replace` the hash is the whole answer; otherwise
   * providers known before and not yet expired are kept even when missing. Nothing is pushed when Redis could not say.
   */
  private async refresh(service: string, sub: Subscription, replace: boolean): Promise<void> {
    if (replace) sub.replace = true;
    const seq = ++sub.readSeq;
    let hash: Record<string, string>;
    try {
      hash = await this.cmd.hgetall(sub.key);
    } catch (error) {
      if (!this.closed && this.cmdReady) this.logger.warn({ error, key: sub.key }, 'could not read providers');
      return;
    }
    // A newer read has been issued meanwhile (or the adapter closed, or unsubscribed): its answer is the one that counts.
    if (seq !== sub.readSeq || this.closed || this.subscriptions.get(service) !== sub) return;
    const now = Date.now();
    const next = new Map<string, number>();
    for (const [field, value] of Object.entries(hash)) {
      const expiry = Number(value);
      if (!(expiry > now)) continue;
      let text: string;
      try {
        text = providerUrlText(parseProviderUrl(field));
      } catch (error) {
        this.logger.warn({ error, key: sub.key, field }, 'skipping a field that is not a provider URL');
        continue;
      }
      next.set(text, Math.max(expiry, next.get(text) ?? 0));
    }
    if (!sub.replace)
      for (const [text, expiry] of sub.known) if (expiry > now && !next.has(text)) next.set(text, expiry);
    sub.replace = false;
    sub.known = next;
    this.scheduleExpiry(service, sub);
    this.lists.push(service, [...next.keys()].sort());
  }

  /** Re-reads once the earliest known provider expires, so a provider that stopped renewing leaves the list. */
  private scheduleExpiry(service: string, sub: Subscription): void {
    clearTimeout(sub.expiryTimer);
    sub.expiryTimer = undefined;
    if (sub.known.size === 0) return;
    const earliest = Math.min(...sub.known.values());
    sub.expiryTimer = setTimeout(
      () => {
        sub.expiryTimer = undefined;
        // Through an outage nothing is read and the list stands; the reconnect re-reads.
        if (this.closed || this.subscriptions.get(service) !== sub || this.connection.value !== 'connected') return;
        void this.refresh(service, sub, false);
      },
      Math.max(0, earliest - Date.now()) + 10,
    );
  }

  private interfacePath(service: string): string {
    return `${this.root}/${interfaceOfServiceKey(service)}`;
  }

  private assertOpen(): void {
    if (this.closed) throw new RegistryError('MESHPORT_REGISTRY_CLOSED', 'Redis registry adapter is closed');
  }
}

function createClient(options: RedisRegistryOptions): Client {
  const common = {
    // Commands fail at once while disconnected instead of queueing: the reconnect redoes what matters.
    enableOfflineQueue: false,
    // The subscriber's patterns are subscribed again by the adapter, once, on each 'ready'.
    autoResubscribe: false,
    maxRetriesPerRequest: 1,
  };
  if (options.cluster) {
    return new Cluster(options.cluster.nodes, {
      ...options.cluster.options,
      enableOfflineQueue: false,
      redisOptions: { ...options.cluster.options?.redisOptions, ...common },
    });
  }
  const redisOptions: RedisOptions = {
    retryStrategy: (times: number) => Math.min(50 * times, 1_000),
    ...options.redis,
    ...common,
  };
  return options.url ? new Redis(options.url, redisOptions) : new Redis(redisOptions);
}

/** QUIT politely, then make sure the socket and any reconnect timer are gone. */
async function quit(client: Client): Promise<void> {
  if (client.status === 'end') return;
  if (client.status === 'ready') {
    await waitAtMost(client.quit(), 1_000);
  }
  client.disconnect();
  if ((client.status as string) !== 'end') {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, 1_000);
      client.once('end', () => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
}
