// The engine's own surface: how it refuses bad arguments and reports system errors, its relay, its counters.
// (Its request path is held to the router's behavior by the router's suites, which run on both engines.)

import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import net from 'node:net';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { FrameSplitter, decodeFrame, type FrameHeader } from '@meshport/protocol';
import { dubboCall, startEchoProvider, type EchoProvider } from '@meshport/testkit';
import {
  NativeEngine,
  loadEngineAddon,
  nativeEngineUnavailable,
  type EngineClusterCounters,
  type EngineLogEvent,
  type EngineSettings,
} from '../src/index';

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

/** A Bolt v1 SofaRequest naming its service and (unless undefined) its method in the header map. */
function boltCall(
  id: number,
  service: string,
  method: string | undefined,
  headers: Record<string, string> = {},
): Buffer {
  const cls = Buffer.from('com.alipay.sofa.rpc.core.request.SofaRequest');
  const entries: Record<string, string> = { service, ...headers };
  if (method !== undefined) entries.sofa_head_method_name = method;
  const header = Buffer.concat(
    Object.entries(entries).flatMap(([k, v]) => {
      const key = Buffer.from(k);
      const val = Buffer.from(v);
      const kl = Buffer.alloc(4);
      kl.writeInt32BE(key.length);
      const vl = Buffer.alloc(4);
      vl.writeInt32BE(val.length);
      return [kl, key, vl, val];
    }),
  );
  const body = Buffer.from('hello');
  const fixed = Buffer.alloc(22);
  fixed[0] = 1;
  fixed[1] = 1;
  fixed.writeUInt16BE(1, 2);
  fixed[4] = 1;
  fixed.writeInt32BE(id, 5);
  fixed[9] = 1;
  fixed.writeInt32BE(3000, 10);
  fixed.writeInt16BE(cls.length, 14);
  fixed.writeInt16BE(header.length, 16);
  fixed.writeInt32BE(body.length, 18);
  return Buffer.concat([fixed, cls, header, body]);
}

/** A caller connection to an engine listener (from `localAddress`, a loopback address) that collects the answers. */
async function dial(port: number, localAddress = '127.0.0.1') {
  const socket = net.connect({ host: '127.0.0.1', port, localAddress });
  await once(socket, 'connect');
  const answers: FrameHeader[] = [];
  const splitter = new FrameSplitter((frame) => answers.push(decodeFrame(frame)));
  socket.on('data', (d) => splitter.write(d));
  return {
    socket,
    answers,
    /** Sends the frames and waits for `expect` answers (one per frame by default). */
    async call(frames: Buffer[], expect = frames.length): Promise<FrameHeader[]> {
      const before = answers.length;
      socket.write(Buffer.concat(frames));
      for (let i = 0; answers.length < before + expect; i++) {
        if (i > 500) throw new Error(`${answers.length - before} of ${expect} answers`);
        await sleep(10);
      }
      return answers.slice(before);
    },
  };
}

const ECHO = 'com.example.EchoService:1.0';

/** An engine whose outbound listener routes ECHO to an echo provider; its telemetry batches go to `batches`. */
async function routedEngine(settings: EngineSettings = {}, batches: [string, string][] = []) {
  const provider = await startEchoProvider();
  const e = new NativeEngine(
    settings,
    () => {},
    (kind, lines) => batches.push([kind, lines.toString()]),
  );
  e.setRoutes({ outbound: [{ name: ECHO, endpoints: [{ host: '127.0.0.1', port: provider.port }] }], inbound: [] });
  const port = e.listen('outbound', '127.0.0.1', 0, false);
  return { e, port, provider };
}

function clusterOf(e: NativeEngine, listener: string, name: string): EngineClusterCounters {
  const c = e.stats().clusters.find((x) => x.listener === listener && x.cluster === name);
  assert.ok(c, `no counters for ${listener}|${name}`);
  return c;
}

