// Admin HTTP on 127.0.0.1 only: health, readiness, routes, Prometheus stats, effective config, and the pages the
// embedding daemon adds.

import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import type { ClusterState } from './handle';
import type { ServicesPage } from './stats';

/**
 * What the admin pages read of a router, whichever engine carries its requests; nothing here changes it (a drain is
 * the router's, by signal). Each engine passes itself.
 */
export interface AdminView {
  /** `/ready` is 503 once draining. */
  readonly isDraining: boolean;
  /** `/routes`: the clusters, calls in flight and callers holding an unfinished frame. */
  describeRoutes(): ClusterState[] | Promise<ClusterState[]>;
  readonly inflight: number;
  readonly partialFrames: number;
  /**
   * `/stats`: the Prometheus registry; `/services`: the per-service figures as JSON. Both up to date when read (the
   * native engine's router loads its engine's counters each time `stats` is read).
   */
  readonly stats: { readonly registry: Registry; services(): ServicesPage };
  /** `/config`: the router's effective settings. */
  describeConfig(): Record<string, unknown>;
}

/**
 * What the admin server serves beyond the router's own pages. The sidecar fills it with what only it knows (its
 * registries, its whole config) so the router never learns about registries: it only calls these back.
 */
export interface AdminExtensions {
  /**
   * More JSON pages by path (`/registries`): each is called per request and its value served as JSON with status 200.
   * A path the router serves itself cannot be replaced.
   */
  pages?: Record<string, () => unknown>;
  /**
   * Readiness beyond "not draining": undefined when ready, else why not (served as the 503 body). A draining router
   * is 503 whatever this says.
   */
  readiness?: () => string | undefined;
  /** The `/config` page: given the router's own description, returns the whole page. @default the router's description */
  config?: (router: Record<string, unknown>) => Record<string, unknown>;
}

/** The admin server's options: its port (always bound on 127.0.0.1) and the embedding daemon's extensions. */
export interface AdminOptions extends AdminExtensions {
  /** @default 0 */
  port: number;
}

const ROUTER_PAGES = ['/healthz', '/ready', '/routes', '/stats', '/services', '/config'];

export class AdminServer {
  private readonly server: http.Server;
  private readonly options: AdminOptions;

  constructor(
    private readonly router: AdminView,
    options: AdminOptions | number,
  ) {
    this.options = typeof options === 'number' ? { port: options } : options;
    this.server = http.createServer((req, res) => {
      void this.handle(req, res).catch((err: Error) => {
        res.writeHead(500, { 'content-type': 'text/plain' }).end(`${err.message}\n`);
      });
    });
  }

  start(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      // Loopback only, whatever else is configured: the admin port can drain the sidecar and reveals its routes.
      this.server.listen(this.options.port, '127.0.0.1', () => resolve());
    });
  }

  address(): AddressInfo {
    return this.server.address() as AddressInfo;
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    const json = (code: number, body: unknown): void => {
      res.writeHead(code, { 'content-type': 'application/json' }).end(JSON.stringify(body, null, 2) + '\n');
    };
    const text = (code: number, body: string): void => {
      res.writeHead(code, { 'content-type': 'text/plain' }).end(`${body}\n`);
    };
    const { pages = {}, readiness, config } = this.options;
    switch (path) {
      case '/healthz':
        return text(200, 'ok');
      case '/ready': {
        if (this.router.isDraining) return text(503, 'draining');
        const notReady = readiness?.();
        return notReady === undefined ? text(200, 'ready') : text(503, notReady);
      }
      case '/routes':
        return json(200, {
          clusters: await this.router.describeRoutes(),
          inflight: this.router.inflight,
          partialFrames: this.router.partialFrames,
        });
      case '/stats':
        res.writeHead(200, { 'content-type': this.router.stats.registry.contentType });
        res.end(await this.router.stats.registry.metrics());
        return;
      case '/services':
        return json(200, this.router.stats.services());
      case '/config': {
        const own = this.router.describeConfig();
        return json(200, config ? config(own) : own);
      }
      default: {
        const page = Object.hasOwn(pages, path) ? pages[path] : undefined;
        if (page) return json(200, await page());
        return json(404, { error: `no admin page ${path}`, pages: [...ROUTER_PAGES, ...Object.keys(pages)] });
      }
    }
  }
}
