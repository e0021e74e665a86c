// The capture listener's decision, with the kernel's part (the original destination) given directly: real SDK calls
// routed by service, everything else relayed unchanged to where the app meant to go.

import { strict as assert } from 'node:assert';
import net from 'node:net';
import { MemoryRouteTable, createRouter, type RouterHandle } from '@meshport/router';
import pino from 'pino';
import { client as sofaClient, server as sofaServer } from 'sofa-rpc-node';
import boltProtocol from 'sofa-bolt-node';
import { quietLogger } from '@meshport/testkit';
import { CaptureListener } from '../src/capture';
import type { HostPort } from '../src/config';

async function provider(name: string, iface: string) {
  const server = new sofaServer.RpcServer({ logger: quietLogger, port: 0, protocol: boltProtocol });
  server.addService(
    { interfaceName: iface, version: '1.0' },
    {
      async echo(text: string) {
        return `${name}: ${text}`;
      },
    },
  );
  await server.start();
  return server;
}

/** Resolves once `done()` holds, checked as `socket` receives each chunk; rejects if it closes first. */
function receivedUntil(socket: net.Socket, done: () => boolean, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const check = () => {
      if (!done()) return;
      socket.off('data', check).off('close', closed);
      resolve();
    };
    const closed = () => reject(new Error(`the connection closed before ${what}`));
    socket.on('data', check).once('close', closed);
    check();
  });
}

function listen(server: net.Server): Promise<number> {
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => resolve((server.address() as net.AddressInfo).port)),
  );
}

describe('CaptureListener', function () {
  this.timeout(20_000);
  const closers: (() => unknown)[] = [];
  let routeTable: MemoryRouteTable;
  let router: RouterHandle;
  let dialed: HostPort;
  let noOriginal = false;
  let capture: CaptureListener;

  beforeEach(async () => {
    routeTable = new MemoryRouteTable();
    router = createRouter({
      routeTable,
      outbound: false,
      inbound: false,
      admin: false,
      logger: pino({ level: 'silent' }),
    });
    await router.start();
    capture = new CaptureListener({
      direction: 'outbound',
      listen: { host: '127.0.0.1', port: 0 },
      originalDestination: () => {
        if (noOriginal) throw Object.assign(new Error('getsockopt failed'), { code: 'ENOENT' });
        return dialed;
      },
      routeTable,
      adopt: (socket) => router.adopt('outbound', socket),
      // The native engine relays unrouted connections on its own thread; the TypeScript one leaves it to the listener.
      relay: router.relay?.bind(router),
      peekTimeoutMs: 100,
    });
    await capture.start();
    closers.push(
      () => capture.close(),
      () => router.drain(0),
    );
  });

  afterEach(async () => {
    for (const close of closers.splice(0).reverse()) await close();
  });

  it('routes a Bolt call whose service has a route, and relays one that has none to where the app dialed', async () => {
    const routed = await provider('routed', 'com.example.Echo');
    const direct = await provider('direct', 'com.example.Echo');
    const other = await provider('other-direct', 'com.example.Other');
    closers.push(
      () => routed.close(),
      () => direct.close(),
      () => other.close(),
    );
    routeTable.setOutbound('com.example.Echo:1.0', { endpoints: [{ host: '127.0.0.1', port: routed.publishPort }] });

    // One client per call: an app that dials two real addresses makes two connections, and the capture decides per
    // connection (a client pooling both services on one connection to the capture port would share the first decision).
    const consume = (iface: string) => {
      const rpc = new sofaClient.RpcClient({ logger: quietLogger, protocol: boltProtocol });
      closers.push(() => rpc.close());
      return rpc.createConsumer({
        interfaceName: iface,
        version: '1.0',
        serverHost: `127.0.0.1:${capture.address().port}`,
        retryFaultInterval: 200,
      });
    };

    dialed = { host: '127.0.0.1', port: direct.publishPort };
    const echo = consume('com.example.Echo');
    await echo.ready();
    assert.equal(
      await echo.invoke('echo', ['x'], { responseTimeout: 3000 }),
      'routed: x',
      'the router chose the endpoint',
    );
    assert.equal(capture.counters.routed, 1);

    dialed = { host: '127.0.0.1', port: other.publishPort };
    const otherConsumer = consume('com.example.Other');
    await otherConsumer.ready();
    assert.equal(
      await otherConsumer.invoke('echo', ['y'], { responseTimeout: 3000 }),
      'other-direct: y',
      'relayed unchanged',
    );
    assert.equal(capture.counters.passedThrough, 1);
  });

  it('relays bytes that are not Bolt or Dubbo, and a protocol where the server speaks first, unchanged', async () => {
    const echo = net.createServer((s) => {
      s.write('hello from the server\n');
      s.pipe(s);
    });
    dialed = { host: '127.0.0.1', port: await listen(echo) };
    closers.push(() => void echo.close());
    const t0 = performance.now();
    const client = net.connect(capture.address().port, '127.0.0.1');
    closers.push(() => void client.destroy());
    let got = '';
    client.on('data', (d: Buffer) => (got += d.toString()));
    // Nothing sent: the pass-through starts after the peek timeout (100 ms; a timer never fires early, so this lower
    // bound does not depend on the machine's speed) and the greeting arrives.
    const greeting = 'hello from the server\n';
    await receivedUntil(client, () => got.length >= greeting.length, 'the greeting');
    assert.ok(
      performance.now() - t0 >= 95,
      `the pass-through started ${(performance.now() - t0).toFixed(0)} ms after connect, before the peek timeout`,
    );
    assert.equal(got, greeting);
    const request = 'GET / HTTP/1.1\r\n\r\n';
    client.write(request);
    await receivedUntil(client, () => got.length >= greeting.length + request.length, 'the echo');
    assert.equal(got, greeting + request);
    assert.equal(capture.counters.passedThrough, 1);
  });

  it('refuses a connection addressed to the capture port itself, and one without an original destination', async () => {
    dialed = { host: '127.0.0.1', port: capture.address().port };
    const looped = net.connect(capture.address().port, '127.0.0.1');
    await new Promise((r) => looped.once('close', r));
    assert.equal(capture.counters.refused, 1);
    noOriginal = true;
    const unknown = net.connect(capture.address().port, '127.0.0.1');
    await new Promise((r) => unknown.once('close', r));
    noOriginal = false;
    assert.equal(capture.counters.refused, 2);
  });
});
