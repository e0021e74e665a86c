// The Redis registry facade: a local RESP proxy the app's Dubbo Redis registry points at, passing every command to the
// real Redis and rewriting provider addresses in the provider hashes through the sidecar's Takeover.

import net from 'node:net';
import {
  ClientGate,
  PacedWarning,
  formatProviderUrl,
  parseProviderUrl,
  RegistryError,
  type AllowRemote,
  type ProviderUrl,
  type RegistryFacade,
  type RegistryLogger,
  type Takeover,
} from '@meshport/registry-core';
import {
  encodeCommand,
  encodeValue,
  respBulk,
  RespParser,
  RESP_PARSER_DEFAULTS,
  type RespAggregate,
  type RespInlineCommand,
  type RespValue,
} from './resp';

export interface RedisFacadeOptions {
  /** Where the app's SDK connects. @default { host: '127.0.0.1', port: 0 } (port 0: any free port) */
  listen?: { host?: string; port?: number };
  /** The real Redis: `{ host, port }` or `'host:port'`. */
  upstream: { host: string; port: number } | string;
  takeover: Takeover;
  /** @default warnings on the console */
  logger?: RegistryLogger;
  /**
   * Non-loopback clients this facade accepts: `true` any, a list of addresses/CIDRs, absent or `false` none. A facade
   * bound wider than loopback still refuses other hosts unless this allows them (anyone who reaches a facade can
   * publish providers in the app's name). Loopback clients are always accepted.
   */
  allowRemote?: AllowRemote;
  /**
   * Largest bulk string accepted in either direction; a larger claim closes that connection at once, before any of
   * its bytes are held. @default 536870912 (Redis' proto-max-bulk-len)
   */
  maxBulkBytes?: number;
  /**
   * Told how each app connection's upstream connection went: undefined once connected, the error when it failed. The
   * sidecar shows a facade's upstream state from it when it has no session of its own there.
   */
  onUpstream?: (error: Error | undefined) => void;
}

export const REDIS_FACADE_DEFAULTS = {
  listen: { host: '127.0.0.1', port: 0 },
  allowRemote: false as AllowRemote,
  maxBulkBytes: RESP_PARSER_DEFAULTS.maxBulkBytes,
  logger: { warn: (detail: object, message: string) => console.warn(`meshport redis facade: ${message}`, detail) },
  /** How long a connection closed for a protocol error waits for replies to the commands before the bad one. */
  protocolErrorDrainMs: 2_000,
} as const;

/** `/{root}/{interface}/providers`; the root is Dubbo's group, `dubbo` unless configured. */
const PROVIDERS_KEY = /^\/.+\/([^/]+)\/providers$/;

/** The interface a key holds providers of, or undefined for every other key. */
export function providersKeyInterface(key: string): string | undefined {
  return PROVIDERS_KEY.exec(key)?.[1];
}

/**
 * A RegistryFacade for apps using Apache Dubbo's Redis registry. Each app connection gets its own upstream
 * connection, so Redis' per-connection state (SELECT, AUTH, CLIENT SETNAME, pub/sub) stays the app's own.
 */
export class RedisFacade implements RegistryFacade {
  private readonly upstream: { host: string; port: number };
  private readonly listenOn: { host: string; port: number };
  private readonly takeover: Takeover;
  private readonly logger: RegistryLogger;
  private readonly maxBulkBytes: number;
  private readonly onUpstream: ((error: Error | undefined) => void) | undefined;
  private server: net.Server | undefined;
  /** Closes non-loopback clients at accept unless `allowRemote` lets them in. */
  readonly clients: ClientGate;
  private bound: { host: string; port: number } | undefined;
  private readonly sessions = new Set<FacadeSession>();
  private readonly memory = new ProvidersMemory();
  private closed = false;

  constructor(options: RedisFacadeOptions) {
    this.upstream = typeof options.upstream === 'string' ? parseHostPort(options.upstream) : options.upstream;
    this.listenOn = {
      host: options.listen?.host ?? REDIS_FACADE_DEFAULTS.listen.host,
      port: options.listen?.port ?? REDIS_FACADE_DEFAULTS.listen.port,
    };
    this.takeover = options.takeover;
    this.logger = options.logger ?? REDIS_FACADE_DEFAULTS.logger;
    this.maxBulkBytes = options.maxBulkBytes ?? REDIS_FACADE_DEFAULTS.maxBulkBytes;
    this.onUpstream = options.onUpstream;
    this.clients = new ClientGate(options.allowRemote, 'redis facade', this.logger);
  }

