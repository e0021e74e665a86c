// `meshport tap` with real peers: sofa-rpc-node through it, raw bytes through it, and the binary itself.

import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { FrameSplitter, decodeFrame, encodeBoltHeartbeat, encodeBoltHeartbeatAck } from '@meshport/protocol';
import { client as sofaClient, server as sofaServer } from 'sofa-rpc-node';
import dubboProtocol from 'dubbo-remoting';
import boltProtocol from 'sofa-bolt-node';
import { quietLogger } from '@meshport/testkit';
import { startTap, type RunningTap } from '../src/tap';
import type { Io } from '../src/io';

const BIN = path.resolve(__dirname, '../../bin/meshport.js');

function capture(): Io & { text: () => string } {
  let out = '';
  return {
    stdin: process.stdin,
    stdout: { write: (t: string) => (out += t) },
    stderr: { write: (t: string) => (out += t) },
    text: () => out,
  };
}

async function listen(server: net.Server): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as net.AddressInfo).port;
}

async function until(check: () => boolean, what: string, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

describe('meshport tap', () => {
  // Bolt named explicitly: sofa-rpc-node's RpcClient keeps the last protocol given in its module-wide defaults.
  for (const peer of [
    { name: 'SOFA RPC over Bolt', impl: { protocol: boltProtocol } },
    { name: 'Dubbo', impl: { protocol: dubboProtocol } },
  ]) {
    it(`${peer.name}: sofa-rpc-node calls through it unchanged, and every frame is printed and paired`, async () => {
      const provider = new sofaServer.RpcServer({ logger: quietLogger, port: 0, ...peer.impl });
      provider.addService(
        { interfaceName: 'com.example.EchoService', version: '1.0' },
        {
          async echo(text: string) {
            return `echo: ${text}`;
          },
        },
      );
      await provider.start();
      const io = capture();
      const tap = await startTap(
        {
          listen: { host: '127.0.0.1', port: 0 },
          upstream: { host: '127.0.0.1', port: provider.publishPort },
          json: true,
        },
        io,
      );
      const rpc = new sofaClient.RpcClient({ logger: quietLogger, ...peer.impl });
      try {
        // retryFaultInterval: the SDK's address-retry loop outlives close() by this long; with its 30 s default it
        // reconnects to this tap's port number later, which by then another suite's listener may hold.
        const consumer = rpc.createConsumer({
          interfaceName: 'com.example.EchoService',
          version: '1.0',
          serverHost: `127.0.0.1:${tap.address.port}`,
          retryFaultInterval: 200,
        });
        await consumer.ready();
        for (let i = 0; i < 3; i++) {
          assert.equal(await consumer.invoke('echo', [`n${i}`], { responseTimeout: 3000 }), `echo: n${i}`);
        }
        await until(
          () =>
            io
              .text()
              .split('\n')
              .filter((l) => l.includes('"kind":"response"')).length === 3,
          'three responses',
        );
      } finally {
        await rpc.close();
        await tap.close();
        await provider.close();
      }
      const frames = io
        .text()
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l))
        .filter((l) => l.kind);
      const requests = frames.filter((f) => f.kind === 'request');
      const responses = frames.filter((f) => f.kind === 'response');
      assert.equal(requests.length, 3);
      assert.equal(responses.length, 3);
      for (const req of requests) {
        assert.equal(req.from, 'client');
        assert.equal(req.service, peer.name === 'Dubbo' ? 'com.example.EchoService' : 'com.example.EchoService:1.0');
        const res = responses.find((r) => r.requestId === req.requestId);
        assert.ok(res, `a response pairs request ${req.requestId}`);
        assert.equal(res.from, 'upstream');
        assert.equal(typeof res.latencyMs, 'number');
        assert.ok(Number.isNaN(Date.parse(res.ts)) === false);
      }
    });
  }

  it('forwards bytes that are no frame unchanged, and says it stopped decoding that direction', async () => {
    const echo = net.createServer((s) => s.pipe(s));
    const port = await listen(echo);
    const io = capture();
    const tap = await startTap({ listen: { host: '127.0.0.1', port: 0 }, upstream: { host: '127.0.0.1', port } }, io);
    try {
      const sock = net.connect(tap.address.port, '127.0.0.1');
      const payload = Buffer.concat([encodeBoltHeartbeat(1), Buffer.from('this is not a frame at all')]);
      sock.write(payload);
      let got = Buffer.alloc(0);
      sock.on('data', (c) => (got = Buffer.concat([got, c])));
      await until(() => got.length >= payload.length, 'the echo');
      assert.ok(got.equals(payload));
      sock.destroy();
      await until(() => io.text().includes('closed'), 'close note');
    } finally {
      await tap.close();
      echo.close();
    }
    assert.match(io.text(), /bolt v1 heartbeat id=1/);
    assert.match(
      io.text(),
      /client stream: MESHPORT_BAD_MAGIC: .*\(at byte 22\); still forwarding, no longer decoding it/,
    );
  });

  it('closes the client when the upstream refuses, and says why', async () => {
    const probe = net.createServer();
    const deadPort = await listen(probe);
    await new Promise((r) => probe.close(r));
    const io = capture();
    let tap: RunningTap | undefined;
    try {
      tap = await startTap(
        { listen: { host: '127.0.0.1', port: 0 }, upstream: { host: '127.0.0.1', port: deadPort } },
        io,
      );
      const sock = net.connect(tap.address.port, '127.0.0.1');
      sock.on('error', () => {});
      await once(sock, 'close');
    } finally {
      await tap?.close();
    }
    assert.match(io.text(), /error: connect ECONNREFUSED/);
  });

  it('the binary: --json lines for a heartbeat round trip, and a clean exit on SIGTERM', async () => {
    // An upstream that answers Bolt heartbeats, built on the protocol package's encoders.
    const upstream = net.createServer((s) => {
      const splitter = new FrameSplitter((f) => s.write(encodeBoltHeartbeatAck(decodeFrame(f).requestId as number)));
      s.on('data', (c) => splitter.write(c));
    });
    const upstreamPort = await listen(upstream);
    const child = spawn(process.execPath, [
      BIN,
      'tap',
      '--json',
      '--listen',
      '127.0.0.1:0',
      '--upstream',
      `127.0.0.1:${upstreamPort}`,
    ]);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c) => (stdout += c));
    child.stderr.on('data', (c) => (stderr += c));
    try {
      await until(() => /listening on [\d.]+:(\d+)/.test(stderr), 'the listening line');
      const port = Number(/listening on [\d.]+:(\d+)/.exec(stderr)![1]);
      const sock = net.connect(port, '127.0.0.1');
      sock.write(encodeBoltHeartbeat(77));
      const [ack] = await once(sock, 'data');
      assert.equal(decodeFrame(ack as Buffer).kind, 'heartbeat-ack');
      await until(() => stdout.includes('heartbeat-ack'), 'the ack line');
      sock.destroy();
      child.kill('SIGTERM');
      const [code] = await once(child, 'exit');
      assert.equal(code, 0);
    } finally {
      child.kill('SIGKILL');
      upstream.close();
    }
    const lines = stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l))
      .filter((l) => l.kind);
    assert.deepEqual(
      lines.map((l) => [l.kind, l.requestId, l.from]),
      [
        ['heartbeat', 77, 'client'],
        ['heartbeat-ack', 77, 'upstream'],
      ],
    );
    assert.equal(typeof lines[1].latencyMs, 'number');
  });
});
