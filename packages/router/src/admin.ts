// Admin HTTP on 127.0.0.1 only: health, readiness, routes, Prometheus stats, effective config.

import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { RouterHandle } from './handle';

export class AdminServer {
  private readonly server: http.Server;

  constructor(
    private readonly router: RouterHandle,
    private readonly port: number,
  ) {
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
      this.server.listen(this.port, '127.0.0.1', () => resolve());
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
    switch (path) {
      case '/healthz':
        res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
        return;
      case '/ready':
        if (this.router.isDraining) res.writeHead(503, { 'content-type': 'text/plain' }).end('draining\n');
        else res.writeHead(200, { 'content-type': 'text/plain' }).end('ready\n');
        return;
      case '/routes':
        return json(200, { clusters: await this.router.describeRoutes(), inflight: this.router.inflight, partialFrames: this.router.partialFrames });
      case '/stats':
        res.writeHead(200, { 'content-type': this.router.stats.registry.contentType });
        res.end(await this.router.stats.registry.metrics());
        return;
      case '/config':
        return json(200, this.router.describeConfig());
      default:
        return json(404, { error: `no admin page ${path}`, pages: ['/healthz', '/ready', '/routes', '/stats', '/config'] });
    }
  }
}