  async start(): Promise<void> {
    if (this.server) return;
    if (this.closed) throw new RegistryError('MESHPORT_REGISTRY_CLOSED', 'Redis facade is closed');
    const server = net.createServer((app) => this.accept(app));
    this.server = server;
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(this.listenOn.port, this.listenOn.host, () => {
          server.off('error', reject);
          resolve();
        });
      });
    } catch (error) {
      // A later start() may try again (the port may be free by then).
      this.server = undefined;
      throw error;
    }
    server.on('error', (error) => this.logger.warn({ error }, 'listener error'));
    const address = server.address() as net.AddressInfo;
    this.bound = { host: address.address, port: address.port };
  }

  address(): { host: string; port: number } {
    if (!this.bound) throw new RegistryError('MESHPORT_REGISTRY_FACADE_NOT_STARTED', 'Redis facade has not started');
    return { ...this.bound };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const server = this.server;
    for (const session of this.sessions) session.destroy();
    this.sessions.clear();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private upstreamDown: PacedWarning | undefined;

  private accept(app: net.Socket): void {
    if (this.closed) {
      app.destroy();
      return;
    }
    if (!this.clients.admit(app)) return;
    const session = new FacadeSession(app, this.upstream, {
      memory: this.memory,
      takeover: this.takeover,
      logger: this.logger,
      upstreamDown: (this.upstreamDown ??= new PacedWarning(this.logger)),
      onUpstream: this.onUpstream,
      maxBulkBytes: this.maxBulkBytes,
    });
    this.sessions.add(session);
    session.onClosed = () => this.sessions.delete(session);
  }
}

function parseHostPort(text: string): { host: string; port: number } {
  const m = /^\[?([^\]]*?)\]?:(\d{1,5})$/.exec(text.trim());
  if (!m || Number(m[2]) > 65535)
    throw new RegistryError('MESHPORT_REGISTRY_BAD_URL', `not host:port: ${JSON.stringify(text)}`);
  return { host: m[1]!, port: Number(m[2]) };
}

// ---------------------------------------------------------------------------------------------------------------
// One app connection and its upstream connection.

/** What a reply answers, so the replies that need rewriting can be found in the ordered stream. */
type Pending =
  | { kind: 'plain' }
  | { kind: 'providers'; iface: string; key: string; shape: 'all' | 'keys' | 'vals' }
  /** HELLO's reply says which protocol the connection now speaks. */
  | { kind: 'hello' }
  | { kind: 'reset' }
  /** `remaining` replies are due; undefined for an UNSUBSCRIBE of everything, counted when its first reply comes. */
  | { kind: 'subscription'; command: SubscriptionCommand; remaining: number | undefined; arityError: boolean }
  /** EXEC answers with one reply per queued command, in an array. */
  | { kind: 'exec'; queued: Pending[] };

type SubscriptionCommand = 'subscribe' | 'psubscribe' | 'ssubscribe' | 'unsubscribe' | 'punsubscribe' | 'sunsubscribe';
const SUBSCRIPTION_COMMANDS = new Set<string>([
  'subscribe',
  'psubscribe',
  'ssubscribe',
  'unsubscribe',
  'punsubscribe',
  'sunsubscribe',
]);
const PUSHED_MESSAGES = new Set<string>(['message', 'pmessage', 'smessage']);

interface SessionContext {
  takeover: Takeover;
  logger: RegistryLogger;
  /** An app's client reconnects in a loop while Redis is down: one line a minute says so. */
  upstreamDown: PacedWarning;
  onUpstream: ((error: Error | undefined) => void) | undefined;
  maxBulkBytes: number;
  memory: ProvidersMemory;
}

/**
 * What the facade last showed of each providers hash, shared by every app connection. Redis cannot tell an explicit
 * deletion from a restart that lost its data (no persistence is common for a registry), so reads follow Dubbo's own
 * rule: a read only adds to the providers known and unexpired, and a read replaces the list only after an
 * `unregister` message on that key (or an HDEL by the app) says something was withdrawn. Without this, the sidecar
 * would drop a service's route for the seconds between a Redis restart and the providers' next renewal.
 */
class ProvidersMemory {
  private readonly byKey = new Map<
    string,
    { known: Map<string, { url: ProviderUrl; expiry: number }>; replace: boolean }
  >();

  /** An `unregister` message or an HDEL on `key`: its next read is the whole answer. */
  withdrawn(key: string): void {
    const entry = this.byKey.get(key);
    if (entry) entry.replace = true;
  }

