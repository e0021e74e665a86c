// What a SOFA Registry session server must hold for this client, and what it tells back: publishers and subscribers,
// each sent once per connection and version (again after every reconnect, as the server forgets a closed connection's
// registers), and the pushes turned into provider lists, held through an outage and for a grace after it.

import { createHash, randomUUID } from 'node:crypto';
import {
  ProviderLists,
  parseProviderUrl,
  providerUrlText,
  sofaServiceKey,
  type ProviderUrl,
  type ProvidersListener,
  type RegistryLogger,
  type Unsubscribe,
} from '@meshport/registry-core';
import { loggable } from './loggable';
import { identityOfDataId, withIdentity, type ServiceIdentity } from './service-identity';
import type { SessionConnection } from './session-connection';
import { endpointText } from './session-discovery';
import {
  SOFA_REGISTRY_CLASSES,
  decodeRegisterResponse,
  encodePublisherRegister,
  encodeSubscriberRegister,
  type ReceivedData,
  type SofaScope,
} from './session-model';

/** SOFA RPC's dataId suffix: `interface:version[:uniqueId]@DEFAULT`. */
export const SOFA_DATA_ID_SUFFIX = '@DEFAULT';

/** The dataId `service` is registered under: SOFA RPC's `interface:version[:uniqueId]@DEFAULT`. */
export function dataIdOf(service: string): string {
  return service + SOFA_DATA_ID_SUFFIX;
}

/** What every register carries, and how failures are retried. */
export interface RegistrationSettings {
  instanceId: string;
  zone: string;
  appName: string | null;
  group: string;
  scope: SofaScope;
  resyncGraceMs: number;
  retryStrategy: (attempt: number) => number | null;
  logger: RegistryLogger;
}

/** What a publisher and a subscriber share: a register the server must hold while we are connected. */
interface Registration {
  readonly registId: string;
  readonly service: string;
  readonly dataId: string;
  /** Java's pubVersion: raised by every change, so the server keeps the newest of two registers it receives. */
  version: number;
  timestamp: number;
  /** False once unregistered: an UNREGISTER is due, and the registration is forgotten once the server has it. */
  enabled: boolean;
  /** The send for this generation and version, in flight or done; cleared when it fails. */
  sync: { generation: number; version: number; done: Promise<void> } | undefined;
}

export interface Publication extends Registration {
  readonly kind: 'publisher';
  readonly text: string;
}

/** One pushed segment of a datum: the Java client keeps a version per segment and lists the union of all. */
interface Segment {
  generation: number;
  /** Exact: versions past 2^53 that differ by one are two versions, which as numbers they would not be. */
  version: bigint | null;
  zones: Map<string, string[]>;
}

export interface Subscription extends Registration {
  readonly kind: 'subscriber';
  readonly segments: Map<string, Segment>;
  /** The list last handed to ProviderLists; undefined before the first push. */
  lastList: string[] | undefined;
  /** After a reconnect: the list held through the outage, kept in every push until the grace ends. */
  grace: { before: string[]; timer: NodeJS.Timeout } | undefined;
  firstPush: Promise<void>;
  resolveFirstPush: () => void;
  /** The service its dataId names, written into every URL handed on; undefined when the dataId names none. */
  readonly identity: ServiceIdentity | undefined;
  /** Data of the current pushes already warned about, so a bad datum is logged once while it stays, not per push. */
  warned: Set<string>;
}

export class SessionRegistrations {
  /** The connection registers go over: set while one is up. */
  private conn: SessionConnection | undefined;
  private closed = false;
  private readonly timers = new Set<NodeJS.Timeout>();
  readonly lists: ProviderLists;
  /** Publications by `service \n url text`. */
  private readonly publications = new Map<string, Publication>();
  private readonly subscriptions = new Map<string, Subscription>();
  private readonly byRegistId = new Map<string, Publication | Subscription>();

  constructor(private readonly settings: RegistrationSettings) {
    this.lists = new ProviderLists((error, service) =>
      settings.logger.warn({ error: loggable(error), service }, 'a providers listener threw'),
    );
  }

  /** Whether registers can go now. */
  get online(): boolean {
    return this.conn?.connected === true && !this.closed;
  }

