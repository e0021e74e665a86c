// The admin HTTP server on 127.0.0.1: health, readiness through a drain, routes, Prometheus stats that match the
// traffic sent, the effective config, and nothing but loopback.

import { strict as assert } from 'node:assert';
import http from 'node:http';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import pino from 'pino';
import { Registry } from 'prom-client';
import { BoltStatus, DubboStatus } from '@meshport/protocol';
import { MemoryRouteTable, createRouter, type RouterHandle } from '../src/index';
import { boltRequest, dubboCall, type EchoProvider, startEchoProvider } from '@meshport/testkit';
import { FrameClient, closedPort, until } from './helpers/peers';
import { parseMetrics, type Sample } from './helpers/metrics';

const quiet = pino({ level: 'silent' });

const BOLT_SVC = 'com.example.EchoService:1.0';
const DUBBO_IFACE = 'org.example.Greeter';
const DUBBO_SVC = `${DUBBO_IFACE}:2.0`;
/** The provider resets its connection on any call to this one. */
const RESET_SVC = 'com.example.Resetting:1.0';
/** Two endpoints, the first refusing connections. */
const FLAKY_SVC = 'com.example.Flaky:1.0';
/** One endpoint, straight to the provider, so a dropped call times out in the router under test. */
const LONELY_SVC = 'com.example.Lonely:1.0';

interface Page {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

function get(port: number, path: string): Promise<Page> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      res.on('error', reject);
    });
    req.on('error', reject);
  });
}

/** Sum of the samples of `name` whose labels include `labels` (0 when there is none). */
function value(samples: Sample[], name: string, labels: Record<string, string> = {}): number {
  return samples
    .filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
    .reduce((sum, s) => sum + s.value, 0);
}

interface RouteEndpoint {
  address: string;
  weight: number;
  active: number;
  healthy: boolean;
  consecutiveFailures: number;
  ejections: number;
  ejectedForMs: number;
}

interface RouteCluster {
  listener: string;
  name: string;
  policy: string;
  endpoints: RouteEndpoint[];
}

const sum = (frames: Buffer[]) => frames.reduce((n, f) => n + f.length, 0);