  /** The providers to show for a read of `key` that found `live` (each with its expiry). */
  read(key: string, live: { url: ProviderUrl; expiry: number }[], now: number): { url: ProviderUrl; expiry: number }[] {
    const entry = this.byKey.get(key) ?? { known: new Map(), replace: true };
    const next = new Map(live.map((p) => [formatProviderUrl(p.url), p] as const));
    if (!entry.replace) for (const [text, p] of entry.known) if (p.expiry > now && !next.has(text)) next.set(text, p);
    this.byKey.set(key, { known: next, replace: false });
    return [...next.values()];
  }
}

/**
 * Requests are parsed, rewritten where needed and forwarded in order; each one that Redis will answer leaves an entry
 * in `pending`, and each reply takes the entry at the head, because Redis answers in order. Pub/sub is the exception,
 * handled as Redis itself does it: pushed messages answer nothing, and (P|S)(UN)SUBSCRIBE answer once per channel.
 */
class FacadeSession {
  onClosed: () => void = () => {};
  private readonly upstream: net.Socket;
  private readonly requests: RespParser;
  private readonly replies: RespParser;
  private readonly pending: Pending[] = [];
  // Request-side state, known when the command is sent.
  private replyMode: 'on' | 'off' | 'skip' = 'on';
  private multi: Pending[] | undefined;
  // Reply-side state, known when the reply comes.
  private resp3 = false;
  private readonly subscriptions: Record<'channel' | 'pattern' | 'shard', Set<string>> = {
    channel: new Set(),
    pattern: new Set(),
    shard: new Set(),
  };
  private closing = false;
  private drainTimer: NodeJS.Timeout | undefined;
  private protocolError: string | undefined;

  constructor(
    private readonly app: net.Socket,
    upstreamAt: { host: string; port: number },
    private readonly ctx: SessionContext,
  ) {
    this.requests = new RespParser({
      mode: 'request',
      maxBulkBytes: ctx.maxBulkBytes,
      onValue: (value, raw) => this.onRequest(value, raw),
      onError: (error) => this.onAppProtocolError(error),
    });
    this.replies = new RespParser({
      mode: 'reply',
      maxBulkBytes: ctx.maxBulkBytes,
      onValue: (value, raw) => this.onReply(value as RespValue, raw),
      onError: (error) => {
        this.ctx.logger.warn({ error }, 'Redis sent bytes that are not RESP; closing the app connection');
        this.destroy();
      },
    });
    app.setNoDelay(true);
    // Writes before the upstream connects are queued by the socket.
    this.upstream = net.connect({ host: upstreamAt.host, port: upstreamAt.port });
    this.upstream.setNoDelay(true);
    app.on('data', (chunk: Buffer) => {
      // One write per chunk however many commands it held (a pipeline stays a pipeline).
      this.upstream.cork();
      this.requests.write(chunk);
      this.upstream.uncork();
    });
    this.upstream.on('data', (chunk: Buffer) => {
      this.app.cork();
      this.replies.write(chunk);
      this.app.uncork();
      if (this.protocolError !== undefined && this.pending.length === 0) this.finishProtocolError();
    });
    // Backpressure both ways: a slow reader slows its writer instead of growing a buffer here.
    app.on('drain', () => this.upstream.resume());
    this.upstream.on('drain', () => {
      if (this.protocolError === undefined) this.app.resume();
    });
    app.on('error', () => this.destroy());
    app.on('close', () => this.destroy());
    this.upstream.once('connect', () => this.ctx.onUpstream?.(undefined));
    this.upstream.on('error', (error) => {
      if (this.closing) return;
      this.ctx.onUpstream?.(error);
      this.ctx.upstreamDown.warn({ error }, 'upstream Redis connection failed; closing the app connection');
    });
    // Redis went away: the app sees its connection close, as it would without the facade, and reconnects.
    this.upstream.on('close', () => this.endApp());
  }

  destroy(): void {
    if (this.closing) return;
    this.closing = true;
    clearTimeout(this.drainTimer);
    this.app.destroy();
    this.upstream.destroy();
    this.onClosed();
  }

  /** Lets the replies already written reach the app, then closes. */
  private endApp(): void {
    if (this.closing) return;
    this.closing = true;
    clearTimeout(this.drainTimer);
    this.upstream.destroy();
    this.app.end();
    setTimeout(() => this.app.destroy(), 1_000).unref();
    this.onClosed();
  }

  private toUpstream(bytes: Buffer): void {
    if (!this.upstream.write(bytes)) this.app.pause();
  }