  /** The publication of `url` for `service`, made or enabled again (a newer REGISTER wins over an unacked UNREGISTER). */
  publication(service: string, text: string): Publication {
    const key = `${service}\n${text}`;
    let pub = this.publications.get(key);
    if (!pub) {
      const dataId = dataIdOf(service);
      pub = {
        kind: 'publisher',
        registId: stableRegistId(this.settings.instanceId, this.settings.group, dataId, text),
        service,
        dataId,
        text,
        version: 1,
        timestamp: Date.now(),
        enabled: true,
        sync: undefined,
      };
      this.publications.set(key, pub);
      this.byRegistId.set(pub.registId, pub);
    } else if (!pub.enabled) {
      pub.enabled = true;
      pub.version++;
      pub.timestamp = Date.now();
    }
    return pub;
  }

  /** Marks the publication of `text` for `service` as withdrawn; resolves once the server has that (if it can). */
  async unpublish(service: string, text: string): Promise<void> {
    const pub = this.publications.get(`${service}\n${text}`);
    if (!pub?.enabled) return;
    pub.enabled = false;
    pub.version++;
    pub.timestamp = Date.now();
    // Not connected: the server dropped it with our last connection, and no reconnect will send it again.
    if (!this.online) {
      this.forget(pub);
      return;
    }
    await this.sync(pub);
  }

  /** The subscription of `service`, made (and sent, when connected) on its first listener. */
  subscription(service: string): Subscription {
    let sub = this.subscriptions.get(service);
    if (sub) return sub;
    let resolveFirstPush!: () => void;
    const firstPush = new Promise<void>((resolve) => (resolveFirstPush = resolve));
    const dataId = dataIdOf(service);
    const identity = identityOfDataId(dataId);
    if (!identity || sofaServiceKey(identity.interface, identity.version, identity.uniqueId) !== service) {
      // The URLs handed on will name the service as SOFA spells it, which is not how this subscriber asked for it.
      this.settings.logger.warn(
        {
          service,
          dataId,
          servedAs: identity && sofaServiceKey(identity.interface, identity.version, identity.uniqueId),
        },
        'a SOFA Registry subscription for a service key that is not interface:version[:uniqueId]',
      );
    }
    sub = {
      kind: 'subscriber',
      // Random, as the Java client's: two sidecars watching one service are two subscribers.
      registId: randomUUID(),
      service,
      dataId,
      version: 1,
      timestamp: Date.now(),
      enabled: true,
      sync: undefined,
      segments: new Map(),
      lastList: undefined,
      grace: undefined,
      firstPush,
      resolveFirstPush,
      identity,
      warned: new Set(),
    };
    this.subscriptions.set(service, sub);
    this.byRegistId.set(sub.registId, sub);
    void this.sync(sub);
    return sub;
  }

  /** A listener of `service` and the function that hands it a list it has not seen. */
  listen(
    service: string,
    onChange: ProvidersListener,
  ): { remove: Unsubscribe; push: (urls: readonly string[]) => void } {
    return this.lists.add(service, onChange);
  }

  /** Withdraws `sub` once its last listener is gone. */
  unsubscribe(sub: Subscription): void {
    if (this.lists.has(sub.service) || this.subscriptions.get(sub.service) !== sub) return;
    this.subscriptions.delete(sub.service);
    clearGrace(sub);
    sub.enabled = false;
    sub.version++;
    if (this.online) void this.sync(sub);
    else this.forget(sub);
  }

  /** A new connection is up: until the grace ends, pushes only add to the lists held through the outage. */
  connected(conn: SessionConnection): void {
    this.conn = conn;
    for (const sub of this.subscriptions.values()) this.beginGrace(sub);
  }

  /**
   * The server forgot every register with the last connection (or never had them): sends them all, as the Java
   * client's resetRegister does. An unpublish that never reached the server needs nothing: it is gone with them.
   */
  resendAll(): void {
    for (const reg of [...this.byRegistId.values()]) {
      if (reg.enabled) {
        reg.timestamp = Date.now();
        void this.sync(reg);
      } else {
        this.forget(reg);
      }
    }
  }

  /** The connection is gone; lists stay as they are (an outage is not a removal). */
  disconnected(conn: SessionConnection): void {
    if (this.conn === conn) this.conn = undefined;
  }

  close(): void {
    this.closed = true;
    this.conn = undefined;
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
    for (const sub of this.subscriptions.values()) clearGrace(sub);
    this.subscriptions.clear();
    this.publications.clear();
    this.byRegistId.clear();
    this.lists.clear();
  }