async function stop(e: NativeEngine, provider: EchoProvider): Promise<void> {
  e.close();
  await provider.close();
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
  it('counts each cluster per method and per caller, past the caps under `other` with the folded calls counted', async () => {
    const { e, port, provider } = await routedEngine({ labelCaps: { methods: 2, callers: 2 } });
    try {
      const one = await dial(port, '127.0.0.1');
      const two = await dial(port, '127.0.0.2');
      const three = await dial(port, '127.0.0.3');
      let id = 1;
      const answers = await one.call([
        boltCall(id++, ECHO, 'echo'),
        boltCall(id++, ECHO, 'echo'),
        boltCall(id++, ECHO, 'ping'),
        boltCall(id++, ECHO, 'third'),
        boltCall(id++, ECHO, 'fourth'),
        boltCall(id++, ECHO, undefined),
      ]);
      assert.deepEqual(
        answers.map((a) => a.status),
        [0, 0, 0, 0, 0, 0],
      );
      await two.call([boltCall(id++, ECHO, 'echo')]);
      await three.call([boltCall(id++, ECHO, 'echo'), boltCall(id++, ECHO, 'ping')]);
      // Unrouted: the `none` cluster, with the method the frame names.
      await one.call([boltCall(id++, 'com.example.Nowhere:1.0', 'lost')]);
      const c = clusterOf(e, 'outbound', ECHO);
      const byMethod = Object.fromEntries(c.methods.map((m) => [m.method, m]));
      assert.deepEqual(Object.keys(byMethod), ['echo', 'ping', 'other']);
      assert.equal(byMethod.echo.requests, 4);
      assert.deepEqual(byMethod.echo.outcomes, { ok: 4 });
      assert.equal(byMethod.ping.requests, 2);
      // third, fourth and the one without a method (`unknown`): folded.
      assert.equal(byMethod.other.requests, 3);
      assert.equal(c.foldedMethods, 3);
      assert.equal(byMethod.echo.latencyCount, 4);
      assert.equal(
        byMethod.echo.latencyCounts.reduce((a, b) => a + b, 0),
        4,
      );
      assert.ok(byMethod.echo.latencySumSeconds > 0);
      // The methods add up to the cluster's own counters.
      assert.equal(
        c.methods.reduce((n, m) => n + m.latencyCount, 0),
        c.latencyCount,
      );
      assert.equal(
        c.methods.reduce((n, m) => n + m.requests, 0),
        c.requestsBolt,
      );
      assert.deepEqual(c.callers, [
        { caller: '127.0.0.1', requests: 6 },
        { caller: '127.0.0.2', requests: 1 },
        { caller: 'other', requests: 2 },
      ]);
      assert.equal(c.foldedCallers, 2);
      const none = clusterOf(e, 'outbound', 'none');
      assert.deepEqual(
        none.methods.map((m) => [m.method, m.requests, m.outcomes]),
        [['lost', 1, { 'no-route': 1 }]],
      );
      assert.deepEqual(none.callers, [{ caller: '127.0.0.1', requests: 1 }]);
      for (const c of [one, two, three]) c.socket.destroy();
    } finally {
      await stop(e, provider);
    }
  });

  it("counts a Dubbo call under its method, and an upstream's non-OK status under the method it answered", async () => {
    const { e, port, provider } = await routedEngine();
    provider.respond = (frame) => {
      const out = Buffer.from(frame.subarray(0, 16));
      out[2] = 0x02; // response, hessian2
      out[3] = 70; // SERVICE_ERROR
      out.writeInt32BE(0, 12);
      return out;
    };
    const dubboService = 'com.example.DubboEcho:1.0';
    e.setRoutes({
      outbound: [
        { name: ECHO, endpoints: [{ host: '127.0.0.1', port: provider.port }] },
        { name: dubboService, endpoints: [{ host: '127.0.0.1', port: provider.port }] },
      ],
      inbound: [],
    });
    try {
      const caller = await dial(port);
      await sleep(20);
      const [answer] = await caller.call([dubboCall(7, 'com.example.DubboEcho', '1.0', 'sayHello', 'x')]);
      assert.equal(answer.status, 70);
      const c = clusterOf(e, 'outbound', dubboService);
      assert.deepEqual(
        c.methods.map((m) => [m.method, m.requests, m.outcomes]),
        [['sayHello', 1, { 'status-70': 1 }]],
      );
      caller.socket.destroy();
    } finally {
      await stop(e, provider);
    }
  });
  describe('access log lines and spans', () => {
    const ACCESS_KEYS = [
      'time',
      'direction',
      'protocol',
      'caller',
      'callerIdentity',
      'service',
      'method',
      'endpoint',
      'status',
      'durationMs',
      'bytesIn',
      'bytesOut',
      'traceId',
    ];

    /** The lines of one kind handed over so far, parsed; every batch is whole lines. */
    function lines(batches: [string, string][], kind: string): Record<string, unknown>[] {
      return batches
        .filter(([k]) => k === kind)
        .flatMap(([, text]) => {
          assert.ok(text.endsWith('\n'), 'a batch ends a line');
          return text.slice(0, -1).split('\n');
        })
        .map((line) => JSON.parse(line) as Record<string, unknown>);
    }

    async function waitFor(check: () => boolean, what: string): Promise<void> {
      for (let i = 0; !check(); i++) {
        if (i > 200) throw new Error(`waited 2 s for ${what}`);
        await sleep(10);
      }
    }

    it('writes every n-th call and every error, in batches of whole lines in the order and form of the spec', async () => {
      const batches: [string, string][] = [];
      const { e, port, provider } = await routedEngine({}, batches);
      try {
        e.setTelemetry({ accessLog: { everyN: 3, errors: true, slowMs: 0 } });
        const caller = await dial(port);
        const frames = [1, 2, 3, 4, 5, 6].map((id) => boltCall(id, ECHO, 'echo'));
        const answers = await caller.call(frames);
        const lost = boltCall(7, 'com.example.Nowhere:1.0', 'verlorén "lost"');
        await caller.call([lost]);
        await waitFor(() => lines(batches, 'access').length === 3, 'three lines');
        // One batch: the lines of calls made within 100 ms of each other wait for each other.
        assert.ok(batches.length <= 2, `${batches.length} batches`);
        const [third, sixth, error] = lines(batches, 'access');
        for (const line of [third, sixth, error]) assert.deepEqual(Object.keys(line), ACCESS_KEYS);
        const local = `127.0.0.1:${caller.socket.localPort}`;
        assert.deepEqual(
          { ...third, time: 'T', durationMs: 'D' },
          {
            time: 'T',
            direction: 'outbound',
            protocol: 'bolt',
            caller: local,
            callerIdentity: null,
            service: ECHO,
            method: 'echo',
            endpoint: `127.0.0.1:${provider.port}`,
            status: 'ok',
            durationMs: 'D',
            bytesIn: frames[2].length,
            bytesOut: 20 + answers[2].bodyLength,
            traceId: null,
          },
        );
        assert.match(third.time as string, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
        assert.ok(Math.abs(Date.parse(third.time as string) - Date.now()) < 5000);
        const ms = third.durationMs as number;
        assert.ok(ms > 0 && ms < 1000 && Math.round(ms * 1000) / 1000 === ms, `durationMs ${ms}`);
        assert.deepEqual(
          [error.service, error.method, error.endpoint, error.status, error.bytesIn],
          ['none', 'verlorén "lost"', null, 'no-route', lost.length],
        );
        assert.ok((error.bytesOut as number) > 0);
        caller.socket.destroy();
      } finally {
        await stop(e, provider);
      }
    });

    it('names the trace a call carries in its access line, with the access log alone', async () => {
      const batches: [string, string][] = [];
      const { e, port, provider } = await routedEngine({}, batches);
      try {
        e.setTelemetry({ accessLog: { everyN: 1 } });
        const caller = await dial(port);
        const w3c = '4bf92f3577b34da6a3ce929d0e0e4736';
        await caller.call([
          boltCall(1, ECHO, 'echo', {
            'rpc_trace_context.sofaTraceId': '0A1b2c3d4e5f',
            'rpc_trace_context.sofaRpcId': '0.1',
          }),
          boltCall(2, ECHO, 'echo', { traceparent: `00-${w3c}-00f067aa0ba902b7-01` }),
          boltCall(3, ECHO, 'echo'),
        ]);
        await waitFor(() => lines(batches, 'access').length === 3, 'three lines');
        assert.deepEqual(
          lines(batches, 'access').map((l) => l.traceId),
          ['00000000000000000000' + '0a1b2c3d4e5f', w3c, null],
        );
        caller.socket.destroy();
      } finally {
        await stop(e, provider);
      }
    });

    it('writes a span per call as OTLP/JSON, a root span for a call without trace context', async () => {
      const batches: [string, string][] = [];
      const { e, port, provider } = await routedEngine({}, batches);
      try {
        e.setTelemetry({ tracing: { everyN: 1 } });
        const caller = await dial(port);
        const before = Date.now();
        await caller.call([boltCall(1, ECHO, 'echo'), boltCall(2, ECHO, 'echo')]);
        await waitFor(() => lines(batches, 'span').length === 2, 'two spans');
        assert.equal(lines(batches, 'access').length, 0);
        const [span, other] = lines(batches, 'span');
        assert.deepEqual(Object.keys(span), [
          'traceId',
          'spanId',
          'name',
          'kind',
          'startTimeUnixNano',
          'endTimeUnixNano',
          'attributes',
          'status',
        ]);
        assert.match(span.traceId as string, /^[0-9a-f]{32}$/);
        assert.match(span.spanId as string, /^[0-9a-f]{16}$/);
        assert.notEqual(span.traceId, other.traceId);
        assert.equal(span.name, `${ECHO}/echo`);
        assert.equal(span.kind, 3);
        const start = BigInt(span.startTimeUnixNano as string);
        const end = BigInt(span.endTimeUnixNano as string);
        assert.ok(start <= end && start >= BigInt(before - 1000) * 1_000_000n, `${start}..${end}`);
        const attributes = span.attributes as { key: string; value: Record<string, string> }[];
        assert.deepEqual(
          attributes.map((a) => [a.key, Object.values(a.value)[0]]),
          [
            ['rpc.system', 'sofarpc'],
            ['rpc.service', ECHO],
            ['rpc.method', 'echo'],
            ['meshport.direction', 'outbound'],
            ['meshport.outcome', 'ok'],
            ['network.peer.address', `127.0.0.1:${caller.socket.localPort}`],
            ['server.address', `127.0.0.1:${provider.port}`],
            ['meshport.bytes_in', String(boltCall(1, ECHO, 'echo').length)],
            ['meshport.bytes_out', attributes[attributes.length - 1].value.intValue],
          ],
        );
        assert.deepEqual(span.status, { code: 1 });
        caller.socket.destroy();
      } finally {
        await stop(e, provider);
      }
    });

    it('drops lines rather than queue them without end while JavaScript does not take them, and says how many', async () => {
      const batches: [string, string][] = [];
      const logs: EngineLogEvent[] = [];
      const e = new NativeEngine(
        {},
        (event) => logs.push(event),
        (kind, text) => batches.push([kind, text.toString()]),
      );
      try {
        e.setTelemetry({ tracing: { everyN: 1 } });
        const port = e.listen('outbound', '127.0.0.1', 0, false);
        // Another process makes the calls (no route: the engine answers them itself) while this thread is stopped.
        const calls = 30000;
        const frame = boltCall(1, 'com.example.Nowhere:1.0', 'lost').toString('hex');
        const script = `
          const s = require('net').connect(${port}, '127.0.0.1');
          const one = Buffer.from('${frame}', 'hex');
          let left = ${calls}, answered = 0;
          s.on('data', (d) => { answered += d.length; if (answered >= ${calls} * 20) s.end(); });
          s.on('connect', () => { while (left > 0) { const n = Math.min(left, 500); left -= n; s.write(Buffer.concat(Array(n).fill(one))); } });
        `;
        const child = spawn(process.execPath, ['-e', script], { stdio: 'ignore' });
        const exited = once(child, 'exit');
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 3000);
        await exited;
        const dropped = () =>
          logs.filter((l) => /spans dropped/.test(l.msg)).reduce((n, l) => n + (l.spans as number), 0);
        await waitFor(() => lines(batches, 'span').length + dropped() === calls, 'every span written or counted');
        assert.ok(dropped() > 0, 'some were dropped');
        // What was handed over is whole lines, about the bound of what may wait (8 MiB, and the batch that crossed it).
        assert.ok(batches.reduce((n, [, text]) => n + text.length, 0) < 12 * 1024 * 1024);
      } finally {
        e.close();
      }
    });

    it('changes what it writes on setTelemetry, and hands over what waits before a drain ends', async () => {
      const batches: [string, string][] = [];
      const { e, port, provider } = await routedEngine({}, batches);
      try {
        const caller = await dial(port);
        await caller.call([boltCall(1, ECHO, 'echo')]);
        e.setTelemetry({ accessLog: { everyN: 1, errors: true, slowMs: 0 } });
        await caller.call([boltCall(2, ECHO, 'echo')]);
        e.setTelemetry(undefined);
        await caller.call([boltCall(3, ECHO, 'echo')]);
        await sleep(250);
        assert.equal(lines(batches, 'access').length, 1, 'the call made while the access log was on');
        e.setTelemetry({ accessLog: { everyN: 1 } });
        await caller.call([boltCall(4, ECHO, 'echo')]);
        // Within 100 ms of the call, the line still waits: the drain hands it over before it resolves.
        await e.drain(1000);
        assert.equal(lines(batches, 'access').length, 2);
        caller.socket.destroy();
      } finally {
        await stop(e, provider);
      }
    });
  });
});
