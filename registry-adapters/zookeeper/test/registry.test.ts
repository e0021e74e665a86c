// The ZooKeeper adapter against a real ZooKeeper: the shared conformance suite, the exact sofa-rpc-node node names,
// and survival of a session expiry.

import { strict as assert } from 'node:assert';
import net from 'node:net';
import zookeeper from 'node-zookeeper-client';
import { describeRegistryConformance, formatProviderUrl, type ConnectionState } from '@meshport/registry-core';
import { ZooKeeperRegistry } from '../src/index';
import {
  connected,
  connectZooKeeper,
  eventually,
  restartOutage,
  type RunningZooKeeper,
  startZooKeeper,
} from '@meshport/testkit';

const SERVICE = 'com.nodejs.test.TestService:1.0';
const SOFA_NODE_URL =
  'bolt://127.0.0.1:12200?startTime=1700000000000&pid=4242&uniqueId=&dynamic=true&appName=demo&timeout=3000' +
  '&serialization=hessian2&weight=100&accepts=100000&language=nodejs&rpcVer=50400&protocol=' +
  '&interface=com.nodejs.test.TestService&version=1.0&group=SOFA';
const OTHER_URL = 'bolt://127.0.0.2:12200?interface=com.nodejs.test.TestService&version=1.0';

/** A raw client, as an SDK or an operator would look at the tree. */
const rawClient = connectZooKeeper;

function children(client: zookeeper.Client, path: string): Promise<string[]> {
  return new Promise((resolve, reject) =>
    client.getChildren(path, undefined, (e, names) => (e ? reject(e) : resolve(names))),
  );
}

function nodeData(client: zookeeper.Client, path: string): Promise<{ data: Buffer; stat: zookeeper.Stat }> {
  return new Promise((resolve, reject) =>
    client.getData(path, (e, data, stat) => (e ? reject(e) : resolve({ data, stat }))),
  );
}