  private toApp(bytes: Buffer): void {
    if (!this.app.write(bytes)) this.upstream.pause();
  }

  // -----------------------------------------------------------------------------------------------------------
  // Requests.

  private onRequest(value: RespValue | RespInlineCommand, raw: Buffer): void {
    let args: Buffer[];
    let rewritable = true;
    if (value.type === 'inline') {
      args = value.args;
      // Quotes mean something to Redis that a split on spaces does not reproduce: never rewrite such a line.
      rewritable = !value.quoted;
    } else {
      args = (value as RespAggregate).items!.map((item) => (item as { data: Buffer }).data);
    }
    // An empty command (`*0`, a blank line) gets no reply from Redis.
    if (args.length === 0) {
      this.toUpstream(raw);
      return;
    }
    const name = args[0]!.toString('latin1').toLowerCase();
    const rewritten = rewritable ? this.rewriteRequest(name, args) : undefined;
    this.toUpstream(rewritten ? encodeCommand(rewritten.args) : raw);
    this.track(name, args, rewritten?.pending ?? { kind: 'plain' });
  }

  /** Files what the reply to this command will need, following CLIENT REPLY and MULTI as Redis does. */
  private track(name: string, args: Buffer[], entry: Pending): void {
    const sub = args[1]?.toString('latin1').toLowerCase();
    if (name === 'client' && sub === 'reply' && args.length === 3) {
      const mode = args[2]!.toString('latin1').toLowerCase();
      // OFF and SKIP are never answered; ON always is.
      if (mode === 'on') {
        this.replyMode = 'on';
        this.pending.push({ kind: 'plain' });
        return;
      }
      if (mode === 'off' || mode === 'skip') {
        if (mode === 'off') this.replyMode = 'off';
        else if (this.replyMode === 'on') this.replyMode = 'skip';
        return;
      }
    }
    if (name === 'reset') {
      this.replyMode = 'on';
      this.multi = undefined;
      this.pending.push({ kind: 'reset' });
      return;
    }
    if (this.replyMode !== 'on') {
      if (this.replyMode === 'skip') this.replyMode = 'on';
      return;
    }
    if (this.multi && !['exec', 'discard', 'multi', 'watch', 'quit'].includes(name)) {
      // Answered QUEUED now and for real inside EXEC's array.
      this.multi.push(entry);
      this.pending.push({ kind: 'plain' });
      return;
    }
    if (name === 'multi') this.multi ??= [];
    else if (name === 'exec' && this.multi) {
      entry = { kind: 'exec', queued: this.multi };
      this.multi = undefined;
    } else if (name === 'discard') this.multi = undefined;
    else if (name === 'hello') entry = { kind: 'hello' };
    else if (SUBSCRIPTION_COMMANDS.has(name)) {
      const channels = args.length - 1;
      const subscribing = !name.includes('unsub');
      // SUBSCRIBE without channels is an arity error: one reply. UNSUBSCRIBE without any: one per channel held.
      entry = {
        kind: 'subscription',
        command: name as SubscriptionCommand,
        remaining: channels > 0 ? channels : subscribing ? 1 : undefined,
        arityError: channels === 0 && subscribing,
      };
    }
    this.pending.push(entry);
  }

  /** The command to send instead, and what its reply needs; undefined to send it as it came. */
  private rewriteRequest(name: string, args: Buffer[]): { args: Buffer[]; pending: Pending } | undefined {
    if (args.length < 2) return undefined;
    const key = args[1]!.toString('utf8');
    const iface = providersKeyInterface(key);
    if (iface === undefined) return undefined;
    switch (name) {
      case 'hset':
      case 'hmset':
        if (args.length < 4 || args.length % 2 !== 0) return undefined;
        return this.rewriteFields(args, key, 'published', (i) => i >= 2 && i % 2 === 0);
      case 'hsetnx':
        if (args.length !== 4) return undefined;
        return this.rewriteFields(args, key, 'published', (i) => i === 2);
      case 'hdel':
        if (args.length < 3) return undefined;
        this.ctx.memory.withdrawn(key);
        return this.rewriteFields(args, key, 'withdrawn', (i) => i >= 2);
      case 'hgetall':
      case 'hkeys':
      case 'hvals':
        if (args.length !== 2) return undefined;
        // HKEYS and HVALS are answered from an HGETALL, so they see the same live, rewritten providers as HGETALL:
        // field names alone cannot tell an expired provider from a live one.
        return {
          args: name === 'hgetall' ? args : [Buffer.from('HGETALL'), args[1]!],
          pending: {
            kind: 'providers',
            iface,
            key,
            shape: name === 'hgetall' ? 'all' : name === 'hkeys' ? 'keys' : 'vals',
          },
        };
      default:
        // HGET, HEXISTS, HLEN, HSCAN and the rest pass through: Dubbo's registry does not use them, and an operator
        // reading a single field by its real URL means that field.
        return undefined;
    }
  }

