// SIGTERM as a pod sees it from outside, in the order docs/sidecar.md (Signals) gives: the facades close first (the
// apps' registry connections end, so their ephemeral registrations go and they stop learning this pod's addresses),
// then the router drains (listeners closed, /ready 503, calls in flight finished), then the process exits 0. Checked
// on the `meshport sidecar` command itself, by what an app, a registry and a kubelet can observe: connections, the
// admin port, the answer of a call in flight, the exit code and the log lines.

import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { JsonLinesChild, quietLogger } from '@meshport/testkit';
import { client as sofaClient, server as sofaServer } from 'sofa-rpc-node';
import boltProtocol from 'sofa-bolt-node';

/** The command a pod runs (resolved at run time: a test of what users start, not a build dependency). */
const MESHPORT = require.resolve('@meshport/cli/bin/meshport.js');
const IFACE = 'com.example.Slow';
/** How long the provider takes with the call that is in flight at the signal: far longer than the facades' close. */
const CALL_MS = 1500;

/** `meshport sidecar --config FILE`, its JSON log lines collected; resolves once it logs that it is running. */
async function startSidecar(config: string): Promise<JsonLinesChild> {
  const child = spawn(process.execPath, [MESHPORT, 'sidecar', '--config', config], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const sidecar = new JsonLinesChild('meshport sidecar', child);
  await sidecar.waitFor((m) => m.msg === 'meshport sidecar running', 'its start', 15_000);
  return sidecar;
}

function listening(server: net.Server): Promise<number> {
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => resolve((server.address() as net.AddressInfo).port)),
  );
}

/** Whether a TCP connect to `port` is accepted. */
function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

async function readyStatus(admin: number): Promise<number | 'closed'> {
  try {
    return (await fetch(`http://127.0.0.1:${admin}/ready`)).status;
  } catch {
    return 'closed';
  }
}

