// The HTTP API sofa-rpc's mesh registry (`registry.protocol=mesh`) talks to, served on localhost by meshport and passed
// through to a RegistryAdapter, with the endpoints rewritten by the sidecar's Takeover.

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  ClientGate,
  formatProviderUrl,
  getParam,
  providerUrlText,
  sofaServiceKey,
  sofaServiceKeyOf,
  type AllowRemote,
  RegistryError,
  type HostPort,
  type ProviderUrl,
  type RegistryAdapter,
  type RegistryFacade,
  type RegistryLogger,
  type Takeover,
  type Unsubscribe,
  type UrlParam,
} from '@meshport/registry-core';
import { identityOfDataId, withIdentity } from './service-identity';

/**
 * The TCP port a sofa-rpc app in mesh mode dials for every call, on the host of the mesh API address
 * (sofa-rpc `MeshConstants.TCP_PORT`). The sidecar's default outbound port for sofa-mesh.
 */
export const SOFA_MESH_TCP_PORT = 12220;
/** The port of the mesh HTTP API (sofa-rpc `MeshConstants.HTTP_PORT`); the app's registry address points here. */
export const SOFA_MESH_API_PORT = 13330;
/** SOFA RPC's default Bolt server port: where the app serves when its config names no other. */
export const SOFA_DEFAULT_SERVER_PORT = 12200;

/** The five paths of the API (sofa-rpc `MeshEndpoint`); the SDK POSTs a JSON body with `Content-Type: text/plain`. */
export const SOFA_MESH_API_PATHS = {
  application: '/configs/application',
  publish: '/services/publish',
  unpublish: '/services/unpublish',
  subscribe: '/services/subscribe',
  unsubscribe: '/services/unsubscribe',
} as const;

export interface SofaMeshApiOptions {
  /**
   * Where the API listens. Loopback unless configured: anyone who can reach it can publish providers in the app's name.
   * @default { host: '127.0.0.1', port: 13330 }
   */
  listen?: HostPort;
  /** The registry the app's services are published through and its subscriptions read from. */
  via: RegistryAdapter;
  /** Rewrites what is published (to the inbound address) and what is read (to the outbound address). */
  takeover: Takeover;
  /**
   * The app's own RPC server. Older SDKs send no port with a publish, and none sends a host, so the sidecar has to know
   * it; a `port` in the request (newer SDKs) wins over `app.port`.
   * @default { host: '127.0.0.1', port: 12200 }
   */
  app?: HostPort;
  /** Where refused upstream calls and listener failures are reported. @default console.warn */
  logger?: RegistryLogger;
  /** Largest request body accepted; larger ones get 413 before they are read in full. @default 1 MiB */
  maxBodyBytes?: number;
  /**
   * Non-loopback clients this facade accepts: `true` any, a list of addresses/CIDRs, absent or `false` none. A facade
   * bound wider than loopback still refuses other hosts unless this allows them (anyone who reaches a facade can
   * publish providers in the app's name). Loopback clients are always accepted.
   */
  allowRemote?: AllowRemote;
}

export const SOFA_MESH_API_DEFAULTS = {
  listen: { host: '127.0.0.1', port: SOFA_MESH_API_PORT },
  app: { host: '127.0.0.1', port: SOFA_DEFAULT_SERVER_PORT },
  logger: { warn: (detail: object, message: string) => console.warn(`meshport sofa mesh API: ${message}`, detail) },
  maxBodyBytes: 1024 * 1024,
  allowRemote: false as AllowRemote,
} satisfies Required<Omit<SofaMeshApiOptions, 'via' | 'takeover'>>;

/** What a request handler answers: the HTTP status and the JSON body. */
interface Answer {
  status: number;
  body: Record<string, unknown>;
  /** Close the connection after answering (the request body was left unread). */
  close?: boolean;
}

type Body = Record<string, unknown>;

/** A live subscription: the adapter's handle and the provider list last handed to the app. */
interface Subscription {
  active: boolean;
  unsubscribe: Unsubscribe | undefined;
  datas: string[];
  /** The registry has answered with a list once: until then `datas` is no answer, and the app is told so. */
  answered: boolean;
}