  /**
   * Makes the server hold `reg` as it stands, once per connection and version. Never rejects: a failure is retried
   * while the connection lasts, and a new connection sends everything anyway.
   */
  sync(reg: Publication | Subscription): Promise<void> {
    const conn = this.conn;
    if (!conn?.connected || this.closed) return Promise.resolve();
    const s = reg.sync;
    if (s && s.generation === conn.generation && s.version === reg.version) return s.done;
    const done = this.send(conn, reg, 1);
    reg.sync = { generation: conn.generation, version: reg.version, done };
    return done;
  }

  private async send(conn: SessionConnection, reg: Publication | Subscription, attempt: number): Promise<void> {
    const version = reg.version;
    const { instanceId, zone, appName, group, scope, logger } = this.settings;
    const base = {
      instanceId,
      zone,
      appName,
      dataId: reg.dataId,
      group,
      registId: reg.registId,
      ip: conn.localAddress,
      eventType: reg.enabled ? ('REGISTER' as const) : ('UNREGISTER' as const),
      version,
      timestamp: reg.timestamp,
    };
    const [className, body]: [string, Buffer] =
      reg.kind === 'publisher'
        ? [
            SOFA_REGISTRY_CLASSES.publisherRegister,
            encodePublisherRegister({ ...base, dataList: reg.enabled ? [reg.text] : null }),
          ]
        : [SOFA_REGISTRY_CLASSES.subscriberRegister, encodeSubscriberRegister({ ...base, scope })];
    // Why it failed, as fields an operator can read in the log line (an Error itself serializes as `{}`).
    let failure: Record<string, unknown>;
    try {
      const answer = await conn.invoke(className, body);
      const response = decodeRegisterResponse(answer.body);
      if (response.success) {
        if (response.refused) {
          // As the Java client: a refused register is not sent again; the server's configuration forbids it.
          logger.warn(
            { dataId: reg.dataId, registId: reg.registId, message: response.message },
            'SOFA Registry refused a register',
          );
        }
        if (!reg.enabled && reg.version === version) this.forget(reg);
        return;
      }
      failure = {
        response: {
          success: false,
          refused: response.refused,
          message: response.message,
          registId: response.registId,
          version: response.version.toString(),
        },
      };
    } catch (error) {
      failure = { error: loggable(error) };
    }
    if (this.closed || conn !== this.conn || !conn.connected) return; // the reconnect sends it again
    if (reg.sync?.generation === conn.generation && reg.sync.version === version) reg.sync = undefined;
    const delay = this.settings.retryStrategy(attempt);
    logger.warn(
      {
        ...failure,
        kind: reg.kind,
        eventType: base.eventType,
        dataId: reg.dataId,
        registId: reg.registId,
        server: endpointText(conn.server),
        attempt,
        retryInMs: delay,
      },
      delay === null ? 'giving up a register' : 'a register failed; retrying',
    );
    if (delay === null) return;
    // In the background: the caller of publish() has waited for one answer, which is all the contract asks.
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      if (this.closed || conn !== this.conn || this.byRegistId.get(reg.registId) !== reg) return;
      if (reg.sync && reg.sync.generation === conn.generation && reg.sync.version === reg.version) return;
      const done = this.send(conn, reg, attempt + 1);
      reg.sync = { generation: conn.generation, version: reg.version, done };
    }, delay);
    this.timers.add(timer);
  }

  private forget(reg: Publication | Subscription): void {
    if (this.byRegistId.get(reg.registId) === reg) this.byRegistId.delete(reg.registId);
    if (reg.kind === 'publisher') {
      const key = `${reg.service}\n${reg.text}`;
      if (this.publications.get(key) === reg) this.publications.delete(key);
    }
  }

  // -------------------------------------------------------------------------------------------------------------
  // Pushes.

  /** Takes in one push received on `conn`; throws only on a bug, which the caller answers as a failed Result. */
  onPush(conn: SessionConnection, data: ReceivedData): void {
    const targets = new Set<Subscription>();
    for (const id of data.subscriberRegistIds) {
      const reg = this.byRegistId.get(id);
      if (reg?.kind === 'subscriber' && reg.enabled) targets.add(reg);
    }
    if (data.data === null) return; // what the Java client does too: no data is no news
    for (const sub of targets) {
      if (data.dataId !== null && data.dataId !== sub.dataId) {
        this.settings.logger.warn(
          { dataId: data.dataId, expected: sub.dataId },
          'a push names a subscriber of another dataId; ignored',
        );
        continue;
      }
      const key = data.segment ?? '';
      const known = sub.segments.get(key);
      // Versions are compared within one connection only: a registry restarted from nothing may count again from
      // low, and a version-keeper that never forgets would then ignore it for good.
      if (
        known &&
        known.generation === conn.generation &&
        known.version !== null &&
        data.version !== null &&
        data.version <= known.version
      ) {
        continue;
      }
      // The first push of a new connection replaces what older connections left, segment for segment.
      for (const [k, seg] of sub.segments) if (seg.generation !== conn.generation) sub.segments.delete(k);
      sub.segments.set(key, { generation: conn.generation, version: data.version, zones: data.data });
      this.applyList(sub);
      sub.resolveFirstPush();
    }
  }

  /**
   * The union over segments and zones, as sofa-rpc's SofaRegistrySubscribeCallback flattens UserData: which zones
   * the server includes is the subscriber's `scope`, so every zone it sends is wanted. `localZone` is not used.
   * Every URL leaves naming the service of its dataId (see withIdentity).
   */
  private applyList(sub: Subscription): void {
    const texts = new Set<string>();
    const warned = new Set<string>();
    for (const seg of sub.segments.values()) {
      for (const [zone, list] of seg.zones) {
        for (const data of list) {
          const text = this.providerText(sub, zone, data, warned);
          if (text !== undefined) texts.add(text);
        }
      }
    }
    // Only data still pushed stays remembered: one that goes and comes back is news, and the set cannot grow forever.
    sub.warned = warned;
    if (sub.grace) for (const text of sub.grace.before) texts.add(text);
    const list = [...texts].sort();
    sub.lastList = list;
    this.lists.push(sub.service, list);
  }

  /** One pushed datum as the URL text to hand on, or undefined (and logged, once while it stays) to skip it. */
  private providerText(sub: Subscription, zone: string, data: string, warned: Set<string>): string | undefined {
    let url: ProviderUrl;
    try {
      url = parseProviderUrl(data);
    } catch (error) {
      if (!sub.warned.has(data)) {
        this.settings.logger.warn(
          { dataId: sub.dataId, zone, data, error: loggable(error) },
          'skipping a pushed datum that is not a provider URL',
        );
      }
      warned.add(data);
      return undefined;
    }
    if (!sub.identity) return providerUrlText(url);
    const explicit = withIdentity(url, sub.identity);
    if (explicit.disagreements.length > 0) {
      if (!sub.warned.has(data)) {
        this.settings.logger.warn(
          { dataId: sub.dataId, zone, data, disagreements: explicit.disagreements },
          'a pushed provider URL names another service than its dataId; listing it under the dataId',
        );
      }
      warned.add(data);
    }
    return providerUrlText(explicit.url);
  }

  /** On a reconnect: until the grace ends, pushes only add to the list held through the outage. */
  private beginGrace(sub: Subscription): void {
    const before = sub.lastList;
    clearGrace(sub);
    if (!before || before.length === 0 || this.settings.resyncGraceMs <= 0) return;
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      if (sub.grace?.timer !== timer) return;
      sub.grace = undefined;
      // The server's latest word on this connection now stands alone; without one, the held list stays.
      const conn = this.conn;
      if (!this.closed && conn && [...sub.segments.values()].some((s) => s.generation === conn.generation))
        this.applyList(sub);
    }, this.settings.resyncGraceMs);
    this.timers.add(timer);
    sub.grace = { before, timer };
  }
}

function clearGrace(sub: Subscription): void {
  if (sub.grace) clearTimeout(sub.grace.timer);
  sub.grace = undefined;
}

/**
 * A registId that is the same for the same provider every time (a UUID-shaped SHA-1 of what identifies it), so a
 * sidecar that restarts replaces its old publisher on the server instead of adding a twin beside it.
 */
function stableRegistId(instanceId: string, group: string, dataId: string, text: string): string {
  const h = createHash('sha1').update([instanceId, group, dataId, text].join('\0')).digest();
  h[6] = (h[6] & 0x0f) | 0x50; // version 5: name-based, SHA-1
  h[8] = (h[8] & 0x3f) | 0x80;
  const hex = h.subarray(0, 16).toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
