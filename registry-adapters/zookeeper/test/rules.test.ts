// ZooKeeperRegistry.watchRules against a real ZooKeeper: Dubbo's configurators/routers and Java sofa-rpc's
// configs/overrides as their SDKs and consoles write them, through a cut link and a session expiry.

import { strict as assert } from 'node:assert';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import zookeeper from 'node-zookeeper-client';
import { compileRules, emptyRuleUrls, encodeNodeName, endpointsFor, type RuleUrls } from '@meshport/registry-core';
import { ZooKeeperRegistry } from '../src/index';
import { connected, connectZooKeeper, eventually, type RunningZooKeeper, startZooKeeper } from '@meshport/testkit';

const DUBBO_IFACE = 'org.apache.dubbo.demo.DemoService';
const SOFA_IFACE = 'com.alipay.sofa.rpc.example.HelloService';
const override = (address: string, params: string) =>
  `override://${address}/${DUBBO_IFACE}?category=configurators&dynamic=false&enabled=true&${params}`;
const condition = (rule: string) =>
  `condition://0.0.0.0/${DUBBO_IFACE}?category=routers&dynamic=false&enabled=true&force=true&priority=1&rule=${encodeURIComponent(rule)}`;

function mkdirp(client: zookeeper.Client, path: string): Promise<void> {
  return new Promise((resolve, reject) =>
    client.mkdirp(path, null, zookeeper.CreateMode.PERSISTENT, (e) => (e ? reject(e) : resolve())),
  );
}

/** A persistent node, as dubbo-admin writes a rule with dynamic=false and as sofa-rpc's console writes configs. */
async function create(client: zookeeper.Client, path: string, data?: string): Promise<void> {
  await mkdirp(client, path.slice(0, path.lastIndexOf('/')));
  await new Promise<void>((resolve, reject) =>
    client.create(path, data === undefined ? null : Buffer.from(data), zookeeper.CreateMode.PERSISTENT, (e) =>
      e ? reject(e) : resolve(),
    ),
  );
}

function remove(client: zookeeper.Client, path: string): Promise<void> {
  return new Promise((resolve, reject) => client.remove(path, -1, (e) => (e ? reject(e) : resolve())));
}

function setData(client: zookeeper.Client, path: string, data: string): Promise<void> {
  return new Promise((resolve, reject) =>
    client.setData(path, Buffer.from(data), -1, (e) => (e ? reject(e) : resolve())),
  );
}

/** What a watchRules listener has seen. */
function recorder() {
  const pushes: RuleUrls[] = [];
  return {
    pushes,
    listener: (rules: RuleUrls) => pushes.push(rules),
    last: () => pushes.at(-1),
    /** Waits for a push that satisfies `test`. */
    until: (what: string, test: (rules: RuleUrls) => boolean) =>
      eventually(what, async () => (pushes.length > 0 && test(pushes.at(-1)!) ? true : undefined)),
  };
}