/** Thrown inside a handler for a request the API refuses; becomes a 4xx answer, its message the errorMessage. */
class BadRequest extends RegistryError {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super('MESHPORT_REGISTRY_SOFA_MESH_API_REFUSED', message);
  }
}

/** The parts of a SOFA service key `interface:version[:uniqueId]`. */
interface ServiceName {
  iface: string;
  version: string | undefined;
  uniqueId: string | undefined;
}

/** Splits a SOFA service key; interface names never hold ':', a uniqueId might. */
function splitServiceName(serviceName: string): ServiceName {
  const [iface, version, ...rest] = serviceName.split(':');
  return { iface: iface!, version: version || undefined, uniqueId: rest.length > 0 ? rest.join(':') : undefined };
}

/** SOFA Registry's remoting-protocol codes (`p=`), which old SOFA clients read instead of a URL scheme. */
const REMOTING_PROTOCOL_CODES: Record<string, string> = { bolt: '1', tr: '13' };

/**
 * The URL the app serves, in SOFA Registry's scheme-less form with the parameter names SOFA Registry data carries
 * (sofa-rpc `SofaRegistryHelper.convertProviderToUrls`): `p`, `v`, `_SERIALIZETYPE`, `app_name`, each next to the
 * sofa-rpc spelling (`serialization`, `appName`) so either kind of reader finds it. `interface`, `version` and
 * `uniqueId` are added because SOFA Registry keeps them in the dataId, not in the data, and the route key needs them.
 * Values are percent-encoded: a property value with '&' must not split into two parameters.
 */
export function buildMeshProviderUrl(
  serviceName: string,
  at: HostPort,
  meta: {
    protocol?: string;
    version?: string;
    serializeType?: string;
    appName?: string;
    properties?: Record<string, string>;
  },
): ProviderUrl {
  const { iface, version, uniqueId } = splitServiceName(serviceName);
  const params: UrlParam[] = [];
  const seen = new Set<string>();
  const add = (name: string, value: string | undefined) => {
    if (value === undefined || seen.has(name)) return;
    seen.add(name);
    params.push({ name: encodeURIComponent(name), value: encodeURIComponent(value) });
  };
  add('interface', iface);
  add('version', version);
  add('uniqueId', uniqueId);
  if (meta.protocol) {
    add('protocol', meta.protocol);
    add('p', REMOTING_PROTOCOL_CODES[meta.protocol.toLowerCase()]);
  }
  add('v', meta.version);
  add('serialization', meta.serializeType);
  add('_SERIALIZETYPE', meta.serializeType);
  add('appName', meta.appName);
  add('app_name', meta.appName);
  for (const [name, value] of Object.entries(meta.properties ?? {})) add(name, value);
  const host = at.host.startsWith('[') ? at.host.slice(1, -1) : at.host;
  return { scheme: undefined, host, port: at.port, path: '', params };
}

function optionalString(body: Body, field: string): string | undefined {
  const value = body[field];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string') throw new BadRequest(400, `${field} must be a string`);
  return value;
}

function requiredServiceName(body: Body): string {
  const serviceName = optionalString(body, 'serviceName');
  if (!serviceName || serviceName.startsWith(':'))
    throw new BadRequest(400, 'serviceName (interface:version[:uniqueId]) is required');
  return serviceName;
}

/** A JSON object of string values (Java `Map<String, String>`); other scalars are kept as their text. */
function stringMap(value: unknown, field: string): Record<string, string> | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'object' || Array.isArray(value)) throw new BadRequest(400, `${field} must be an object`);
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    if (v === null || v === undefined) continue;
    if (typeof v === 'object') throw new BadRequest(400, `${field}.${k} must be a string`);
    out[k] = String(v);
  }
  return out;
}