describe('meshport sidecar on SIGTERM', function () {
  this.timeout(60_000);
  const closers: (() => unknown)[] = [];
  afterEach(async () => {
    for (const close of closers.splice(0).reverse()) await close();
  });

  it('closes the facades first, then drains the router (listeners closed, /ready 503, the call in flight answered), then exits 0', async () => {
    // The provider: starts the slow call, and says when it has it.
    let callArrived: () => void = () => {};
    const arrived = new Promise<void>((resolve) => (callArrived = resolve));
    const provider = new sofaServer.RpcServer({ logger: quietLogger, port: 0, protocol: boltProtocol });
    provider.addService(
      { interfaceName: IFACE, version: '1.0' },
      {
        async echo(text: string) {
          callArrived();
          await sleep(CALL_MS);
          return `slow: ${text}`;
        },
      },
    );
    await provider.start();
    closers.push(() => provider.close());

    // The registry behind a ZooKeeper facade: a TCP server standing in for ZooKeeper, which is all the facade needs to
    // pass an app's connection through; it records when each connection the facade opened to it ends.
    const upstreamEnded: number[] = [];
    const upstreamOpen = new Set<net.Socket>();
    const registry = net.createServer((s) => {
      upstreamOpen.add(s);
      s.on('error', () => {});
      s.on('close', () => {
        upstreamOpen.delete(s);
        upstreamEnded.push(Date.now());
      });
    });
    const registryPort = await listening(registry);
    closers.push(() => new Promise((r) => registry.close(r)));

    const dir = mkdtempSync(path.join(os.tmpdir(), 'meshport-sigterm-'));
    closers.push(() => rmSync(dir, { recursive: true, force: true }));
    const routes = path.join(dir, 'routes.json');
    writeFileSync(
      routes,
      JSON.stringify({
        services: { [`${IFACE}:1.0`]: [`bolt://127.0.0.1:${provider.publishPort}?interface=${IFACE}&version=1.0`] },
      }),
    );
    const config = path.join(dir, 'meshport.yaml');
    writeFileSync(
      config,
      [
        // Port 0 everywhere (no port picked here and taken again later): the log says which ones it bound.
        'listeners: { outbound: "127.0.0.1:0", inbound: "127.0.0.1:0" }',
        'admin: "127.0.0.1:0"',
        'log: { level: info }',
        // A deadline far past the call: the drain must end because the call was answered, not because time ran out.
        'router: { drainTimeoutMs: 20000 }',
        'registries:',
        `  - { name: static, type: file, upstream: "${routes}" }`,
        `  - { name: zk, type: zookeeper, upstream: "127.0.0.1:${registryPort}", facade: "127.0.0.1:0" }`,
      ].join('\n') + '\n',
    );
    const sidecar = await startSidecar(config);
    closers.push(() => void sidecar.child.kill('SIGKILL'));
    const running = sidecar.lines.find((l) => l.msg === 'meshport sidecar running') as unknown as {
      outbound: { port: number };
      admin: { port: number };
    };
    const { port: outbound } = running.outbound;
    const { port: admin } = running.admin;
    const zkReady = sidecar.lines.find((l) => l.msg === 'registry ready' && l.registry === 'zk') as unknown as
      | { facade: { port: number } }
      | undefined;
    assert.ok(zkReady, 'the facade is logged with its address');
    const facade = zkReady.facade.port;

    // An app's registry connection through the facade, passed through to the registry.
    const app = net.connect(facade, '127.0.0.1');
    app.on('error', () => {});
    let appClosedAt = 0;
    app.once('close', () => (appClosedAt = Date.now()));
    await new Promise((r) => app.once('connect', r));
    for (let i = 0; i < 200 && upstreamOpen.size === 0; i++) await sleep(10);
    assert.equal(upstreamOpen.size, 1, "the facade passed the app's connection through to the registry");
    assert.equal(await readyStatus(admin), 200);

    // A call in flight when the signal comes.
    const rpc = new sofaClient.RpcClient({ logger: quietLogger, protocol: boltProtocol });
    closers.push(() => rpc.close());
    const consumer = rpc.createConsumer({ interfaceName: IFACE, version: '1.0', serverHost: `127.0.0.1:${outbound}` });
    await consumer.ready();
    let answeredAt = 0;
    const call = consumer.invoke('echo', ['in flight'], { responseTimeout: 20_000 }).then((reply: unknown) => {
      answeredAt = Date.now();
      return reply;
    });
    await arrived;
    const signalledAt = Date.now();
    sidecar.child.kill('SIGTERM');

    // 1. The facades go: the app's registry connection and the facade's connection to the registry end, and the
    // facade takes no new app. (Waited for on the events themselves, bounded by the call, which is still in flight.)
    while ((appClosedAt === 0 || upstreamOpen.size > 0) && answeredAt === 0) await sleep(5);
    assert.ok(
      appClosedAt > 0 && upstreamEnded.length > 0,
      "the app's registry connection ended before the call in flight was answered",
    );
    assert.equal(answeredAt, 0, 'the call in flight is not answered yet');
    assert.equal(await accepts(facade), false, 'the facade takes no new app connection');

    // 2. The router drains: no new callers, /ready 503, while the call is still in flight. (It begins a moment after the
    // facades are closed, so each is waited for, bounded by the call's answer.)
    let outboundOpen = true;
    while (outboundOpen && answeredAt === 0) outboundOpen = await accepts(outbound);
    assert.equal(outboundOpen, false, 'the outbound listener closed');
    let ready = await readyStatus(admin);
    while (ready === 200 && answeredAt === 0) {
      await sleep(5);
      ready = await readyStatus(admin);
    }
    assert.equal(ready, 503, '/ready says 503 during the drain');
    assert.equal(answeredAt, 0, 'all of that while the call was still in flight');

    // 3. The call in flight finishes, then the process exits 0.
    assert.equal(await call, 'slow: in flight');
    await sidecar.exited;
    const code = sidecar.child.exitCode;
    const exitedAt = Date.now();
    assert.equal(code, 0, sidecar.output());
    assert.ok(
      answeredAt - signalledAt >= CALL_MS / 2,
      'the call was answered by the provider, after the facades had closed',
    );
    assert.ok(exitedAt >= answeredAt, 'the process exited after the answer');

    // The log says the same, in that order: the signal, the router's drain with the call still in flight, drained.
    const at = (msg: string) => sidecar.lines.findIndex((l) => l.msg === msg);
    const order = ['signal received, draining', 'draining', 'drained'].map(at);
    assert.ok(
      order.every((i) => i >= 0),
      `log lines missing:\n${sidecar.lines.map((l) => l.msg).join('\n')}`,
    );
    assert.deepEqual(
      [...order].sort((a, b) => a - b),
      order,
      `log lines out of order:\n${sidecar.lines.map((l) => l.msg).join('\n')}`,
    );
    assert.equal(sidecar.lines[order[1]!]!.inflight, 1, 'the router began its drain with the call still in flight');
  });
});
