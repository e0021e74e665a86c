// The engine's own surface: how it refuses bad arguments and reports system errors, its relay, its counters.
// (Its request path is held to the router's behavior by the router's suites, which run on both engines.)

import { strict as assert } from 'node:assert';
import net from 'node:net';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { NativeEngine, loadEngineAddon, nativeEngineUnavailable, type EngineLogEvent } from '../src/index';

function engine(logs: EngineLogEvent[] = []): NativeEngine {
  return new NativeEngine({}, (e) => logs.push(e));
}

/** A TCP server on loopback that echoes, and half-closes when the client does. */
async function echoServer(): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    sockets.add(s);
    s.on('data', (d) => s.write(d));
    s.on('end', () => s.end());
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as net.AddressInfo).port,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

describe('native engine: its own surface', () => {
  before(() => {
    const missing = nativeEngineUnavailable();
    if (missing !== undefined) {
      // The bootstrap builds the addon: a missing one is a broken set-up, not a reason to pass.
      throw new Error(missing);
    }
  });

  it('names the bad argument in a TypeError or RangeError, and takes no NaN', () => {
    const addon = loadEngineAddon();
    assert.ok(addon.loaded);
    const Engine = addon.native.Engine as new (settings: unknown, onEvents: unknown) => unknown;
    assert.throws(() => new Engine(null, () => {}), { name: 'TypeError', message: /settings must be an object/ });
    assert.throws(() => new Engine({}, 1), { name: 'TypeError', message: /onEvents must be a function/ });
    assert.throws(() => new Engine({ maxFrameSize: Number.NaN }, () => {}), {
      name: 'RangeError',
      message: /settings\.maxFrameSize/,
    });
    assert.throws(() => new Engine({ maxEjectionPercent: 101 }, () => {}), {
      name: 'RangeError',
      message: /settings\.maxEjectionPercent/,
    });
    assert.throws(() => new Engine({ dubboTimeoutMs: '3' }, () => {}), {
      name: 'TypeError',
      message: /settings\.dubboTimeoutMs must be a number/,
    });
    const e = engine();
    try {
      assert.throws(() => e.listen('sideways' as never, '127.0.0.1', 0, false), {
        name: 'TypeError',
        message: /listener must be 'outbound' or 'inbound'/,
      });
      assert.throws(() => e.listen('outbound', '127.0.0.1', 70000, false), { name: 'RangeError', message: /port/ });
      assert.throws(() => e.listen('outbound', 'localhost', 0, false), {
        name: 'TypeError',
        message: /must be an IP address/,
      });
      assert.throws(() => e.listen('outbound', '127.0.0.1', 0, ['10.0.0.0/33']), {
        name: 'TypeError',
        message: /allow\[0\]/,
      });
      assert.throws(
        () => e.setRoutes({ outbound: [{ name: 'a', endpoints: [{ host: 'db.example', port: 1 }] }], inbound: [] }),
        {
          name: 'TypeError',
          message: /endpoint host db\.example of a is not an IP address/,
        },
      );
      assert.throws(
        () => e.setRoutes({ outbound: [{ name: 'a', endpoints: [], policy: 'random' as never }], inbound: [] }),
        { message: /unknown policy random/ },
      );
      assert.throws(() => e.adopt('outbound', -1), {
        name: 'RangeError',
        message: /fd must be a non-negative integer/,
      });
    } finally {
      e.close();
    }
  });

  it('reports a port it cannot bind with errno, code and syscall', async () => {
    const taken = net.createServer().listen(0, '127.0.0.1');
    await once(taken, 'listening');
    const port = (taken.address() as net.AddressInfo).port;
    const e = engine();
    try {
      assert.throws(
        () => e.listen('outbound', '127.0.0.1', port, false),
        (err: NodeJS.ErrnoException) => {
          assert.equal(err.code, 'EADDRINUSE');
          assert.equal(err.syscall, 'bind');
          assert.equal(err.errno, -98);
          return true;
        },
      );
    } finally {
      e.close();
      taken.close();
    }
  });

  it('runs on the OpenSSL node links: same major.minor as its headers, so the addon offers the engine', () => {
    const addon = loadEngineAddon();
    assert.ok(addon.loaded);
    assert.equal(addon.native.unavailable, undefined, String(addon.native.unavailable));
    assert.equal(typeof addon.native.Engine, 'function');
    assert.match(process.versions.openssl, /^3\./);
  });

  it('takes security as RouterSecurity, and refuses material that does not parse where it is set', () => {
    const e = engine();
    const security = (material: Record<string, string>, extra: Record<string, unknown> = {}) =>
      ({
        mode: 'strict',
        material: { certChain: '', key: '', trustBundle: '', identity: 'spiffe://td/ns/a/sa/b', ...material },
        policy: { default: 'allow-trust-domain', trustDomain: 'td', services: {} },
        ...extra,
      }) as never;
    try {
      e.setSecurity(undefined);
      assert.throws(() => e.setSecurity(security({})), {
        message: /security: the certificate chain holds no PEM certificate/,
      });
      assert.throws(
        () =>
          e.setSecurity(
            security({ certChain: '-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n' }),
          ),
        { message: /security: the certificate chain does not parse/ },
      );
      assert.throws(() => e.setSecurity(security({}, { mode: 'sometimes' })), {
        name: 'TypeError',
        message: /security\.mode must be 'off', 'permissive' or 'strict'/,
      });
      assert.throws(
        () =>
          e.setSecurity(security({}, { policy: { trustDomain: 'td', services: { svc: { allow: 'spiffe://td/x' } } } })),
        { name: 'TypeError', message: /security\.policy\.services\[svc\]\.allow must be an array/ },
      );
      // Nothing was counted by refusals at the door, and the counters are there from the start.
      const { tls, denied } = e.stats();
      assert.deepEqual(tls, { handshakes: { inbound: 0, outbound: 0 }, failures: [] });
      assert.deepEqual(denied, []);
    } finally {
      e.close();
    }
  });

  it('relays a connection byte for byte both ways, passes the half-close on, and counts it', async () => {
    const target = await echoServer();
    const e = engine();
    // The app side: a socket pair through a throwaway listener, whose server end the engine takes over.
    const front = net.createServer({ pauseOnConnect: true });
    front.listen(0, '127.0.0.1');
    await once(front, 'listening');
    try {
      const accepted = once(front, 'connection') as Promise<[net.Socket]>;
      const app = net.connect((front.address() as net.AddressInfo).port, '127.0.0.1');
      app.setNoDelay(true);
      const [server] = await accepted;
      const fd = (server as unknown as { _handle: { fd: number } })._handle.fd;
      e.relay(fd, '127.0.0.1', target.port, Buffer.from('head:'));
      server.destroy(); // the engine holds its own duplicate
      const received: Buffer[] = [];
      app.on('data', (d) => received.push(d));
      const big = Buffer.alloc(3 * 1024 * 1024, 7);
      app.write('after-head:');
      app.end(big);
      await once(app, 'end'); // the echo server's FIN came back through the relay
      const all = Buffer.concat(received);
      assert.equal(all.length, 'head:'.length + 'after-head:'.length + big.length);
      assert.equal(all.subarray(0, 16).toString(), 'head:after-head:');
      assert.ok(all.subarray(16).equals(big), 'every byte, in order');
      const stats = e.stats();
      assert.equal(stats.relaysTotal, 1);
      assert.ok(stats.relayBytes >= 2 * big.length, `relayed ${stats.relayBytes} bytes`);
      app.destroy();
    } finally {
      e.close();
      front.close();
      await target.close();
    }
  });

  it('relays a connection whose destination refuses by closing it, and says so', async () => {
    const closed = net.createServer().listen(0, '127.0.0.1');
    await once(closed, 'listening');
    const deadPort = (closed.address() as net.AddressInfo).port;
    await new Promise<void>((r) => closed.close(() => r()));
    const logs: EngineLogEvent[] = [];
    const e = engine(logs);
    const front = net.createServer({ pauseOnConnect: true });
    front.listen(0, '127.0.0.1');
    await once(front, 'listening');
    try {
      const accepted = once(front, 'connection') as Promise<[net.Socket]>;
      const app = net.connect((front.address() as net.AddressInfo).port, '127.0.0.1');
      app.on('error', () => {});
      const [server] = await accepted;
      e.relay((server as unknown as { _handle: { fd: number } })._handle.fd, '127.0.0.1', deadPort);
      server.destroy();
      await once(app, 'close');
      for (
        let i = 0;
        i < 100 && !logs.some((l) => /pass-through connection to the original destination failed/.test(l.msg));
        i++
      ) {
        await sleep(10);
      }
      assert.ok(
        logs.some((l) => l.level === 'warn' && /original destination failed/.test(l.msg)),
        JSON.stringify(logs),
      );
    } finally {
      e.close();
      front.close();
    }
  });
});