/** The app's server port from a publish request: newer SDKs send it as a string, undefined when absent or invalid. */
function requestPort(body: Body): number | undefined {
  const raw = body.port;
  const text = typeof raw === 'number' ? String(raw) : typeof raw === 'string' ? raw.trim() : '';
  if (!/^\d{1,5}$/.test(text)) return undefined;
  const port = Number(text);
  return port > 0 && port <= 65535 ? port : undefined;
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * The SOFA RPC mesh HTTP API. Publishing goes upstream at the inbound address the Takeover gives, and subscribing
 * answers the outbound address while every list the registry pushes reaches the Takeover, so the route table learns
 * the real endpoints for as long as the app stays subscribed.
 *
 * Answers: a malformed request (bad JSON, no serviceName, wrong method or path, body over the cap) gets a 4xx with
 * `{success:false, errorMessage}`. A refusal of the registry gets 200 with `{success:false, errorMessage}`: the SDK
 * treats it like any non-200 answer, but logs the body of a 200 answer, so the reason shows in the app's log.
 *
 * `close()` drops every subscription but leaves publications with `via`: the SDK publishes once and never again to a
 * restarted facade, so withdrawing them belongs to whoever closes `via`.
 */
export class SofaMeshApiFacade implements RegistryFacade {
  private readonly via: RegistryAdapter;
  private readonly takeover: Takeover;
  private readonly listen: HostPort;
  private readonly app: HostPort;
  private readonly logger: RegistryLogger;
  private readonly maxBodyBytes: number;
  private server: Server | undefined;
  /** Closes non-loopback clients at accept unless `allowRemote` lets them in. */
  readonly clients: ClientGate;
  private bound: HostPort | undefined;
  private starting: Promise<void> | undefined;
  private closing: Promise<void> | undefined;
  /** Per service key, the URL the app serves; the Takeover says what stands upstream for it. */
  private readonly publications = new Map<string, ProviderUrl>();
  private readonly subscriptions = new Map<string, Subscription>();
  /** Per service key, the tail of its queue: requests for one service run one at a time, in arrival order. */
  private readonly queues = new Map<string, Promise<void>>();
  private appName: string | undefined;

  constructor(options: SofaMeshApiOptions) {
    this.via = options.via;
    this.takeover = options.takeover;
    this.listen = options.listen ?? SOFA_MESH_API_DEFAULTS.listen;
    this.app = options.app ?? SOFA_MESH_API_DEFAULTS.app;
    this.logger = options.logger ?? SOFA_MESH_API_DEFAULTS.logger;
    this.clients = new ClientGate(options.allowRemote, 'sofa-mesh facade', this.logger);
    this.maxBodyBytes = options.maxBodyBytes ?? SOFA_MESH_API_DEFAULTS.maxBodyBytes;
  }

  /** The appName the SDK registered through `/configs/application`, once it has. */
  get applicationName(): string | undefined {
    return this.appName;
  }

  start(): Promise<void> {
    if (this.closing) {
      return Promise.reject(
        new RegistryError('MESHPORT_REGISTRY_FACADE_NOT_SERVING', 'sofa mesh API facade was closed'),
      );
    }
    this.starting ??= new Promise<void>((resolve, reject) => {
      const server = createServer((req, res) => this.onRequest(req, res));
      // After http's own connection listener, before any byte is read: a refused peer never gets a response.
      server.on('connection', (socket) => this.clients.admit(socket));
      this.server = server;
      server.once('error', reject);
      server.listen(this.listen.port, this.listen.host, () => {
        server.off('error', reject);
        server.on('error', (error) => this.logger.warn({ error }, 'server error'));
        const address = server.address() as AddressInfo;
        this.bound = { host: address.address, port: address.port };
        resolve();
      });
    });
    return this.starting;
  }

  address(): { host: string; port: number } {
    if (!this.bound || this.closing) {
      throw new RegistryError(
        'MESHPORT_REGISTRY_FACADE_NOT_SERVING',
        'sofa mesh API facade is not serving (start() has not resolved, or close() was called)',
      );
    }
    return { ...this.bound };
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      for (const subscription of this.subscriptions.values()) this.drop(subscription);
      this.subscriptions.clear();
      const server = this.server;
      if (!server) return;
      await this.starting?.catch(() => {});
      if (!server.listening) return;
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    })();
    return this.closing;
  }

  private onRequest(req: IncomingMessage, res: ServerResponse): void {
    this.answer(req)
      .catch((error: unknown): Answer => {
        if (error instanceof BadRequest)
          return { status: error.status, body: { success: false, errorMessage: error.message } };
        this.logger.warn({ error, url: req.url }, 'request failed');
        return { status: 500, body: { success: false, errorMessage: `internal error: ${describe(error)}` } };
      })
      .then((answer) => this.send(req, res, answer))
      .catch((error: unknown) => {
        this.logger.warn({ error }, 'cannot send answer');
        res.destroy();
      });
  }

  private async answer(req: IncomingMessage): Promise<Answer> {
    const path = (req.url ?? '/').split('?')[0]!;
    const route = Object.values(SOFA_MESH_API_PATHS).find((p) => p === path);
    if (!route)
      throw new BadRequest(
        404,
        `unknown path ${path}; the API serves ${Object.values(SOFA_MESH_API_PATHS).join(', ')}`,
      );
    if (req.method !== 'POST') throw new BadRequest(405, `${path} takes POST, not ${req.method}`);
    const declared = req.headers['content-length'];
    if (declared !== undefined && Number(declared) > this.maxBodyBytes) {
      return this.tooLarge();
    }
    const raw = await this.readBody(req);
    if (raw === undefined) return this.tooLarge();
    let body: unknown;
    try {
      body = JSON.parse(raw.toString('utf8'));
    } catch (error) {
      throw new BadRequest(400, `body is not JSON: ${describe(error)}`);
    }
    if (typeof body !== 'object' || body === null || Array.isArray(body))
      throw new BadRequest(400, 'body must be a JSON object');
    if (this.closing) return { status: 503, body: { success: false, errorMessage: 'meshport is shutting down' } };
    switch (route) {
      case SOFA_MESH_API_PATHS.application:
        return this.onApplication(body as Body);
      case SOFA_MESH_API_PATHS.publish:
        return this.onPublish(body as Body);
      case SOFA_MESH_API_PATHS.unpublish:
        return this.onUnpublish(body as Body);
      case SOFA_MESH_API_PATHS.subscribe:
        return this.onSubscribe(body as Body);
      case SOFA_MESH_API_PATHS.unsubscribe:
        return this.onUnsubscribe(body as Body);
    }
  }

  private tooLarge(): Answer {
    return {
      status: 413,
      body: { success: false, errorMessage: `body larger than ${this.maxBodyBytes} bytes` },
      close: true,
    };
  }

  /** The whole body, or undefined as soon as it passes the cap (the rest is left unread). */
  private readBody(req: IncomingMessage): Promise<Buffer | undefined> {
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      let size = 0;
      const onData = (chunk: Buffer) => {
        size += chunk.length;
        if (size > this.maxBodyBytes) {
          cleanup();
          req.pause();
          resolve(undefined);
          return;
        }
        chunks.push(chunk);
      };
      const onEnd = () => {
        cleanup();
        resolve(Buffer.concat(chunks));
      };
      const onError = (error: Error) => {
        cleanup();
        reject(error);
      };
      const cleanup = () => {
        req.off('data', onData);
        req.off('end', onEnd);
        req.off('error', onError);
      };
      req.on('data', onData);
      req.on('end', onEnd);
      req.on('error', onError);
    });
  }

  private send(req: IncomingMessage, res: ServerResponse, answer: Answer): void {
    const text = JSON.stringify(answer.body);
    const headers: Record<string, string | number> = {
      'Content-Type': 'application/json; charset=utf-8',
      'Content-Length': Buffer.byteLength(text),
    };
    if (answer.status === 405) headers.Allow = 'POST';
    if (answer.close) headers.Connection = 'close';
    res.writeHead(answer.status, headers);
    res.end(text, () => {
      // Reading the rest of an oversized body would defeat the cap; the connection goes instead.
      if (answer.close) req.socket.destroy();
    });
  }

  private onApplication(body: Body): Answer {
    const appName = optionalString(body, 'appName');
    if (appName) this.appName = appName;
    return { status: 200, body: { success: true } };
  }

  private onPublish(body: Body): Promise<Answer> {
    const serviceName = requiredServiceName(body);
    const metaRaw = body.providerMetaInfo;
    if (metaRaw !== undefined && metaRaw !== null && (typeof metaRaw !== 'object' || Array.isArray(metaRaw))) {
      throw new BadRequest(400, 'providerMetaInfo must be an object');
    }
    const meta = (metaRaw ?? {}) as Body;
    const appUrl = buildMeshProviderUrl(
      serviceName,
      { host: this.app.host, port: requestPort(body) ?? this.app.port },
      {
        protocol: optionalString(meta, 'protocol') ?? optionalString(body, 'protocolType'),
        version: optionalString(meta, 'version'),
        serializeType: optionalString(meta, 'serializeType'),
        appName: optionalString(meta, 'appName') ?? this.appName,
        properties: stringMap(meta.properties, 'providerMetaInfo.properties'),
      },
    );
    return this.inOrder(serviceName, async () => {
      const previous = this.publications.get(serviceName);
      const replaced = previous && providerUrlText(previous) !== providerUrlText(appUrl) ? previous : undefined;
      // The old URL leaves the takeover before the new one enters, so the route of the service is never dropped
      // after it was set; upstream the new provider goes up first, so the list never empties there either.
      const replacedUpstream = replaced && this.takeover.providerWithdrawn(replaced);
      const upstreamUrl = this.takeover.providerPublished(appUrl);
      try {
        await this.via.publish(serviceName, upstreamUrl);
      } catch (error) {
        this.logger.warn({ error, serviceName, url: formatProviderUrl(upstreamUrl) }, 'registry refused a publish');
        // Back to what stands upstream: nothing new, and the earlier publication (if any) as it was.
        if (!previous || replaced) this.takeover.providerWithdrawn(appUrl);
        if (replaced) this.takeover.providerPublished(replaced);
        return {
          status: 200,
          body: { success: false, errorMessage: `publish of ${serviceName} failed: ${describe(error)}` },
        };
      }
      this.publications.set(serviceName, appUrl);
      if (replacedUpstream && providerUrlText(replacedUpstream) !== providerUrlText(upstreamUrl)) {
        await this.via.unpublish(serviceName, replacedUpstream).catch((error: unknown) => {
          this.logger.warn({ error, serviceName }, 'registry refused to withdraw a replaced provider');
        });
      }
      return { status: 200, body: { success: true } };
    });
  }

  private onUnpublish(body: Body): Promise<Answer> {
    const serviceName = requiredServiceName(body);
    return this.inOrder(serviceName, async () => {
      const publication = this.publications.get(serviceName);
      if (!publication) return { status: 200, body: { success: true } };
      this.publications.delete(serviceName);
      const upstreamUrl = this.takeover.providerWithdrawn(publication);
      try {
        await this.via.unpublish(serviceName, upstreamUrl);
      } catch (error) {
        this.logger.warn({ error, serviceName }, 'registry refused an unpublish');
        return {
          status: 200,
          body: { success: false, errorMessage: `unpublish of ${serviceName} failed: ${describe(error)}` },
        };
      }
      return { status: 200, body: { success: true } };
    });
  }

  /**
   * A subscribe is answered with the registry's list, never with an empty list the registry did not give: while
   * `via` is not connected and has not answered for the service, the app gets `{success:false}` at once (not after
   * the adapter's first-connection wait) and the subscription carries on in the background, so the routes and the
   * app's next subscribe get the list as soon as the registry answers. Through a later outage the last list stands.
   */
  private onSubscribe(body: Body): Promise<Answer> {
    const serviceName = requiredServiceName(body);
    return this.inOrder(serviceName, async () => {
      const existing = this.subscriptions.get(serviceName);
      if (existing)
        return existing.answered
          ? { status: 200, body: { success: true, serviceName, datas: existing.datas } }
          : this.unanswered(serviceName);
      const subscription: Subscription = { active: true, unsubscribe: undefined, datas: [], answered: false };
      this.subscriptions.set(serviceName, subscription);
      const subscribing = this.via
        .subscribe(serviceName, (urls) => {
          subscription.answered = true;
          this.onProviders(serviceName, subscription, urls);
        })
        .then((unsubscribe) => {
          subscription.unsubscribe = unsubscribe;
          // close() or an unsubscribe may have run while the adapter was subscribing.
          if (!subscription.active) unsubscribe();
        })
        .catch((error: unknown) => {
          if (this.subscriptions.get(serviceName) === subscription) this.subscriptions.delete(serviceName);
          subscription.active = false;
          this.logger.warn({ error, serviceName }, 'registry refused a subscribe');
          throw error;
        });
      if (this.via.state !== 'connected') {
        subscribing.catch(() => {}); // logged above; the app has its answer
        return this.unanswered(serviceName);
      }
      try {
        await subscribing;
      } catch (error) {
        return {
          status: 200,
          body: {
            success: false,
            errorMessage: `subscribe to ${serviceName} failed: ${describe(error)}`,
            serviceName,
            datas: [],
          },
        };
      }
      return subscription.answered
        ? { status: 200, body: { success: true, serviceName, datas: subscription.datas } }
        : this.unanswered(serviceName);
    });
  }

  /** The answer to a subscribe the registry has not answered yet (it is not connected): an error, not an empty list. */
  private unanswered(serviceName: string): Answer {
    const error = this.via.lastError;
    const why = `the registry is ${this.via.state}${error ? ` (${error.message})` : ''} and has not answered for ${serviceName} yet; try again`;
    return {
      status: 200,
      body: { success: false, errorMessage: `subscribe to ${serviceName} failed: ${why}`, serviceName, datas: [] },
    };
  }

  private onProviders(serviceName: string, subscription: Subscription, urls: ProviderUrl[]): void {
    if (!subscription.active) return;
    try {
      // The app dials its own mesh port whatever host:port it is given; only the parameters of datas[0] matter to it.
      // A URL that names no interface is the registry's answer for the name subscribed (SOFA Registry keeps the
      // identity in the dataId): it is given that identity, so it can be routed. The registry may also list every
      // identity of the interface (ZooKeeper does): the route book takes them all; the app asked for one.
      const identity = identityOfDataId(serviceName);
      const named = urls.map((url) =>
        identity && !getParam(url, 'interface') && !url.path ? withIdentity(url, identity).url : url,
      );
      const wanted = sofaServiceKeyOfName(serviceName);
      subscription.datas = this.takeover
        .providersRead(serviceName, named)
        .filter((url) => servesIdentity(url, wanted))
        .map((url) => formatProviderUrl({ ...url, scheme: undefined }));
    } catch (error) {
      this.logger.warn({ error, serviceName }, 'takeover failed on a provider list');
    }
  }

  private onUnsubscribe(body: Body): Promise<Answer> {
    const serviceName = requiredServiceName(body);
    return this.inOrder(serviceName, async () => {
      const subscription = this.subscriptions.get(serviceName);
      if (subscription) {
        this.subscriptions.delete(serviceName);
        this.drop(subscription);
      }
      return { status: 200, body: { success: true } };
    });
  }

  private drop(subscription: Subscription): void {
    subscription.active = false;
    subscription.unsubscribe?.();
  }

  private inOrder<T>(service: string, task: () => Promise<T>): Promise<T> {
    const result = (this.queues.get(service) ?? Promise.resolve()).then(task);
    const tail = result.then(
      () => {},
      () => {},
    );
    this.queues.set(service, tail);
    void tail.then(() => {
      if (this.queues.get(service) === tail) this.queues.delete(service);
    });
    return result;
  }
}

/** A mesh API serviceName (`interface[:version[:uniqueId]]`) as the SOFA service key it names (version 1.0 by default). */
function sofaServiceKeyOfName(serviceName: string): string {
  const { iface, version, uniqueId } = splitServiceName(serviceName);
  return sofaServiceKey(iface, version, uniqueId);
}

/** Whether `url` serves the SOFA identity `key`, the mesh API's unit. */
function servesIdentity(url: ProviderUrl, key: string): boolean {
  try {
    return sofaServiceKeyOf(url) === key;
  } catch {
    return false;
  }
}
