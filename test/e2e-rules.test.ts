// The rules a Dubbo SDK applied client-side, now applied by the consumer's sidecar: provider weights, override rules
// (weight, disabled) and condition routing rules written into a real ZooKeeper as an operator writes them, and an
// unreadable rule that changes nothing. Three sofa-rpc-node Dubbo providers that answer with their own name.

import { strict as assert } from 'node:assert';
import zookeeper from 'node-zookeeper-client';
import { encodeNodeName } from '@meshport/registry-core';
import type { Sidecar } from '@meshport/sidecar';
import { client as sofaClient, server as sofaServer } from 'sofa-rpc-node';
import {
  connectZooKeeper,
  eventually,
  protocolOption,
  quietLogger,
  type RunningZooKeeper,
  startZooKeeper,
} from '@meshport/testkit';
import { adminRoutes, podConfig, showSidecarLogIfFailed, startSidecar, stopSidecars } from './support/sidecars';

const IFACE = 'com.example.rules.Inventory';
const ROUTE = `g1/${IFACE}:1.0`;
/** Each provider is published at a loopback address of its own, so rules can name it by host as operators do. */
const HOSTS = ['127.0.0.1', '127.0.0.2', '127.0.0.3'] as const;

function mkdirp(client: zookeeper.Client, path: string): Promise<void> {
  return new Promise((resolve, reject) =>
    client.mkdirp(path, null, zookeeper.CreateMode.PERSISTENT, (err) => (err ? reject(err) : resolve())),
  );
}
function create(client: zookeeper.Client, path: string): Promise<void> {
  return new Promise((resolve, reject) =>
    client.create(path, null, zookeeper.CreateMode.PERSISTENT, (err) => (err ? reject(err) : resolve())),
  );
}
function remove(client: zookeeper.Client, path: string): Promise<void> {
  return new Promise((resolve, reject) => client.remove(path, -1, (err) => (err ? reject(err) : resolve())));
}
function children(client: zookeeper.Client, path: string): Promise<string[]> {
  return new Promise((resolve, reject) =>
    client.getChildren(path, undefined, (err, names) => (err ? reject(err) : resolve(names))),
  );
}