  /**
   * Every provider URL field rewritten through the Takeover. One field that is not a provider URL (or a Takeover that
   * throws) sends the whole command unchanged: the app's write still happens, only its address is not taken over.
   */
  private rewriteFields(
    args: Buffer[],
    key: string,
    what: 'published' | 'withdrawn',
    isField: (index: number) => boolean,
  ): { args: Buffer[]; pending: Pending } | undefined {
    const parsed: [number, ProviderUrl][] = [];
    for (let i = 2; i < args.length; i++) {
      if (!isField(i)) continue;
      const field = args[i]!.toString('utf8');
      try {
        parsed.push([i, parseProviderUrl(field)]);
      } catch (error) {
        this.ctx.logger.warn(
          { error, key, field },
          'a provider hash field is not a provider URL; passing the command through',
        );
        return undefined;
      }
    }
    const out = [...args];
    try {
      for (const [i, url] of parsed) {
        const mapped =
          what === 'published' ? this.ctx.takeover.providerPublished(url) : this.ctx.takeover.providerWithdrawn(url);
        out[i] = Buffer.from(formatProviderUrl(mapped), 'utf8');
      }
    } catch (error) {
      this.ctx.logger.warn({ error, key }, `the takeover refused a provider ${what}; passing the command through`);
      return undefined;
    }
    return { args: out, pending: { kind: 'plain' } };
  }

  private onAppProtocolError(error: RegistryError): void {
    // Like Redis: the commands before the bad bytes are answered, then the error, then the connection closes.
    this.protocolError = error.message;
    this.app.pause();
    if (this.pending.length === 0) this.finishProtocolError();
    else {
      this.drainTimer = setTimeout(() => this.finishProtocolError(), REDIS_FACADE_DEFAULTS.protocolErrorDrainMs);
      this.drainTimer.unref();
    }
  }

  private finishProtocolError(): void {
    if (this.closing || this.protocolError === undefined) return;
    this.app.write(`-ERR ${this.protocolError}\r\n`);
    this.endApp();
  }

  // -----------------------------------------------------------------------------------------------------------
  // Replies.

  private onReply(value: RespValue, raw: Buffer): void {
    // RESP3 pushes and attributes answer no command.
    if (value.type === '>' || value.type === '|' || this.isPushedMessage(value)) {
      this.noteWithdrawal(value);
      this.toApp(raw);
      return;
    }
    let head = this.pending[0];
    // Under RESP3 subscription commands are answered by pushes only (arity errors aside, see track()).
    while (head?.kind === 'subscription' && this.resp3 && !head.arityError) {
      this.pending.shift();
      head = this.pending[0];
    }
    if (!head) {
      // Nothing is waiting (a reply mode this proxy does not follow): pass it on rather than break the connection.
      this.toApp(raw);
      return;
    }
    if (head.kind !== 'subscription') this.pending.shift();
    switch (head.kind) {
      case 'plain':
        this.toApp(raw);
        return;
      case 'hello':
        if (value.type === '%') this.resp3 = true;
        else if (value.type === '*') this.resp3 = false;
        this.toApp(raw);
        return;
      case 'reset':
        this.resp3 = false;
        for (const set of Object.values(this.subscriptions)) set.clear();
        this.toApp(raw);
        return;
      case 'subscription':
        this.onSubscriptionReply(head, value);
        this.toApp(raw);
        return;
      case 'providers': {
        const rewritten = this.rewriteProvidersReply(head, value);
        this.toApp(rewritten ? encodeValue(rewritten) : raw);
        return;
      }
      case 'exec': {
        if (value.type !== '*' || value.items === null || value.items.length !== head.queued.length) {
          this.toApp(raw);
          return;
        }
        let changed = false;
        const items = value.items.map((item, i) => {
          const queued = head.queued[i]!;
          const rewritten = queued.kind === 'providers' ? this.rewriteProvidersReply(queued, item) : undefined;
          if (rewritten) changed = true;
          return rewritten ?? item;
        });
        this.toApp(changed ? encodeValue({ type: '*', items }) : raw);
        return;
      }
    }
  }

