// Sidecar.reload: a new config file applied in place. The router keeps its connections; registries come and go by
// entry; routes of a removed registry go after the grace; an invalid file changes nothing.

import { strict as assert } from 'node:assert';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pino from 'pino';
import { client as sofaClient, server as sofaServer } from 'sofa-rpc-node';
import boltProtocol from 'sofa-bolt-node';
import { quietLogger } from '@meshport/testkit';
import { loadConfig } from '../src/config';
import { Sidecar } from '../src/sidecar';

/** What this suite uses of a node-zookeeper-client client (an app's registry client). */
interface ZooKeeperClient {
  connect(): void;
  close(): void;
  once(event: 'connected', listener: () => void): void;
  on(event: 'state', listener: (state: { name: string }) => void): void;
  getSessionId(): Buffer;
  mkdirp(path: string, cb: (error: Error | null) => void): void;
  create(path: string, data: Buffer | null, mode: number, cb: (error: Error | null) => void): void;
  exists(path: string, cb: (error: Error | null, stat: { ephemeralOwner: Buffer } | null) => void): void;
}

/** An app's registry client connected to `connectString`; resolves once it has its session. */
function zooKeeperClient(connectString: string): Promise<{ client: ZooKeeperClient; states: string[] }> {
  // Loaded at run time, typed above: the sidecar's test project does not compile against node-zookeeper-client's
  // declarations (they live in the ZooKeeper adapter) or the test kit, which only this suite's last test needs.
  const zookeeper = require('node-zookeeper-client') as {
    createClient(connectString: string, options: object): ZooKeeperClient;
  };
  const client = zookeeper.createClient(connectString, { sessionTimeout: 10_000, spinDelay: 100, retries: 0 });
  const states: string[] = [];
  client.on('state', (state) => states.push(state.name));
  return new Promise((resolve) => {
    client.once('connected', () => resolve({ client, states }));
    client.connect();
  });
}

/** The session that owns the ephemeral node at `path`, as hex, or undefined when there is no such node. */
function ephemeralOwner(client: ZooKeeperClient, path: string): Promise<string | undefined> {
  return new Promise((resolve, reject) =>
    client.exists(path, (e, stat) => (e ? reject(e) : resolve(stat?.ephemeralOwner.toString('hex')))),
  );
}

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

