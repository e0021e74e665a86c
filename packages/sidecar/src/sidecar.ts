// The daemon: one router, the registries of the config with their facades, one route book between them.

import pino, { type Logger } from 'pino';
import { Router } from '@meshport/router';
import { CaptureListener } from './capture';
import type { HijackConfig, HostPort, SidecarConfig } from './config';
import { startRegistries, type RegistrySet } from './registries';
import { RouteBook, SidecarTakeover } from './routes';
import { SidecarError } from './errors';

export interface SidecarOptions {
  /** @default pino at the config's log level */
  logger?: Logger;
}

/**
 * Start order matters: the router first, because the addresses the facades hand out are its listeners' ports (a
 * config may say port 0); then the registries, so no app is told about an endpoint that is not listening yet.
 */
export class Sidecar {
  readonly book = new RouteBook();
  readonly logger: Logger;
  private router: Router | undefined;
  private registries: RegistrySet | undefined;
  private readonly captures = new Map<'outboundCapture' | 'inboundCapture', CaptureListener>();
  private stopping: Promise<void> | undefined;

  constructor(
    readonly config: SidecarConfig,
    options: SidecarOptions = {},
  ) {
    this.logger = options.logger ?? pino({ name: 'meshport', level: config.log.level });
  }

  async start(): Promise<void> {
    const { config } = this;
    const router = new Router({
      ...config.router,
      routeTable: this.book.table,
      outbound: config.listeners.outbound,
      inbound: config.listeners.inbound,
      admin: { port: config.admin.port },
      logger: this.logger.child({ part: 'router' }),
    });
    this.router = router;
    await router.start();
    const inbound = { host: config.node.ip, port: router.address('inbound').port };
    const outbound = this.dialable(config.listeners.outbound, router.address('outbound').port);
    const logger = this.logger.child({ part: 'registry' });
    try {
      if (config.hijack) {
        await this.startCapture(config.hijack, router).catch((error: Error) => {
          throw error instanceof SidecarError
            ? error
            : new SidecarError('MESHPORT_CAPTURE_FAILED', `capture listeners: ${error.message}`, { cause: error });
        });
      }
      this.registries = await startRegistries(config.registries, {
        logger,
        takeoverFor: (name) => new SidecarTakeover(this.book, name, inbound, outbound),
      });
    } catch (err) {
      await Promise.all([...this.captures.values()].map((c) => c.close()));
      await router.drain(0);
      throw err;
    }
    for (const r of this.registries.entries) {
      const facade = r.facade?.address();
      this.logger.info({ registry: r.config.name, type: r.config.type, facade, upstream: r.config.upstream }, 'registry ready');
    }
    this.logger.info({ inbound, outbound, admin: router.address('admin') }, 'meshport sidecar running');
  }

  /** Where a listener is bound: `outbound`, `inbound`, `admin`, a capture listener, or a registry's facade by name. */
  address(what: 'outbound' | 'inbound' | 'admin' | 'outboundCapture' | 'inboundCapture' | { facade: string }): HostPort {
    if (what === 'outboundCapture' || what === 'inboundCapture') {
      const capture = this.captures.get(what);
      if (!capture) throw new Error(`no ${what} listener: the config has no hijack key`);
      return capture.address();
    }
    if (typeof what === 'object') {
      const facade = this.registries?.get(what.facade)?.facade;
      if (!facade) throw new Error(`registry ${what.facade} has no running facade`);
      return facade.address();
    }
    if (!this.router) throw new Error('the sidecar is not running');
    const { address, port } = this.router.address(what);
    return { host: address, port };
  }

  /**
   * Drains: the facades close and the registry sessions end first, so apps stop learning meshport's addresses and
   * other pods see this pod's ephemeral registrations go; then the router finishes the calls still in flight.
   */
  stop(drainMs?: number): Promise<void> {
    this.stopping ??= (async () => {
      const registries = this.registries;
      await Promise.all([...this.captures.values()].map((c) => c.close()));
      await registries?.close();
      this.book.close();
      await this.router?.drain(drainMs);
    })();
    return this.stopping;
  }

  /** Stops on SIGTERM or SIGINT, once; `onStopped` runs after the drain. */
  stopOnSignals(onStopped: () => void): void {
    const onSignal = (signal: NodeJS.Signals) => {
      process.off('SIGTERM', onSignal);
      process.off('SIGINT', onSignal);
      this.logger.info({ signal }, 'signal received, draining');
      void this.stop().then(onStopped);
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  }

  /**
   * The listeners the kernel rules send hijacked connections to. The socket package loads only here: a sidecar on
   * registry takeover alone never needs the native addon.
   */
  private async startCapture(hijack: HijackConfig, router: Router): Promise<void> {
    const socket = require('@meshport/socket') as typeof import('@meshport/socket');
    const logger = this.logger.child({ part: 'capture' });
    const viaOriginalDst = (s: import('node:net').Socket): HostPort => {
      const { address, port } = socket.getOriginalDst(s);
      return { host: address, port };
    };
    const outbound = new CaptureListener({
      direction: 'outbound',
      listen: { host: '127.0.0.1', port: hijack.outboundCapturePort },
      originalDestination: viaOriginalDst,
      routeTable: this.book.table,
      adopt: (s) => router.adopt('outbound', s),
      logger,
    });
    this.captures.set('outboundCapture', outbound);
    await outbound.start();
    // Inbound is TPROXY in both tproxy and connect-hook modes (the hijack plan's choice): the destination is the
    // accepted socket's local address. Only redirect mode records it for SO_ORIGINAL_DST.
    const transparent = hijack.mode !== 'redirect';
    let server: import('node:net').Server | undefined;
    try {
      if (transparent) server = socket.transparentListen({ host: '0.0.0.0', port: hijack.inboundCapturePort });
    } catch (error) {
      const { code } = error as NodeJS.ErrnoException;
      const hint = code === 'EPERM' ? ': run meshport with CAP_NET_ADMIN (IP_TRANSPARENT)' : '';
      throw new SidecarError('MESHPORT_CAPTURE_FAILED', `inbound capture on :${hijack.inboundCapturePort}: ${(error as Error).message}${hint}`, {
        cause: error,
      });
    }
    const inbound = new CaptureListener({
      direction: 'inbound',
      listen: { host: '0.0.0.0', port: hijack.inboundCapturePort },
      server,
      originalDestination: transparent ? (s) => ({ host: s.localAddress!, port: s.localPort! }) : viaOriginalDst,
      routeTable: this.book.table,
      adopt: (s) => router.adopt('inbound', s),
      logger,
    });
    this.captures.set('inboundCapture', inbound);
    await inbound.start();
    logger.info({ mode: hijack.mode, outbound: outbound.address(), inbound: inbound.address() }, 'capture listeners ready');
  }

  /** The outbound listener as an app in this pod dials it: a wildcard bind is reached on loopback. */
  private dialable(listen: HostPort, port: number): HostPort {
    const host = listen.host === '0.0.0.0' || listen.host === '::' ? '127.0.0.1' : listen.host;
    return { host, port };
  }
}