describe("registry rules end to end: the consumer's sidecar applies what the Dubbo SDK used to (real ZooKeeper)", function () {
  this.timeout(120_000);
  let zk: RunningZooKeeper;
  let operator: zookeeper.Client;
  let pod: Sidecar;
  const servers: { close(): Promise<void>; publishPort: number }[] = [];
  const ports: number[] = [];
  let client: { close(): Promise<void> } | undefined;
  let consumer: { invoke(method: string, args: unknown[], options?: object): Promise<unknown> };
  /** Rule nodes a test wrote, removed after it. */
  const written: string[] = [];

  before(async () => {
    zk = await startZooKeeper();
    operator = await connectZooKeeper(zk.connectString);
    pod = await startSidecar(
      `${podConfig({ type: 'zookeeper', upstream: zk.connectString })}\nrouter: { startupHoldMs: 0 }`,
    );
    for (const host of HOSTS) {
      const server = new sofaServer.RpcServer({
        logger: quietLogger,
        port: 0,
        appName: host,
        ...protocolOption('dubbo'),
      });
      server.addService(
        { interfaceName: IFACE, version: '1.0', group: 'g1' },
        {
          async whoami() {
            return host;
          },
          async find() {
            return host;
          },
        },
      );
      await server.start();
      servers.push(server);
      ports.push(server.publishPort);
      // The provider node as a Java Dubbo provider writes it, in Dubbo's own tree.
      const url = `dubbo://${host}:${server.publishPort}/${IFACE}?anyhost=true&application=inventory&group=g1&interface=${IFACE}&methods=whoami,find&side=provider&version=1.0`;
      await mkdirp(operator, `/dubbo/${IFACE}/providers`);
      await create(operator, `/dubbo/${IFACE}/providers/${encodeNodeName(url, 'java')}`);
    }
    // The consumer app reads the providers through its pod's facade, as Dubbo's RegistryDirectory does, then calls.
    const app = await connectZooKeeper(
      `${pod.address({ facade: 'main' }).host}:${pod.address({ facade: 'main' }).port}`,
    );
    try {
      assert.equal((await children(app, `/dubbo/${IFACE}/providers`)).length, 1, 'one URL for the one identity');
    } finally {
      app.close();
    }
    await eventually('the route of the three providers', async () =>
      pod.book.table.outbound(ROUTE)?.endpoints.length === 3 ? true : undefined,
    );
    const rpc = new sofaClient.RpcClient({ logger: quietLogger, ...protocolOption('dubbo') });
    client = rpc;
    consumer = rpc.createConsumer({
      interfaceName: IFACE,
      version: '1.0',
      group: 'g1',
      serverHost: `127.0.0.1:${pod.address('outbound').port}`,
      retryFaultInterval: 200,
    });
  });

  // The sidecar's log of a failed test first, then the rules it wrote come out again.
  afterEach(async function () {
    showSidecarLogIfFailed(this.currentTest);
    for (const path of written.splice(0)) await remove(operator, path).catch(() => {});
    await eventually('the rules gone from the route', async () =>
      pod.book.table.outbound(ROUTE)?.rules ? undefined : true,
    );
  });

  after(async () => {
    await client?.close();
    for (const server of servers) await server.close();
    operator?.close();
    await stopSidecars();
    await zk?.stop();
  });

  async function writeRule(category: 'configurators' | 'routers', url: string): Promise<void> {
    await mkdirp(operator, `/dubbo/${IFACE}/${category}`);
    const path = `/dubbo/${IFACE}/${category}/${encodeNodeName(url, 'java')}`;
    await create(operator, path);
    written.push(path);
  }

  async function split(method: string, n: number): Promise<Record<string, number>> {
    const counts: Record<string, number> = {};
    for (let i = 0; i < n; i++) {
      const answer = String(
        await consumer.invoke(method, [], { responseTimeout: 3000 }).catch((e: Error) => `error: ${e.message}`),
      );
      counts[answer] = (counts[answer] ?? 0) + 1;
    }
    return counts;
  }

  const weights = () => Object.fromEntries(pod.book.table.outbound(ROUTE)!.endpoints.map((e) => [e.host, e.weight]));

  it('without rules the three providers share the calls evenly', async () => {
    const counts = await split('whoami', 300);
    assert.deepEqual(counts, { '127.0.0.1': 100, '127.0.0.2': 100, '127.0.0.3': 100 });
  });

  it('a weight override on one provider shifts the split: 2,000 calls within 2 points of 300:100:100', async () => {
    await writeRule(
      'configurators',
      `override://127.0.0.2:${ports[1]}/${IFACE}?category=configurators&dynamic=false&enabled=true&group=g1&version=1.0&weight=300`,
    );
    await eventually('the override in force', async () => (weights()['127.0.0.2'] === 300 ? true : undefined));
    const counts = await split('whoami', 2000);
    const share = (host: string) => ((counts[host] ?? 0) / 2000) * 100;
    assert.ok(Math.abs(share('127.0.0.2') - 60) <= 2, JSON.stringify(counts));
    assert.ok(Math.abs(share('127.0.0.1') - 20) <= 2, JSON.stringify(counts));
    assert.ok(Math.abs(share('127.0.0.3') - 20) <= 2, JSON.stringify(counts));
    // /routes shows the rule in force beside the endpoints of the identity.
    const route = (await adminRoutes(pod)).find((c) => c.listener === 'outbound' && c.name === ROUTE) as unknown as {
      rules?: { inForce: string[] };
    };
    assert.equal(route.rules?.inForce.length, 1);
  });

  it('a provider disabled by an override gets no call', async () => {
    await writeRule(
      'configurators',
      `override://127.0.0.3:${ports[2]}/${IFACE}?category=configurators&dynamic=false&disabled=true&group=g1&version=1.0`,
    );
    await eventually('the provider disabled', async () =>
      pod.book.table.outbound(ROUTE)!.endpoints.length === 2 ? true : undefined,
    );
    const counts = await split('whoami', 200);
    assert.deepEqual(counts, { '127.0.0.1': 100, '127.0.0.2': 100 });
  });

  it('a condition rule sends one method to one host; other methods still go everywhere', async () => {
    const rule = encodeURIComponent('method = find => host = 127.0.0.1');
    await writeRule(
      'routers',
      `condition://0.0.0.0/${IFACE}?category=routers&dynamic=false&enabled=true&force=true&group=g1&version=1.0&rule=${rule}`,
    );
    await eventually('the router in force', async () =>
      pod.book.table.outbound(ROUTE)!.routers?.length === 1 ? true : undefined,
    );
    assert.deepEqual(await split('find', 90), { '127.0.0.1': 90 });
    assert.deepEqual(await split('whoami', 90), { '127.0.0.1': 30, '127.0.0.2': 30, '127.0.0.3': 30 });
    // The app reading the routers through its facade sees none: applied again to the one local URL it is handed,
    // `host = 127.0.0.1` would have nothing to keep.
    const facade = pod.address({ facade: 'main' });
    const app = await connectZooKeeper(`${facade.host}:${facade.port}`);
    try {
      assert.deepEqual(await children(app, `/dubbo/${IFACE}/routers`), []);
      assert.equal((await children(operator, `/dubbo/${IFACE}/routers`)).length, 1);
    } finally {
      app.close();
    }
  });

  it('a rule that cannot be parsed is ignored, reported on /routes, and changes nothing', async () => {
    const rule = encodeURIComponent('host = => => host = 127.0.0.2');
    await writeRule(
      'routers',
      `condition://0.0.0.0/${IFACE}?category=routers&force=true&group=g1&version=1.0&rule=${rule}`,
    );
    await eventually('the problem reported', async () =>
      pod.book.table.outbound(ROUTE)!.rules?.problems.length === 1 ? true : undefined,
    );
    assert.equal(pod.book.table.outbound(ROUTE)!.endpoints.length, 3);
    assert.deepEqual(await split('find', 90), { '127.0.0.1': 30, '127.0.0.2': 30, '127.0.0.3': 30 });
  });
});