describe('router: admin HTTP', function () {
  this.timeout(20_000);

  let provider: EchoProvider | undefined;
  let providerSide: RouterHandle | undefined;
  let router: RouterHandle | undefined;
  let clients: FrameClient[] = [];
  let deadPort = 0;
  let adminPort = 0;

  beforeEach(async () => {
    const echo = await startEchoProvider();
    provider = echo;
    echo.behave = (h) => (h.service === RESET_SVC ? 'reset' : 'answer');
    const providerRoutes = new MemoryRouteTable();
    for (const svc of [BOLT_SVC, DUBBO_SVC, RESET_SVC, FLAKY_SVC])
      providerRoutes.setInbound(svc, { host: '127.0.0.1', port: echo.port });
    providerSide = createRouter({ routeTable: providerRoutes, outbound: false, admin: false, logger: quiet });
    await providerSide.start();
    const remote = { host: '127.0.0.1', port: providerSide.address('inbound').port };
    deadPort = await closedPort();
    const routes = new MemoryRouteTable()
      .setOutbound(BOLT_SVC, { endpoints: [remote] })
      .setOutbound(DUBBO_SVC, { endpoints: [remote] })
      .setOutbound(RESET_SVC, { endpoints: [remote] })
      .setOutbound(FLAKY_SVC, { endpoints: [{ host: '127.0.0.1', port: deadPort }, remote] })
      .setOutbound(LONELY_SVC, { endpoints: [{ host: '127.0.0.1', port: echo.port }] })
      .setInbound(BOLT_SVC, { host: '127.0.0.1', port: echo.port });
    router = createRouter({
      routeTable: routes,
      admin: { port: 0 },
      logger: quiet,
      connectTimeoutMs: 1500,
      outlier: { consecutiveFailures: 1, baseEjectionMs: 60_000 },
      limits: { maxActiveRequests: 500 },
    });
    await router.start();
    adminPort = router.address('admin').port;
  });

  afterEach(async () => {
    for (const c of clients) c.close();
    clients = [];
    await Promise.allSettled([router?.drain(0), providerSide?.drain(0)]);
    await Promise.allSettled([provider?.close()]);
    router = providerSide = provider = undefined;
  });

  async function client(listener: 'outbound' | 'inbound'): Promise<FrameClient> {
    const c = await FrameClient.connect(router!.address(listener).port);
    clients.push(c);
    return c;
  }

  it('binds 127.0.0.1 only; /healthz and /ready are 200; an unknown path is a JSON 404', async () => {
    const address = router!.address('admin');
    assert.equal(address.address, '127.0.0.1');
    assert.equal(address.family, 'IPv4');
    // Another loopback address of this host is refused: the port is bound to 127.0.0.1, not to every address.
    await assert.rejects(
      new Promise<void>((resolve, reject) => {
        const s = net.connect({ host: '127.0.0.2', port: adminPort }, () => {
          s.destroy();
          resolve();
        });
        s.on('error', reject);
      }),
      /ECONNREFUSED/,
    );

    const health = await get(adminPort, '/healthz');
    assert.equal(health.status, 200);
    const ready = await get(adminPort, '/ready');
    assert.equal(ready.status, 200);
    const missing = await get(adminPort, '/nope');
    assert.equal(missing.status, 404);
    assert.match(String(missing.headers['content-type']), /application\/json/);
    assert.deepEqual(JSON.parse(missing.body).pages, [
      '/healthz',
      '/ready',
      '/routes',
      '/stats',
      '/services',
      '/config',
    ]);
  });

  it('/stats: Prometheus text whose counters, histogram, connections and bytes match the traffic sent', async () => {
    const a = await client('outbound');
    const b = await client('inbound');
    const sentA: Buffer[] = [];
    const sentB: Buffer[] = [];
    const send = (c: FrameClient, log: Buffer[], frame: Buffer) => {
      log.push(frame);
      c.send(frame);
    };
    for (let i = 1; i <= 5; i++) send(a, sentA, boltRequest(i, BOLT_SVC, `bolt-${i}`));
    for (let i = 1; i <= 3; i++)
      send(a, sentA, dubboCall(2n ** 40n + BigInt(i), DUBBO_IFACE, '2.0', 'hello', `dubbo-${i}`));
    send(a, sentA, boltRequest(100, 'com.example.Nobody:1.0', 'x'));
    send(a, sentA, dubboCall(101, 'org.example.Nobody', '1.0', 'm', 'x'));
    await a.waitFor(10);
    // Alone, so the provider's reset fails nothing else: the provider side answers it CONNECTION_CLOSED, which this
    // router forwards as that upstream status.
    send(a, sentA, boltRequest(200, RESET_SVC, 'reset me'));
    await a.waitFor(11);
    for (let i = 1; i <= 2; i++) send(b, sentB, boltRequest(300 + i, BOLT_SVC, `inbound-${i}`));
    await b.waitFor(2);

    const status = (id: number | string) =>
      a.answers.find((x) => String(x.header.requestId) === String(id))?.header.status;
    assert.equal(status(1), BoltStatus.SUCCESS);
    assert.equal(status(String(2n ** 40n + 1n)), DubboStatus.OK);
    assert.equal(status(100), BoltStatus.NO_PROCESSOR);
    assert.equal(status(101), DubboStatus.SERVICE_NOT_FOUND);
    assert.equal(status(200), BoltStatus.CONNECTION_CLOSED);
    assert.ok(b.answers.every((x) => x.header.status === BoltStatus.SUCCESS));

    const page = await get(adminPort, '/stats');
    assert.equal(page.status, 200);
    assert.equal(page.headers['content-type'], Registry.PROMETHEUS_CONTENT_TYPE);
    for (const name of [
      'meshport_requests_total',
      'meshport_responses_total',
      'meshport_request_duration_seconds',
      'meshport_bytes_total',
    ]) {
      assert.match(page.body, new RegExp(`^# TYPE ${name} (counter|histogram)$`, 'm'));
    }
    const s = parseMetrics(page.body);

    const requests = (listener: string, cluster: string, protocol: string) =>
      value(s, 'meshport_requests_total', { listener, cluster, protocol });
    assert.equal(requests('outbound', BOLT_SVC, 'bolt'), 5);
    assert.equal(requests('outbound', DUBBO_SVC, 'dubbo'), 3);
    assert.equal(requests('outbound', 'none', 'bolt'), 1);
    assert.equal(requests('outbound', 'none', 'dubbo'), 1);
    assert.equal(requests('outbound', RESET_SVC, 'bolt'), 1);
    assert.equal(requests('inbound', BOLT_SVC, 'bolt'), 2);
    assert.equal(value(s, 'meshport_requests_total'), 13);

    const responses = (listener: string, cluster: string, outcome: string) =>
      value(s, 'meshport_responses_total', { listener, cluster, outcome });
    assert.equal(responses('outbound', BOLT_SVC, 'ok'), 5);
    assert.equal(responses('outbound', DUBBO_SVC, 'ok'), 3);
    assert.equal(responses('outbound', 'none', 'no-route'), 2);
    assert.equal(responses('outbound', RESET_SVC, `status-${BoltStatus.CONNECTION_CLOSED}`), 1);
    assert.equal(responses('inbound', BOLT_SVC, 'ok'), 2);
    assert.equal(value(s, 'meshport_responses_total'), 13, 'one answer per request');

    // The latency histogram: every bucket, cumulative, +Inf = _count = calls answered after being forwarded.
    const histogram = (listener: string, cluster: string, count: number) => {
      const buckets = s.filter(
        (x) =>
          x.name === 'meshport_request_duration_seconds_bucket' &&
          x.labels.listener === listener &&
          x.labels.cluster === cluster,
      );
      assert.deepEqual(
        buckets.map((x) => x.labels.le),
        [
          '0.0001',
          '0.00025',
          '0.0005',
          '0.001',
          '0.0025',
          '0.005',
          '0.01',
          '0.025',
          '0.05',
          '0.1',
          '0.25',
          '0.5',
          '1',
          '2.5',
          '5',
          '10',
          '+Inf',
        ],
      );
      for (let i = 1; i < buckets.length; i++)
        assert.ok(buckets[i].value >= buckets[i - 1].value, 'buckets are cumulative');
      assert.equal(buckets[buckets.length - 1].value, count);
      assert.equal(value(s, 'meshport_request_duration_seconds_count', { listener, cluster }), count);
      const total = value(s, 'meshport_request_duration_seconds_sum', { listener, cluster });
      assert.ok(total > 0 && total < count * 3, `sum ${total} s for ${count} calls`);
    };
    histogram('outbound', BOLT_SVC, 5);
    histogram('outbound', DUBBO_SVC, 3);
    histogram('outbound', RESET_SVC, 1);
    histogram('inbound', BOLT_SVC, 2);

    assert.equal(value(s, 'meshport_connections_active', { listener: 'outbound' }), 1);
    assert.equal(value(s, 'meshport_connections_active', { listener: 'inbound' }), 1);
    assert.equal(value(s, 'meshport_connections_total', { listener: 'outbound' }), 1);
    assert.equal(value(s, 'meshport_connections_total', { listener: 'inbound' }), 1);

    // Bytes per listener are exactly what the callers wrote and read.
    const bytes = (listener: string, direction: string) => value(s, 'meshport_bytes_total', { listener, direction });
    const recvA = sum(a.answers.map((x) => x.frame));
    const recvB = sum(b.answers.map((x) => x.frame));
    assert.equal(bytes('outbound', 'in'), sum(sentA));
    assert.equal(bytes('outbound', 'out'), recvA);
    assert.equal(bytes('inbound', 'in'), sum(sentB));
    assert.equal(bytes('inbound', 'out'), recvB);
    // Upstream: every routed request went out unchanged in size; every answer but the router's own two came back in.
    const unrouted = sentA.filter((_, i) => i === 8 || i === 9);
    const own = a.answers.filter((x) => ['100', '101'].includes(String(x.header.requestId))).map((x) => x.frame);
    assert.equal(bytes('upstream', 'out'), sum(sentA) - sum(unrouted) + sum(sentB));
    assert.equal(bytes('upstream', 'in'), recvA - sum(own) + recvB);

    // A caller that goes away leaves the active gauge; the total keeps it.
    b.close();
    await until(() => router!.inflight === 0, 'nothing in flight');
    let after: Sample[] = [];
    for (let tries = 0; tries < 100; tries++) {
      after = parseMetrics((await get(adminPort, '/stats')).body);
      if (value(after, 'meshport_connections_active', { listener: 'inbound' }) === 0) break;
      await sleep(10);
    }
    assert.equal(value(after, 'meshport_connections_active', { listener: 'inbound' }), 0);
    assert.equal(value(after, 'meshport_connections_total', { listener: 'inbound' }), 1);
    assert.equal(value(after, 'meshport_connections_active', { listener: 'outbound' }), 1);
  });

  it('/routes: clusters with endpoints, health and ejections; a lone ejected endpoint still gets calls (panic mode)', async () => {
    const a = await client('outbound');
    // Round-robin tries the refusing endpoint first: the connect failure ejects it (1 consecutive failure here) and
    // the call is retried on the other endpoint, as it never left.
    a.send(boltRequest(1, FLAKY_SVC, 'flaky-1'));
    await a.waitFor(1);
    a.send(boltRequest(2, FLAKY_SVC, 'flaky-2'));
    a.send(boltRequest(3, BOLT_SVC, 'plain'));
    await a.waitFor(3);
    assert.deepEqual(
      a.answers.map((x) => x.header.status),
      [0, 0, 0],
    );

    const page = await get(adminPort, '/routes');
    assert.equal(page.status, 200);
    assert.match(String(page.headers['content-type']), /application\/json/);
    let routes = JSON.parse(page.body) as { clusters: RouteCluster[]; inflight: number };
    assert.equal(routes.inflight, 0);
    const flaky = routes.clusters.find((c) => c.name === FLAKY_SVC && c.listener === 'outbound');
    assert.ok(flaky, `${FLAKY_SVC} is listed: ${page.body}`);
    assert.equal(flaky.policy, 'round-robin');
    const [dead, live] = flaky.endpoints;
    assert.equal(dead.address, `127.0.0.1:${deadPort}`);
    assert.equal(dead.healthy, false);
    assert.equal(dead.ejections, 1);
    assert.ok(dead.ejectedForMs > 50_000 && dead.ejectedForMs <= 60_000, `ejectedForMs ${dead.ejectedForMs}`);
    assert.equal(live.address, `127.0.0.1:${providerSide!.address('inbound').port}`);
    assert.equal(live.healthy, true);
    assert.equal(live.ejections, 0);
    assert.equal(live.weight, 100);
    const plain = routes.clusters.find((c) => c.name === BOLT_SVC && c.listener === 'outbound');
    assert.ok(plain);
    assert.deepEqual(
      plain.endpoints.map((e) => [e.healthy, e.ejections, e.active]),
      [[true, 0, 0]],
    );

    // The only endpoint of a cluster times out once and is ejected; the next call still goes there (Envoy's panic
    // routing) instead of being refused, and succeeds with its own body.
    let dropped = 0;
    provider!.behave = (h) => (h.service === LONELY_SVC && dropped++ === 0 ? 'drop' : 'answer'); // (the id is rewritten)
    a.send(boltRequest(10, LONELY_SVC, 'dropped', 100));
    await a.waitFor(4);
    assert.equal(a.answers[3].header.status, BoltStatus.TIMEOUT);
    routes = JSON.parse((await get(adminPort, '/routes')).body);
    const lonely = routes.clusters.find((c) => c.name === LONELY_SVC)!;
    assert.deepEqual(
      lonely.endpoints.map((e) => [e.healthy, e.ejections]),
      [[false, 1]],
    );
    a.send(boltRequest(11, LONELY_SVC, 'still routed'));
    await a.waitFor(5);
    assert.equal(a.answers[4].header.requestId, 11);
    assert.equal(a.answers[4].header.status, BoltStatus.SUCCESS);
    assert.ok(a.answers[4].frame.toString('latin1').endsWith('still routed'));
  });

  it('/config: the effective settings, defaults filled in, and nothing else', async () => {
    const page = await get(adminPort, '/config');
    assert.equal(page.status, 200);
    assert.match(String(page.headers['content-type']), /application\/json/);
    const config = JSON.parse(page.body);
    assert.equal(config.engine, router!.engine, 'the engine that carries the requests');
    assert.equal(config.connectTimeoutMs, 1500); // given
    assert.equal(config.boltDefaultTimeoutMs, 3000); // defaults
    assert.equal(config.dubboTimeoutMs, 3000);
    assert.equal(config.connectionsPerEndpoint, 1);
    assert.equal(config.connectRetries, 2);
    assert.equal(config.maxFrameSize, 16 * 1024 * 1024);
    assert.equal(config.heartbeatIntervalMs, 10_000);
    assert.equal(config.heartbeatTimeoutMs, 1000);
    assert.equal(config.drainTimeoutMs, 10_000);
    assert.deepEqual(config.outlier, { consecutiveFailures: 1, baseEjectionMs: 60_000, maxEjectionPercent: 10 });
    assert.deepEqual(config.limits, { maxActiveRequests: 500, maxPendingRequests: 1024 });
    assert.deepEqual(config.listeners, {
      outbound: { host: '127.0.0.1', port: router!.address('outbound').port },
      inbound: { host: '127.0.0.1', port: router!.address('inbound').port },
      admin: { host: '127.0.0.1', port: adminPort },
    });
    // The options object also carries the route table and the logger: they are not settings.
    assert.equal('routeTable' in config, false);
    assert.equal('logger' in config, false);
  });

  it('/ready turns 503 once a drain starts, while /healthz stays 200 and the call in flight finishes', async () => {
    provider!.behave = () => ({ delayMs: 400 });
    const a = await client('outbound');
    a.send(boltRequest(1, BOLT_SVC, 'slow'));
    await until(() => router!.inflight === 1, 'the call in flight');
    assert.equal((await get(adminPort, '/ready')).status, 200);
    const drained = router!.drain(5000);
    try {
      const ready = await get(adminPort, '/ready');
      assert.equal(ready.status, 503);
      assert.equal((await get(adminPort, '/healthz')).status, 200);
      await a.waitFor(1);
      assert.equal(a.answers[0].header.status, BoltStatus.SUCCESS);
    } finally {
      await drained;
    }
    // After the drain the admin port is closed too.
    await assert.rejects(get(adminPort, '/healthz'), /ECONNREFUSED/);
  });
});