describe('@meshport/registry-zookeeper watchRules against a real ZooKeeper', function () {
  this.timeout(60_000);
  let server: RunningZooKeeper;
  let raw: zookeeper.Client;
  const quiet = { warn: () => {} };

  before(async () => {
    server = await startZooKeeper();
    raw = await connectZooKeeper(server.connectString);
  });
  after(async () => {
    raw?.close();
    await server?.stop();
  });

  it('Dubbo layout: configurators and routers, from no directory at all to rules added and removed', async () => {
    const adapter = new ZooKeeperRegistry({ connectString: server.connectString, layout: 'dubbo', logger: quiet });
    const seen = recorder();
    try {
      const unwatch = await adapter.watchRules(DUBBO_IFACE, seen.listener);
      assert.deepEqual(seen.pushes, [emptyRuleUrls()], 'missing rule directories are no rules, pushed once');
      // Dubbo's service key names the same interface.
      assert.deepEqual(adapter.rulePaths(`demo-group/${DUBBO_IFACE}:1.0.0`), {
        configurators: `/dubbo/${DUBBO_IFACE}/configurators`,
        routers: `/dubbo/${DUBBO_IFACE}/routers`,
      });

      // Dubbo writes URL.encode(url.toFullString()): Java's URLEncoder.
      const weight = override('10.0.0.2:20880', 'weight=200');
      const weightNode = `/dubbo/${DUBBO_IFACE}/configurators/${encodeNodeName(weight, 'java')}`;
      await create(raw, weightNode);
      await seen.until('the configurator', (r) => r.configurators.length === 1);
      assert.deepEqual(seen.last(), { ...emptyRuleUrls(), configurators: [weight] });

      const router = condition('method = find* => host = 10.0.0.1');
      const routerNode = `/dubbo/${DUBBO_IFACE}/routers/${encodeNodeName(router, 'java')}`;
      await create(raw, routerNode);
      await seen.until('the router', (r) => r.routers.length === 1);
      assert.deepEqual(seen.last(), { ...emptyRuleUrls(), configurators: [weight], routers: [router] });

      // What the sidecar does with them: the whole point of watching.
      const providers = ['10.0.0.1', '10.0.0.2'].map(
        (h) => `dubbo://${h}:20880/${DUBBO_IFACE}?interface=${DUBBO_IFACE}&methods=findUser,save`,
      );
      const route = compileRules({
        dialect: 'dubbo',
        providers,
        rules: seen.last()!,
        consumer: { host: '10.1.1.1', interface: DUBBO_IFACE },
        nowMs: Date.now(),
      });
      assert.deepEqual(
        endpointsFor(route, 'findUser').map((e) => e.host),
        ['10.0.0.1'],
      );
      assert.deepEqual(
        endpointsFor(route, 'save').map((e) => [e.host, e.weight]),
        [
          ['10.0.0.1', 100],
          ['10.0.0.2', 200],
        ],
      );

      await remove(raw, weightNode);
      await seen.until('the configurator removed', (r) => r.configurators.length === 0);
      assert.deepEqual(seen.last(), { ...emptyRuleUrls(), routers: [router] });

      const before = seen.pushes.length;
      unwatch();
      await remove(raw, routerNode);
      await sleep(500);
      assert.equal(seen.pushes.length, before, 'nothing is pushed after unwatching');
    } finally {
      await adapter.close();
    }
  });

  it('sofa layout: configs as name -> data (data changes included) and overrides as URLs', async () => {
    const adapter = new ZooKeeperRegistry({ connectString: server.connectString, logger: quiet });
    const seen = recorder();
    const configs = `/sofa-rpc/${SOFA_IFACE}/configs`;
    const overrides = `/sofa-rpc/${SOFA_IFACE}/overrides`;
    try {
      // A service key works as well as the bare interface.
      await adapter.watchRules(`${SOFA_IFACE}:1.0`, seen.listener);
      assert.deepEqual(seen.pushes, [emptyRuleUrls()]);
      assert.deepEqual(adapter.rulePaths(SOFA_IFACE), { configs, overrides });

      await create(raw, `${configs}/timeout`, '200');
      await seen.until('the config', (r) => r.configs.timeout === '200');
      await setData(raw, `${configs}/timeout`, '300');
      await seen.until('the changed config value', (r) => r.configs.timeout === '300');

      // Java sofa-rpc encodes the override URL with URLEncoder, like its provider nodes.
      const mine = 'bolt://10.1.1.1?timeout=5000&loadBalancer=roundRobin';
      await create(raw, `${overrides}/${encodeNodeName(mine, 'java')}`);
      await seen.until('the override', (r) => r.overrides.length === 1);
      assert.deepEqual(seen.last(), { ...emptyRuleUrls(), configs: { timeout: '300' }, overrides: [mine] });

      await remove(raw, `${configs}/timeout`);
      await seen.until('the config removed', (r) => Object.keys(r.configs).length === 0);
      assert.deepEqual(seen.last()!.overrides, [mine]);
    } finally {
      await adapter.close();
    }
  });

  it('keeps the last set through a cut link and a session expiry, then sees what changed and keeps watching', async () => {
    const link = await tcpLink(server.port);
    const adapter = new ZooKeeperRegistry({
      connectString: `127.0.0.1:${link.port}`,
      layout: 'dubbo',
      root: '/expiry-rules',
      sessionTimeoutMs: 2_000,
      logger: quiet,
    });
    const seen = recorder();
    const dir = `/expiry-rules/${DUBBO_IFACE}/configurators`;
    const a = override('0.0.0.0', 'weight=10');
    const b = override('0.0.0.0', 'weight=20');
    const c = override('0.0.0.0', 'weight=30');
    const node = (rule: string) => `${dir}/${encodeNodeName(rule, 'java')}`;
    try {
      await create(raw, node(a));
      await adapter.watchRules(DUBBO_IFACE, seen.listener);
      assert.deepEqual(
        seen.pushes.map((r) => r.configurators),
        [[a]],
      );
      const session = adapter.session.id;

      link.cut();
      await create(raw, node(b));
      await remove(raw, node(a));
      // Longer than the session timeout: ZooKeeper forgets the session and its watches.
      await sleep(4_000);
      assert.deepEqual(
        seen.pushes.map((r) => r.configurators),
        [[a]],
        'nothing is pushed while ZooKeeper cannot be reached',
      );

      link.restore();
      await eventually('a new session', async () =>
        adapter.state === 'connected' && !adapter.session.id.equals(session) ? true : undefined,
      );
      await seen.until(
        'the change made during the outage',
        (r) => r.configurators.length === 1 && r.configurators[0] === b,
      );

      await create(raw, node(c));
      await seen.until('a change after the expiry', (r) => r.configurators.length === 2);
      assert.deepEqual(seen.last()!.configurators, [b, c].sort());
      assert.ok(
        seen.pushes.every((r) => r.configurators.length > 0),
        `an empty set was pushed: ${JSON.stringify(seen.pushes)}`,
      );
    } finally {
      await adapter.close();
      await link.close();
    }
  });

  it('a plain restart of ZooKeeper pushes nothing new, and the watch survives it', async () => {
    const adapter = new ZooKeeperRegistry({
      connectString: server.connectString,
      layout: 'dubbo',
      root: '/restart-rules',
      sessionTimeoutMs: 10_000,
      logger: quiet,
    });
    const seen = recorder();
    const dir = `/restart-rules/${DUBBO_IFACE}/routers`;
    const r1 = condition('=> host = 10.0.0.1');
    const r2 = condition('=> host = 10.0.0.2');
    try {
      await create(raw, `${dir}/${encodeNodeName(r1, 'java')}`);
      await adapter.watchRules(DUBBO_IFACE, seen.listener);
      await server.restart({ downMs: 1_000 });
      await connected(adapter);
      raw.close();
      raw = await connectZooKeeper(server.connectString);
      await sleep(500);
      assert.deepEqual(
        seen.pushes.map((r) => r.routers),
        [[r1]],
        'the same set is not pushed again',
      );
      await create(raw, `${dir}/${encodeNodeName(r2, 'java')}`);
      await seen.until('a router added after the restart', (r) => r.routers.length === 2);
    } finally {
      await adapter.close();
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
    inbound.pipe(outbound);
    outbound.pipe(inbound);
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
