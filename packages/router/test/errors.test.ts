// What an embedder sees when it asks a router the wrong thing, on the engine MESHPORT_ENGINE picks: a RouterError with
// its documented code, not a bare Error.

import { strict as assert } from 'node:assert';
import pino from 'pino';
import { MeshportError } from '@meshport/protocol';
import { createRouter, MemoryRouteTable, RouterError } from '../src/index';
import { useRouterKit } from './helpers/kit';

describe('router: errors', () => {
  const kit = useRouterKit();

  it('address() of a listener that is not bound (before start, or turned off) is MESHPORT_ROUTER_NOT_LISTENING', async () => {
    const unstarted = createRouter({ routeTable: new MemoryRouteTable(), logger: pino({ level: 'silent' }) });
    kit.onCleanup(() => unstarted.drain(0));
    const notListening = (err: unknown) =>
      err instanceof RouterError && err instanceof MeshportError && err.code === 'MESHPORT_ROUTER_NOT_LISTENING';
    assert.throws(() => unstarted.address('outbound'), notListening);
    const started = await kit.router(new MemoryRouteTable()); // outbound only: inbound and admin are off
    assert.ok(started.address('outbound').port > 0);
    assert.throws(
      () => started.address('inbound'),
      (err: unknown) => notListening(err) && /inbound is not listening/.test(String(err)),
    );
    assert.throws(() => started.address('admin'), notListening);
  });
});
