// The admin server's extension point: pages, a readiness check and the /config page of the embedding daemon, and
// metric families it adds to /stats, on the engine MESHPORT_ENGINE names, without the router knowing what they are.

import { strict as assert } from 'node:assert';
import pino from 'pino';
import { MemoryRouteTable, createRouter, type RouterHandle } from '../src/index';

const quiet = pino({ level: 'silent' });

async function get(port: number, path: string): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`);
  return { status: res.status, body: await res.text() };
}

describe('admin extensions', function () {
  this.timeout(20_000);
  let router: RouterHandle;
  let port: number;
  let notReady: string | undefined;
  let widgets = 0;

  before(async () => {
    notReady = 'registries not ready: zk (connecting)';
    router = createRouter({
      routeTable: new MemoryRouteTable(),
      logger: quiet,
      admin: {
        port: 0,
        pages: { '/widgets': () => ({ widgets }), '/ready': () => 'never served: the router owns /ready' },
        readiness: () => notReady,
        config: (own) => ({ daemon: { answer: 42 }, router: own }),
      },
    });
    router.stats.addCollected('test_widgets_total', 'Widgets made', 'counter', () => [
      { labels: { kind: 'blue' }, value: widgets },
    ]);
    router.stats.collectProcessMetrics();
    router.stats.collectProcessMetrics(); // twice is once
    await router.start();
    port = router.address('admin').port;
  });
  let drained: Promise<void> | undefined;
  after(() => (drained ??= router.drain(0)));

  it('serves the extra pages as JSON, and lists them on a 404', async () => {
    widgets = 3;
    assert.deepEqual(JSON.parse((await get(port, '/widgets')).body), { widgets: 3 });
    const missing = await get(port, '/nope');
    assert.equal(missing.status, 404);
    assert.ok((JSON.parse(missing.body) as { pages: string[] }).pages.includes('/widgets'));
  });

  it('/ready is 503 with the reason while the check says so, 200 when it clears', async () => {
    assert.deepEqual(await get(port, '/ready'), { status: 503, body: 'registries not ready: zk (connecting)\n' });
    notReady = undefined;
    assert.deepEqual(await get(port, '/ready'), { status: 200, body: 'ready\n' });
  });

  it('/config is the daemon page with the router description inside', async () => {
    const config = JSON.parse((await get(port, '/config')).body) as {
      daemon: unknown;
      router: { engine: string; listeners: { admin: { port: number } } };
    };
    assert.deepEqual(config.daemon, { answer: 42 });
    assert.equal(config.router.engine, router.engine);
    assert.equal(config.router.listeners.admin.port, port);
  });

  it('/stats carries the added families (read when scraped) and the process metrics once', async () => {
    widgets = 7;
    const stats = (await get(port, '/stats')).body;
    assert.match(stats, /^test_widgets_total\{kind="blue"\} 7$/m);
    assert.match(stats, /^# TYPE test_widgets_total counter$/m);
    assert.equal(stats.match(/^# TYPE process_cpu_user_seconds_total counter$/gm)?.length, 1);
    assert.match(stats, /^meshport_connections_total|^# HELP meshport_connections_total/m);
  });

  it('a draining router is 503 whatever the check says', async () => {
    notReady = undefined;
    drained = router.drain(1_000);
    const ready = await get(port, '/ready').catch(() => ({ status: 503, body: '' }));
    assert.equal(ready.status, 503);
    await drained;
  });
});
