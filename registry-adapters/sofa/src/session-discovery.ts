// Which SOFA Registry session server to connect to: the configured list, or the one a session server's HTTP API
// names, asked before every (re)connection as the Java client does; kept apart from the connection it feeds.

import http from 'node:http';
import { RegistryError, type RegistryLogger } from '@meshport/registry-core';
import { loggable } from './loggable';

export interface ServerAddress {
  host: string;
  port: number;
  /** From discovery's `?weight=`: the Java client prefers the lighter of two random servers. */
  weight: number;
}

export interface SessionDiscoveryOptions {
  /** Session servers, `h1:9600,h2:9600` (`;` and spaces separate too). */
  servers: string;
  /** `host[:port]` of a session server's HTTP API; `defaultPort` when none is given. */
  discovery: string | undefined;
  defaultPort: number;
  /** Sent to discovery, which may answer each zone, data center, app or tenant its own servers. */
  query: { zone: string; dataCenter: string; appName: string | null; instanceId: string };
  /** How long one discovery query may take. */
  timeoutMs: number;
  logger: RegistryLogger;
}

/** The session server list: discovery's answer when it gives one (remembered for when it cannot), else the configured. */
export class SessionDiscovery {
  private readonly servers: ServerAddress[];
  private readonly discovery: { host: string; port: number } | undefined;
  /** Discovery's last good answer, used while it cannot be reached. */
  private discovered: ServerAddress[] = [];
  private readonly aborts = new Set<AbortController>();
  private closed = false;

  constructor(private readonly options: SessionDiscoveryOptions) {
    const configured = parseServerList(options.servers, /[,;\s]+/);
    this.servers = configured.servers;
    for (const entry of configured.skipped) {
      const error = new RegistryError(
        'MESHPORT_REGISTRY_SOFA_BAD_SERVER',
        `session server ${JSON.stringify(entry)} is not host:port[?weight=n]`,
      );
      options.logger.warn(
        { error: loggable(error), servers: options.servers },
        'skipping a SOFA Registry session server entry',
      );
    }
    this.discovery = options.discovery ? parseEndpoint(options.discovery, options.defaultPort) : undefined;
  }

  /** Whether any server can ever be found: a configured one, or discovery to ask. */
  get configured(): boolean {
    return this.servers.length > 0 || this.discovery !== undefined;
  }

  /** Discovery's list when it answers (remembered for when it does not), else the configured servers. */
  async serverList(): Promise<ServerAddress[]> {
    if (!this.discovery) return this.servers;
    for (const path of ['/api/servers/queryWithWeight', '/api/servers/query']) {
      try {
        // Entries of an answer that do not parse are skipped without a word: it is asked again on every reconnect.
        const found = parseServerList(await this.httpGet(this.discovery, path), /;/).servers;
        if (found.length > 0) {
          this.discovered = found;
          return found;
        }
      } catch (error) {
        // A registry without queryWithWeight answers 404 there: the Java client then asks /query.
        if (!this.closed) {
          this.options.logger.warn(
            { error: loggable(error), discovery: endpointText(this.discovery), path },
            'session discovery failed',
          );
        }
      }
    }
    return this.discovered.length > 0 ? this.discovered : this.servers;
  }

  /** Stops the queries in flight. */
  close(): void {
    this.closed = true;
    for (const abort of this.aborts) abort.abort();
  }

  private httpGet(discovery: { host: string; port: number }, path: string): Promise<string> {
    const query = new URLSearchParams();
    for (const [k, v] of Object.entries(this.options.query)) if (v !== null) query.set(k, v);
    const abort = new AbortController();
    this.aborts.add(abort);
    const failed = (message: string) => new RegistryError('MESHPORT_REGISTRY_SOFA_DISCOVERY_FAILED', message);
    return new Promise<string>((resolve, reject) => {
      const req = http.get(
        {
          host: discovery.host,
          port: discovery.port,
          path: `${path}?${query}`,
          signal: abort.signal,
          timeout: this.options.timeoutMs,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            if (res.statusCode !== 200) reject(failed(`HTTP ${res.statusCode}`));
            else resolve(Buffer.concat(chunks).toString('utf8').trim());
          });
          res.on('error', reject);
        },
      );
      req.on('timeout', () => req.destroy(failed(`no answer within ${this.options.timeoutMs} ms`)));
      req.on('error', reject);
    }).finally(() => this.aborts.delete(abort));
  }
}

/**
 * `ip:port[?weight=n&...]` entries; entries that do not parse are skipped (and returned, for a caller to report), as
 * the Java ServerNodeParser's callers do.
 */
export function parseServerList(text: string, separator: RegExp): { servers: ServerAddress[]; skipped: string[] } {
  const servers: ServerAddress[] = [];
  const skipped: string[] = [];
  for (const entry of text.split(separator)) {
    const trimmed = entry.trim();
    if (!trimmed) continue;
    const [address, query] = trimmed.split('?', 2);
    const endpoint = parseEndpoint(address, undefined);
    if (!endpoint) {
      skipped.push(trimmed);
      continue;
    }
    const weight = Number(new URLSearchParams(query ?? '').get('weight') ?? 0);
    servers.push({ ...endpoint, weight: Number.isFinite(weight) ? weight : 0 });
  }
  return { servers, skipped };
}

function parseEndpoint(text: string, defaultPort: number): { host: string; port: number };
function parseEndpoint(text: string, defaultPort: undefined): { host: string; port: number } | undefined;
function parseEndpoint(text: string, defaultPort: number | undefined): { host: string; port: number } | undefined {
  const m = /^\s*(?:\[([^\]]+)\]|([^:\s]+))(?::(\d{1,5}))?\s*$/.exec(text);
  const port = m?.[3] !== undefined ? Number(m[3]) : defaultPort;
  if (!m || port === undefined || port > 65535) {
    if (defaultPort === undefined) return undefined;
    return { host: text.trim(), port: defaultPort };
  }
  return { host: m[1] ?? m[2], port };
}

/** Two random servers, the lighter one wins: the Java ClientConnection's power of two choices. */
export function chooseServer(servers: ServerAddress[]): ServerAddress | undefined {
  if (servers.length <= 1) return servers[0];
  const i = Math.floor(Math.random() * servers.length);
  const j = (i + 1 + Math.floor(Math.random() * (servers.length - 1))) % servers.length;
  return servers[j].weight < servers[i].weight ? servers[j] : servers[i];
}

export function endpointText(server: { host: string; port: number }): string {
  return server.host.includes(':') ? `[${server.host}]:${server.port}` : `${server.host}:${server.port}`;
}
