// Which engine a router runs on, and what happens when the native one cannot run.

import { strict as assert } from 'node:assert';
import { Writable } from 'node:stream';
import pino from 'pino';
import { ENGINE_ADDON_PATH_ENV } from '@meshport/engine';
import { MemoryRouteTable, createRouter, defaultEngine, nativeRouterUnavailable, ENGINE_ENV } from '../src/index';

/** A pino logger whose lines are kept. */
function capturing(): { logger: pino.Logger; lines: { level: number; msg: string; reason?: string }[] } {
  const lines: { level: number; msg: string; reason?: string }[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString('utf8').split('\n').filter(Boolean)) lines.push(JSON.parse(line));
      done();
    },
  });
  return { logger: pino({ level: 'info' }, sink), lines };
}

describe('router: engine selection', () => {
  const saved = { engine: process.env[ENGINE_ENV], addon: process.env[ENGINE_ADDON_PATH_ENV] };
  afterEach(() => {
    for (const [key, value] of [
      [ENGINE_ENV, saved.engine],
      [ENGINE_ADDON_PATH_ENV, saved.addon],
    ] as const) {
      if (value === undefined) delete process.env[key];
      else process.env[key] = value;
    }
  });

  it('is native unless MESHPORT_ENGINE=js says otherwise', () => {
    delete process.env[ENGINE_ENV];
    assert.equal(defaultEngine(), 'native');
    process.env[ENGINE_ENV] = 'js';
    assert.equal(defaultEngine(), 'js');
  });

  it('runs the TypeScript engine, and says why, when the native addon cannot load', async () => {
    process.env[ENGINE_ADDON_PATH_ENV] = '/nonexistent/meshport_engine.node';
    const { logger, lines } = capturing();
    const router = createRouter({
      routeTable: new MemoryRouteTable(),
      engine: 'native',
      outbound: { port: 0 },
      inbound: false,
      admin: false,
      logger,
    });
    try {
      assert.equal(router.engine, 'js');
      await router.start();
      const warning = lines.find((l) => /native engine cannot run/.test(l.msg));
      assert.ok(warning, JSON.stringify(lines));
      assert.match(warning.reason ?? '', /not built \(\/nonexistent\/meshport_engine\.node\)/);
      assert.equal(router.describeConfig().engine, 'js', '/config names the engine that runs');
    } finally {
      await router.drain(0);
    }
  });

  it('refuses the native engine for a route table that cannot list its services, naming why', () => {
    const table = new MemoryRouteTable();
    const unlisted = {
      outbound: table.outbound.bind(table),
      inbound: table.inbound.bind(table),
      onChange: table.onChange.bind(table),
    };
    const reason = nativeRouterUnavailable({ routeTable: unlisted });
    // Where the addon is not built the first reason is that; otherwise it is the table.
    assert.ok(reason !== undefined && /cannot list its services|not built/.test(reason), reason);
  });
});
