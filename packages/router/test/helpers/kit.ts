// Per-test teardown for suites that start routers and peers: whatever a test starts is stopped after it, passed or
// failed, and every router is made by createRouter, so MESHPORT_ENGINE picks the engine under test.

import pino from 'pino';
import { createRouter, type MemoryRouteTable, type RouterHandle, type RouterOptions } from '../../src/index';
import { type EchoProvider, startEchoProvider } from '@meshport/testkit';
import { FrameClient, startHoldingServer, type HoldingServer } from './peers';

export interface RouterKit {
  /** Runs `fn` after the current test, in reverse order of registration. */
  onCleanup(fn: () => unknown): void;
  /** A started router with only the outbound listener and no admin, unless the options say otherwise. */
  router(routes: MemoryRouteTable, options?: Partial<RouterOptions>): Promise<RouterHandle>;
  echo(): Promise<EchoProvider>;
  holding(): Promise<HoldingServer>;
  connect(port: number): Promise<FrameClient>;
}

/** Call inside a `describe`: registers the afterEach that tears each test's things down. */
export function useRouterKit(): RouterKit {
  let cleanups: (() => unknown)[] = [];
  afterEach(async () => {
    const list = cleanups.reverse();
    cleanups = [];
    for (const fn of list) {
      try {
        await fn();
      } catch {
        // keep cleaning up the rest
      }
    }
  });
  const onCleanup = (fn: () => unknown) => void cleanups.push(fn);
  return {
    onCleanup,
    async router(routes, options = {}) {
      const router = createRouter({
        routeTable: routes,
        inbound: false,
        admin: false,
        logger: pino({ level: 'silent' }),
        ...options,
      });
      onCleanup(() => router.drain(0));
      await router.start();
      return router;
    },
    async echo() {
      const server = await startEchoProvider();
      onCleanup(() => server.close());
      return server;
    },
    async holding() {
      const server = await startHoldingServer();
      onCleanup(() => server.close());
      return server;
    },
    async connect(port) {
      const client = await FrameClient.connect(port);
      onCleanup(() => client.close());
      return client;
    },
  };
}