  /** `message CHANNEL unregister` or `pmessage PATTERN CHANNEL unregister` (RESP2 or RESP3 push). */
  private noteWithdrawal(value: RespValue): void {
    if ((value.type !== '*' && value.type !== '>') || !value.items || value.items.length < 3) return;
    const text = value.items.map((item) => (item.type === '$' && item.data !== null ? item.data.toString('utf8') : ''));
    if (text.at(-1) === 'unregister') this.ctx.memory.withdrawn(text.at(-2)!);
  }

  /** A RESP2 pub/sub message: only possible while this connection holds a subscription. */
  private isPushedMessage(value: RespValue): boolean {
    if (value.type !== '*' || !value.items || value.items.length < 3) return false;
    const { channel, pattern, shard } = this.subscriptions;
    if (channel.size + pattern.size + shard.size === 0) return false;
    const first = value.items[0]!;
    return first.type === '$' && first.data !== null && PUSHED_MESSAGES.has(first.data.toString('latin1'));
  }

  private onSubscriptionReply(head: Pending & { kind: 'subscription' }, value: RespValue): void {
    const set =
      this.subscriptions[head.command.startsWith('p') ? 'pattern' : head.command.startsWith('s') ? 'shard' : 'channel'];
    head.remaining ??= Math.max(1, set.size);
    if (value.type === '*' && value.items && value.items.length === 3) {
      const channel = value.items[1]!;
      if (channel.type === '$' && channel.data !== null) {
        const name = channel.data.toString('latin1');
        if (head.command.includes('unsub')) set.delete(name);
        else set.add(name);
      }
    }
    // An error answers the whole command at once.
    if (--head.remaining <= 0 || value.type === '-') this.pending.shift();
  }

  /**
   * An HGETALL of a providers hash as the app may see it: the live providers (expiry still ahead, as Dubbo reads
   * them) go to the Takeover, and the app gets what it returns, each with the latest expiry among the live ones.
   * Expired fields and fields that are not provider URLs are left out: Dubbo would skip the expired ones anyway, and an
   * unparsable field is no provider the sidecar could route to, so showing it would only show a real address.
   * The cost: a Dubbo registry running with admin=true (whose sweeper HDELs expired fields it reads) sweeps nothing
   * through the facade; such an admin talks to Redis directly, it has no providers to take over.
   * Returns undefined to pass the reply as it came (an error, or a shape that is not a hash).
   */
  private rewriteProvidersReply(entry: Pending & { kind: 'providers' }, value: RespValue): RespValue | undefined {
    if ((value.type !== '*' && value.type !== '%') || value.items === null || value.items.length % 2 !== 0)
      return undefined;
    const now = Date.now();
    const read: { url: ProviderUrl; expiry: number }[] = [];
    for (let i = 0; i < value.items.length; i += 2) {
      const field = value.items[i]!;
      const expiryItem = value.items[i + 1]!;
      if (field.type !== '$' || field.data === null || expiryItem.type !== '$' || expiryItem.data === null)
        return undefined;
      const expiry = Number(expiryItem.data.toString('latin1'));
      if (!(expiry > now)) continue;
      const text = field.data.toString('utf8');
      try {
        read.push({ url: parseProviderUrl(text), expiry });
      } catch (error) {
        this.ctx.logger.warn(
          { error, key: entry.key, field: text },
          'leaving out a provider hash field that is not a provider URL',
        );
      }
    }
    const live = this.ctx.memory.read(entry.key, read, now);
    const latest = live.reduce((max, p) => Math.max(max, p.expiry), 0);
    let shown: ProviderUrl[];
    try {
      shown = this.ctx.takeover.providersRead(
        entry.iface,
        live.map((p) => p.url),
      );
    } catch (error) {
      this.ctx.logger.warn(
        { error, key: entry.key },
        'the takeover failed on a providers read; passing the reply through',
      );
      return undefined;
    }
    // A hash has each field once.
    const fields = [...new Set(shown.map(formatProviderUrl))];
    // Only reachable if a Takeover answers providers for an empty read: give them a Dubbo-length lease.
    const expiry = String(latest > 0 ? latest : now + 60_000);
    if (entry.shape === 'keys') return { type: '*', items: fields.map((f) => respBulk(f)) };
    if (entry.shape === 'vals') return { type: '*', items: fields.map(() => respBulk(expiry)) };
    return { type: value.type, items: fields.flatMap((f) => [respBulk(f), respBulk(expiry)]) };
  }
}