describe('@meshport/registry-zookeeper against a real ZooKeeper', function () {
  this.timeout(60_000);
  let server: RunningZooKeeper;
  const quiet = { warn: () => {} };

  before(async () => {
    server = await startZooKeeper();
  });
  after(async () => {
    await server?.stop();
  });

  let run = 0;
  describeRegistryConformance('ZooKeeperRegistry (two sessions on one server)', async () => {
    // A root per pair, so one test's leftovers are not the next one's providers.
    const root = `/conformance-${++run}`;
    const a = new ZooKeeperRegistry({
      connectString: server.connectString,
      root,
      sessionTimeoutMs: 10_000,
      logger: quiet,
    });
    const b = new ZooKeeperRegistry({
      connectString: server.connectString,
      root,
      sessionTimeoutMs: 10_000,
      logger: quiet,
    });
    await Promise.all([connected(a), connected(b)]);
    return {
      a,
      b,
      // A restart shorter than the session timeout: both sessions, their ephemerals and watches survive.
      outage: restartOutage(server, [a, b]),
      settleMs: 500,
      cleanup: async () => {},
    };
  });

  it('writes the provider node exactly where and as sofa-rpc-node does', async () => {
    const adapter = new ZooKeeperRegistry({ connectString: server.connectString, logger: quiet });
    const raw = await rawClient(server.connectString);
    try {
      await adapter.publish(SERVICE, SOFA_NODE_URL);
      const path = '/sofa-rpc/com.nodejs.test.TestService/providers';
      assert.deepEqual(await children(raw, path), [encodeURIComponent(SOFA_NODE_URL)]);
      const { data, stat } = await nodeData(raw, `${path}/${encodeURIComponent(SOFA_NODE_URL)}`);
      assert.equal(data?.length ?? 0, 0, 'node data is empty, as sofa-rpc-node writes it');
      assert.deepEqual(stat.ephemeralOwner, adapter.session.id, 'the node is ephemeral, owned by the adapter session');
      await adapter.unpublish(SERVICE, SOFA_NODE_URL);
      assert.deepEqual(await children(raw, path), []);
    } finally {
      await adapter.close();
      raw.close();
    }
  });

  it('reads a node an SDK wrote with Java URLEncoder names under the Dubbo layout', async () => {
    const adapter = new ZooKeeperRegistry({ connectString: server.connectString, layout: 'dubbo', logger: quiet });
    const raw = await rawClient(server.connectString);
    try {
      const url =
        'dubbo://127.0.0.1:20880/org.apache.dubbo.demo.DemoService?application=demo&interface=org.apache.dubbo.demo.DemoService&methods=sayHello%2CsayHelloAsync&owner=ops(team)';
      const path = '/dubbo/org.apache.dubbo.demo.DemoService/providers';
      const pushes: string[][] = [];
      await adapter.subscribe('org.apache.dubbo.demo.DemoService', (urls) => pushes.push(urls.map(formatProviderUrl)));
      assert.deepEqual(pushes, [[]], 'a missing providers path is an empty list when ZooKeeper says NO_NODE');
      await new Promise<void>((resolve, reject) =>
        raw.mkdirp(path, null, zookeeper.CreateMode.PERSISTENT, (e) => (e ? reject(e) : resolve())),
      );
      // What Dubbo's URL.encode (java.net.URLEncoder.encode(url, "UTF-8")) writes, as a JDK 17 printed it: the
      // parentheses escaped, which encodeURIComponent would keep.
      const javaName =
        'dubbo%3A%2F%2F127.0.0.1%3A20880%2Forg.apache.dubbo.demo.DemoService%3Fapplication%3Ddemo%26interface%3D' +
        'org.apache.dubbo.demo.DemoService%26methods%3DsayHello%252CsayHelloAsync%26owner%3Dops%28team%29';
      await new Promise<void>((resolve, reject) =>
        raw.create(`${path}/${javaName}`, null, zookeeper.CreateMode.EPHEMERAL, (e) => (e ? reject(e) : resolve())),
      );
      await eventually('the Dubbo provider', async () => (pushes.at(-1)?.length === 1 ? true : undefined));
      assert.deepEqual(pushes.at(-1), [url]);
    } finally {
      await adapter.close();
      raw.close();
    }
  });

  it('after a session expiry, re-creates its ephemeral node and its subscriptions still fire', async () => {
    const root = '/expiry';
    const path = `${root}/com.nodejs.test.TestService/providers`;
    const link = await tcpLink(server.port);
    const adapter = new ZooKeeperRegistry({
      connectString: `127.0.0.1:${link.port}`,
      root,
      sessionTimeoutMs: 2_000,
      logger: quiet,
    });
    const other = new ZooKeeperRegistry({
      connectString: server.connectString,
      root,
      sessionTimeoutMs: 10_000,
      logger: quiet,
    });
    const raw = await rawClient(server.connectString);
    const states: ConnectionState[] = [];
    adapter.onStateChange((s) => states.push(s));
    const pushes: string[][] = [];
    try {
      await adapter.publish(SERVICE, SOFA_NODE_URL);
      await adapter.subscribe(SERVICE, (urls) => pushes.push(urls.map(formatProviderUrl)));
      assert.deepEqual(pushes, [[SOFA_NODE_URL]]);
      const before = adapter.session;

      // Expire the adapter's session the way a network partition does: cut its link for longer than the session
      // timeout, so ZooKeeper deletes the session and its ephemerals while the adapter cannot hear it.
      // (Taking the session over with its id and password and closing it races the client's instant reconnect.)
      link.cut();
      await eventually('ZooKeeper to delete the ephemeral node', async () =>
        (await children(raw, path)).length === 0 ? true : undefined,
      );
      assert.deepEqual(pushes, [[SOFA_NODE_URL]], 'nothing is pushed while the adapter cannot see ZooKeeper');
      link.restore();
      await eventually('the adapter to report the expiry', async () => (states.includes('expired') ? true : undefined));
      await eventually('a new session', async () =>
        adapter.state === 'connected' && !adapter.session.id.equals(before.id) ? true : undefined,
      );

      // The ephemeral node is back, owned by the new session.
      const name = encodeURIComponent(SOFA_NODE_URL);
      await eventually('the re-created provider node', async () =>
        (await children(raw, path)).includes(name) ? true : undefined,
      );
      assert.deepEqual((await nodeData(raw, `${path}/${name}`)).stat.ephemeralOwner, adapter.session.id);
      assert.ok(
        pushes.every((list) => list.length > 0),
        `an empty list was pushed: ${JSON.stringify(pushes)}`,
      );

      // And the subscription is re-armed in the new session.
      await other.publish(SERVICE, OTHER_URL);
      await eventually('the new provider seen after the expiry', async () =>
        pushes.at(-1)?.length === 2 ? true : undefined,
      );
      assert.deepEqual(pushes.at(-1), [SOFA_NODE_URL, OTHER_URL].sort());
      await other.unpublish(SERVICE, OTHER_URL);
      await eventually('the removal seen after the expiry', async () =>
        pushes.at(-1)?.length === 1 ? true : undefined,
      );
      assert.deepEqual(pushes.at(-1), [SOFA_NODE_URL]);
    } finally {
      await adapter.close();
      await other.close();
      raw.close();
      await link.close();
    }
  });
});

/** A loopback TCP relay to ZooKeeper that the test can cut (resetting and refusing connections) and restore. */
async function tcpLink(
  targetPort: number,
): Promise<{ port: number; cut(): void; restore(): void; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  let open = true;
  const server = net.createServer((inbound) => {
    if (!open) {
      inbound.destroy();
      return;
    }
    const outbound = net.connect({ host: '127.0.0.1', port: targetPort });
    for (const s of [inbound, outbound]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => {});
    }
    inbound.pipe(outbound).on('close', () => inbound.destroy());
    outbound.pipe(inbound).on('close', () => outbound.destroy());
    inbound.on('close', () => outbound.destroy());
    outbound.on('close', () => inbound.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const dropAll = () => {
    for (const s of sockets) s.destroy();
  };
  return {
    port: (server.address() as net.AddressInfo).port,
    cut() {
      open = false;
      dropAll();
    },
    restore() {
      open = true;
    },
    close: () => {
      dropAll();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