describe('Sidecar.reload', function () {
  this.timeout(30_000);
  let dir: string;
  let file: string;
  let sidecar: Sidecar;
  let logs: { msg: string; [key: string]: unknown }[];
  const closers: (() => unknown)[] = [];
  let echoPort: number;
  let otherPort: number;

  const header = ['listeners: { outbound: "127.0.0.1:0", inbound: "127.0.0.1:0" }', 'admin: "127.0.0.1:0"'];
  const writeConfig = (lines: string[]) => writeFileSync(file, [...header, ...lines].join('\n') + '\n');
  const staticEntry = '  - { name: static, type: file, upstream: echo.json }';
  const secondEntry = '  - { name: second, type: file, upstream: other.json }';
  // A ZooKeeper facade passing through to nowhere: enough to see whether it keeps its port (0 = a new one per start).
  const zkEntry = '  - { name: zk, type: zookeeper, upstream: "127.0.0.1:1", facade: "127.0.0.1:0" }';

  before(async () => {
    const echo = await provider('echo', 'com.example.Echo');
    const other = await provider('other', 'com.example.Other');
    closers.push(
      () => echo.close(),
      () => other.close(),
    );
    echoPort = echo.publishPort;
    otherPort = other.publishPort;
  });
  after(async () => {
    for (const close of closers.splice(0).reverse()) await close();
  });

  beforeEach(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'meshport-reload-'));
    file = path.join(dir, 'meshport.yaml');
    const route = (iface: string, port: number) =>
      JSON.stringify({ services: { [`${iface}:1.0`]: [`bolt://127.0.0.1:${port}?interface=${iface}&version=1.0`] } });
    writeFileSync(path.join(dir, 'echo.json'), route('com.example.Echo', echoPort));
    writeFileSync(path.join(dir, 'other.json'), route('com.example.Other', otherPort));
    writeConfig(['registries:', staticEntry, zkEntry]);
    logs = [];
    const logger = pino(
      { level: 'info' },
      { write: (line: string) => void logs.push(JSON.parse(line) as (typeof logs)[number]) },
    );
    sidecar = new Sidecar(await loadConfig(file), { logger });
    await sidecar.start();
  });
  afterEach(async () => {
    await sidecar.stop(0);
    rmSync(dir, { recursive: true, force: true });
  });

  const outboundRoute = (key: string) => sidecar.book.table.outbound(key)?.endpoints.map((e) => `${e.host}:${e.port}`);

  it('adds a second registry while a client connection held open keeps getting answers on it', async () => {
    const rpc = new sofaClient.RpcClient({ logger: quietLogger, protocol: boltProtocol });
    closers.push(() => rpc.close());
    const serverHost = `127.0.0.1:${sidecar.address('outbound').port}`;
    const echo = rpc.createConsumer({
      interfaceName: 'com.example.Echo',
      version: '1.0',
      serverHost,
      retryFaultInterval: 200,
    });
    await echo.ready();
    assert.equal(await echo.invoke('echo', ['before'], { responseTimeout: 3000 }), 'echo: before');
    const connection = rpc.connectionManager.connections.get(serverHost);
    assert.ok(connection, 'one connection to the outbound listener');
    let closed = false;
    (connection as unknown as NodeJS.EventEmitter).on('close', () => (closed = true));
    const zkFacade = sidecar.address({ facade: 'zk' });
    assert.equal(outboundRoute('com.example.Other:1.0'), undefined);

    writeConfig(['registries:', staticEntry, zkEntry, secondEntry]);
    const result = await sidecar.reload(file);
    assert.equal(result.ok, true, result.error?.message);
    assert.deepEqual(result.added, ['second']);
    assert.deepEqual(result.removed, []);
    assert.deepEqual(result.unchanged, ['zk']);
    assert.deepEqual(result.restarted, ['static'], 'a file registry routing its whole file is read again');
    assert.deepEqual(result.needRestart, []);
    assert.ok(logs.some((l) => l.msg === 'reloaded'));

    assert.deepEqual(outboundRoute('com.example.Other:1.0'), [`127.0.0.1:${otherPort}`], 'the new registry is routed');
    assert.deepEqual(
      outboundRoute('com.example.Echo:1.0'),
      [`127.0.0.1:${echoPort}`],
      'the restarted one kept its route',
    );
    assert.deepEqual(sidecar.address({ facade: 'zk' }), zkFacade, 'an unchanged facade keeps running on its port');
    assert.deepEqual(
      sidecar.config.registries.map((r) => r.name),
      ['static', 'zk', 'second'],
    );

    assert.equal(await echo.invoke('echo', ['after'], { responseTimeout: 3000 }), 'echo: after');
    const other = rpc.createConsumer({
      interfaceName: 'com.example.Other',
      version: '1.0',
      serverHost,
      retryFaultInterval: 200,
    });
    await other.ready();
    assert.equal(await other.invoke('echo', ['new route'], { responseTimeout: 3000 }), 'other: new route');
    assert.equal(
      rpc.connectionManager.connections.get(serverHost),
      connection,
      'the same connection carried every call',
    );
    assert.equal(closed, false, 'the router did not drop the connection');
    assert.equal(connection.isConnected, true);
  });

  it('drops the routes of a removed registry after the grace, and restarts a changed facade', async () => {
    writeConfig(['registries:', staticEntry, zkEntry, secondEntry]);
    assert.equal((await sidecar.reload(file)).ok, true);
    const zkFacade = sidecar.address({ facade: 'zk' });
    assert.ok(outboundRoute('com.example.Echo:1.0'));

    writeConfig([
      'registries:',
      secondEntry,
      '  - { name: zk, type: zookeeper, upstream: "127.0.0.1:2", facade: "127.0.0.1:0" }',
    ]);
    const result = await sidecar.reload(file);
    assert.equal(result.ok, true, result.error?.message);
    assert.deepEqual(result.removed, ['static']);
    assert.deepEqual(result.restarted.sort(), ['second', 'zk']);
    assert.notDeepEqual(sidecar.address({ facade: 'zk' }), zkFacade, 'a changed entry runs a new facade');
    assert.deepEqual(
      outboundRoute('com.example.Echo:1.0'),
      [`127.0.0.1:${echoPort}`],
      'still served through the grace',
    );
    await sleep(1300);
    assert.equal(outboundRoute('com.example.Echo:1.0'), undefined, 'gone after the grace');
    assert.deepEqual(
      outboundRoute('com.example.Other:1.0'),
      [`127.0.0.1:${otherPort}`],
      'a restarted registry kept its route',
    );
    assert.throws(() => sidecar.address({ facade: 'static' }));
  });

  it('keeps the old config and routes on an invalid file, and says where the mistake is', async () => {
    writeFileSync(
      file,
      [...header, 'registries:', staticEntry, '  - { name: mesh, type: sofa-mesh, via: nowhere }'].join('\n') + '\n',
    );
    const result = await sidecar.reload(file);
    assert.equal(result.ok, false);
    assert.equal((result.error as { code?: string }).code, 'MESHPORT_CONFIG_INVALID');
    assert.match(result.error!.message, /meshport\.yaml:5: registries\[1\]\.via: names no registry in this list/);
    const logged = logs.find((l) => /reload refused/.test(l.msg));
    assert.ok(logged, 'the refusal is logged');
    assert.match(String(logged.error), /meshport\.yaml:5: registries\[1\]\.via/);
    assert.deepEqual(
      sidecar.config.registries.map((r) => r.name),
      ['static', 'zk'],
    );
    await sleep(1300);
    assert.deepEqual(outboundRoute('com.example.Echo:1.0'), [`127.0.0.1:${echoPort}`], 'the old routes stay');
  });

  it('puts the old registries back when a new one fails to start', async () => {
    writeConfig(['registries:', staticEntry, zkEntry, '  - { name: mine, type: ./no-such-plugin }']);
    const result = await sidecar.reload(file);
    assert.equal(result.ok, false);
    assert.equal((result.error as { code?: string }).code, 'MESHPORT_PLUGIN_INVALID');
    assert.ok(logs.some((l) => /reload failed/.test(l.msg)));
    assert.deepEqual(
      sidecar.config.registries.map((r) => r.name),
      ['static', 'zk'],
    );
    assert.ok(sidecar.address({ facade: 'zk' }));
    await sleep(1300);
    assert.deepEqual(outboundRoute('com.example.Echo:1.0'), [`127.0.0.1:${echoPort}`]);
  });

  it('keeps bound listeners as they are and says a restart is needed', async () => {
    const admin = sidecar.address('admin');
    writeFileSync(
      file,
      [
        'listeners: { outbound: "127.0.0.1:0", inbound: "127.0.0.1:0" }',
        'admin: "127.0.0.1:1"',
        'log: { level: warn }',
        'registries:',
        staticEntry,
        zkEntry,
      ].join('\n'),
    );
    const result = await sidecar.reload(file);
    assert.equal(result.ok, true);
    assert.deepEqual(result.needRestart, ['admin']);
    assert.equal(result.logLevel, 'warn');
    assert.ok(logs.some((l) => /need a restart/.test(l.msg)));
    assert.deepEqual(sidecar.address('admin'), admin);
    assert.equal(sidecar.config.admin.port, 0, 'the old admin address stays in effect');
    assert.equal(sidecar.logger.level, 'warn');
  });

  it('takes the inbound routes an app published through a removed facade with it, and logs them', async () => {
    const meshEntry = `  - { name: mesh, type: sofa-mesh, via: static, facade: "127.0.0.1:0", app: "127.0.0.1:${echoPort}" }`;
    writeConfig(['registries:', staticEntry, zkEntry, meshEntry]);
    assert.equal((await sidecar.reload(file)).ok, true);
    const mesh = sidecar.address({ facade: 'mesh' });
    // PublishServiceRequest as sofa-rpc's MeshRegistry sends it.
    const reply = await fetch(`http://${mesh.host}:${mesh.port}/services/publish`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        serviceName: 'com.example.Published:1.0',
        protocolType: 'bolt',
        providerMetaInfo: {
          protocol: 'bolt',
          version: '4.0',
          serializeType: 'hessian2',
          appName: 'demo',
          properties: {},
        },
      }),
    });
    assert.equal(((await reply.json()) as { success: boolean }).success, true);
    assert.deepEqual(sidecar.book.table.inbound('com.example.Published:1.0'), { host: '127.0.0.1', port: echoPort });

    writeConfig(['registries:', staticEntry, zkEntry]);
    const result = await sidecar.reload(file);
    assert.equal(result.ok, true, result.error?.message);
    assert.deepEqual(result.removed, ['mesh']);
    await sleep(1300);
    assert.equal(sidecar.book.table.inbound('com.example.Published:1.0'), undefined, 'gone with its facade');
    const said = logs.find((l) => l.msg === 'registry closed: the inbound routes its apps published through it go');
    assert.ok(said, 'logged');
    assert.equal(said.registry, 'mesh');
    assert.deepEqual(said.services, ['com.example.Published:1.0']);
    // Route changes are logged at most once a second per route: the removal's line may come up to a second later.
    const removal = (l: (typeof logs)[number]) =>
      l.msg === 'route changed' &&
      l.direction === 'inbound' &&
      l.service === 'com.example.Published:1.0' &&
      l.removedCount === 1;
    for (let waited = 0; !logs.some(removal) && waited < 2000; waited += 50) await sleep(50);
    assert.ok(logs.some(removal), 'the removal is logged as a route change');
  });

  it("keeps an app's ZooKeeper session through an unchanged registry's facade with a live upstream: same session, same connection, its ephemeral node stays", async function () {
    this.timeout(90_000);
    const { startZooKeeper } = require('@meshport/testkit') as {
      startZooKeeper(): Promise<{ connectString: string; stop(): Promise<void> }>;
    };
    const zk = await startZooKeeper();
    closers.push(() => zk.stop());
    const liveEntry = `  - { name: live, type: zookeeper, upstream: "${zk.connectString}", facade: "127.0.0.1:0" }`;
    writeConfig(['registries:', staticEntry, zkEntry, liveEntry]);
    const added = await sidecar.reload(file);
    assert.equal(added.ok, true, added.error?.message);
    assert.deepEqual(added.added, ['live']);

    // The app's registry client, through the facade, registers itself with an ephemeral node (as a provider app does).
    const facade = sidecar.address({ facade: 'live' });
    const app = await zooKeeperClient(`${facade.host}:${facade.port}`);
    closers.push(() => app.client.close());
    const session = app.client.getSessionId().toString('hex');
    const node = `/meshport-reload-${process.pid}/app`;
    await new Promise<void>((resolve, reject) =>
      app.client.mkdirp(node.slice(0, node.lastIndexOf('/')), (e) => (e ? reject(e) : resolve())),
    );
    await new Promise<void>((resolve, reject) =>
      app.client.create(node, null, 1 /* EPHEMERAL */, (e) => (e ? reject(e) : resolve())),
    );
    const direct = await zooKeeperClient(zk.connectString);
    closers.push(() => direct.client.close());
    assert.equal(
      await ephemeralOwner(direct.client, node),
      session,
      "the app's node is in ZooKeeper, owned by its session",
    );

    // A reload that changes the other entries around it: one restarted, one added.
    writeConfig([
      'registries:',
      staticEntry,
      '  - { name: zk, type: zookeeper, upstream: "127.0.0.1:2", facade: "127.0.0.1:0" }',
      liveEntry,
      secondEntry,
    ]);
    const result = await sidecar.reload(file);
    assert.equal(result.ok, true, result.error?.message);
    assert.deepEqual(result.unchanged, ['live']);
    assert.ok(result.restarted.includes('zk') && result.added.includes('second'), JSON.stringify(result));
    // Past the grace of the routes a closed registry reported: anything the reload ends would have ended by now.
    await sleep(1300);

    assert.deepEqual(app.states, ['SYNC_CONNECTED'], 'the app never lost its connection (no DISCONNECTED, no EXPIRED)');
    assert.equal(app.client.getSessionId().toString('hex'), session, 'the same session');
    assert.equal(await ephemeralOwner(app.client, node), session, 'the app still reads through the facade');
    assert.equal(
      await ephemeralOwner(direct.client, node),
      session,
      'the ephemeral node is still in ZooKeeper, owned by the same session',
    );
  });
});
