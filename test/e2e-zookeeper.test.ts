// Registry takeover end to end over ZooKeeper: two sidecars as two pods, a sofa-rpc-node provider and consumer each
// pointed at its own sidecar's ZooKeeper facade, a real ZooKeeper upstream, Bolt and Dubbo.

import { strict as assert } from 'node:assert';
import { setTimeout as sleep } from 'node:timers/promises';
import zookeeper from 'node-zookeeper-client';
import { decodeNodeName, parseProviderUrl, type ProviderUrl } from '@meshport/registry-core';
import type { Sidecar } from '@meshport/sidecar';
import {
  closeApps,
  connectZooKeeper,
  eventually,
  type Protocol,
  type RunningZooKeeper,
  spawnProviderApp,
  startConsumerApp,
  startZooKeeper,
  stopProviderApps,
} from '@meshport/testkit';
import { adminRoutes, podConfig, showSidecarLogIfFailed, startSidecar, stopSidecars } from './support/sidecars';

const connect = (connectString: string) => connectZooKeeper(connectString);

function children(client: zookeeper.Client, path: string): Promise<string[]> {
  return new Promise((resolve, reject) =>
    client.getChildren(path, undefined, (err, names) => (err ? reject(err) : resolve(names))),
  );
}

/** The provider URLs under /sofa-rpc/<iface>/providers as a client of `client`'s server sees them. */
async function providers(client: zookeeper.Client, iface: string): Promise<ProviderUrl[]> {
  try {
    return (await children(client, `/sofa-rpc/${iface}/providers`)).map((n) => parseProviderUrl(decodeNodeName(n)));
  } catch (err) {
    if ((err as { code?: number }).code === zookeeper.Exception.NO_NODE) return [];
    throw err;
  }
}

const facadeAddress = (sidecar: Sidecar) => {
  const { host, port } = sidecar.address({ facade: 'main' });
  return `${host}:${port}`;
};

describe('registry takeover end to end: sofa-rpc-node through two sidecars and a real ZooKeeper', function () {
  afterEach(function () {
    showSidecarLogIfFailed(this.currentTest);
  });
  this.timeout(60_000);
  let zk: RunningZooKeeper;
  let direct: zookeeper.Client;
  let providerPod: Sidecar;
  let consumerPod: Sidecar;

  before(async () => {
    zk = await startZooKeeper();
    direct = await connect(zk.connectString);
    const config = podConfig({ type: 'zookeeper', upstream: zk.connectString });
    providerPod = await startSidecar(config);
    consumerPod = await startSidecar(config);
  });

  after(async () => {
    stopProviderApps();
    direct?.close();
    await stopSidecars();
    await zk?.stop();
  });

  for (const protocol of ['bolt', 'dubbo'] as Protocol[]) {
    describe(protocol, () => {
      const iface = `com.example.e2e.${protocol === 'bolt' ? 'Bolt' : 'Dubbo'}EchoService`;
      // sofa-rpc-node's Dubbo calls carry their consumer's group, SOFA by default, which is part of their route key.
      const routeKey = protocol === 'dubbo' ? `SOFA/${iface}:1.0` : `${iface}:1.0`;
      const apps: { close(): Promise<void> }[] = [];
      after(async () => {
        await closeApps(apps.reverse());
      });

      it('publishes the provider sidecar inbound address, routes the consumer through both sidecars, and follows the ephemeral node', async () => {
        const provider = await spawnProviderApp(protocol, iface, facadeAddress(providerPod));
        const inbound = providerPod.address('inbound');

        // The node in the real ZooKeeper carries the provider sidecar's inbound address, every parameter kept.
        const [published] = await eventually('the provider node upstream', async () => {
          const list = await providers(direct, iface);
          return list.length > 0 ? list : undefined;
        });
        assert.deepEqual({ host: published!.host, port: published!.port }, { host: '127.0.0.1', port: inbound.port });
        assert.equal(published!.scheme, protocol === 'dubbo' ? 'dubbo' : 'bolt');
        assert.ok(published!.params.some((p) => p.name === 'interface' && p.value === iface));
        assert.ok(published!.params.some((p) => p.name === 'appName' && p.value === 'provider'));

        // The consumer, reading through its own facade, sees its own sidecar's outbound endpoint.
        const throughFacade = await connect(facadeAddress(consumerPod));
        try {
          const seen = await providers(throughFacade, iface);
          assert.deepEqual(
            seen.map((u) => `${u.host}:${u.port}`),
            [`127.0.0.1:${consumerPod.address('outbound').port}`],
          );
        } finally {
          throughFacade.close();
        }

        const consumerApp = await startConsumerApp(protocol, iface, facadeAddress(consumerPod));
        apps.push(consumerApp.registry, consumerApp.client);
        for (const text of ['one', 'two', 'three']) {
          assert.equal(
            await consumerApp.consumer.invoke('echo', [text], { responseTimeout: 3000 }),
            `provider: ${text}`,
          );
        }

        // /routes: the consumer's sidecar routes to the provider sidecar's inbound port; the provider's to the app.
        const outRoutes = await adminRoutes(consumerPod);
        const out = outRoutes.find((c) => c.listener === 'outbound' && c.name === routeKey);
        assert.deepEqual(
          out?.endpoints.map((e) => e.address),
          [`127.0.0.1:${inbound.port}`],
        );
        const inRoutes = await adminRoutes(providerPod);
        const into = inRoutes.find((c) => c.listener === 'inbound' && c.name === routeKey);
        assert.deepEqual(
          into?.endpoints.map((e) => e.address),
          [`127.0.0.1:${provider.port}`],
        );

        // Kill the provider: its ephemeral node lives until ZooKeeper expires the session, and so does the route.
        provider.child.kill('SIGKILL');
        const killedAt = Date.now();
        await sleep(1000);
        assert.equal((await providers(direct, iface)).length, 1, 'the node is there until the session expires');
        assert.ok(consumerPod.book.table.outbound(routeKey), 'the route stays while the node is there');
        // The session expires, the ephemeral node goes with it: now, and only now, the list empties.
        await eventually(
          'the provider node to go',
          async () => ((await providers(direct, iface)).length === 0 ? true : undefined),
          30_000,
        );
        const goneAfterMs = Date.now() - killedAt;
        await eventually('the consumer sidecar to drop the route', async () =>
          consumerPod.book.table.outbound(routeKey) ? undefined : true,
        );
        assert.ok(goneAfterMs > 1000, `the node went ${goneAfterMs} ms after the kill, with the session`);
      });

      it('keeps calls flowing on last-known endpoints while ZooKeeper restarts, and the registration comes back', async () => {
        // The provider in a process of its own, as in a pod: it shares nothing with the consumer app, and can be
        // killed like a crash.
        const provider = await spawnProviderApp(protocol, iface, facadeAddress(providerPod), 'survivor');
        const consumerApp = await startConsumerApp(protocol, iface, facadeAddress(consumerPod));
        apps.push(consumerApp.registry, consumerApp.client);
        await eventually('the consumer to reach the provider', async () =>
          (await consumerApp.consumer.invoke('echo', ['ping'], { responseTimeout: 3000 }).catch(() => undefined)) ===
          'survivor: ping'
            ? true
            : undefined,
        );

        let calls = 0;
        let failures = 0;
        let firstError: string | undefined;
        let flowing = true;
        const load = (async () => {
          while (flowing) {
            calls++;
            try {
              assert.equal(
                await consumerApp.consumer.invoke('echo', [`n${calls}`], { responseTimeout: 3000 }),
                `survivor: n${calls}`,
              );
            } catch (err) {
              failures++;
              firstError ??= (err as Error).message;
            }
            await sleep(10);
          }
        })();
        await zk.restart();
        await sleep(1000);
        flowing = false;
        await load;
        assert.ok(calls > 20, `calls went on during the restart (${calls})`);
        assert.equal(
          failures,
          0,
          `${failures} of ${calls} calls failed while ZooKeeper restarted, first: ${firstError}`,
        );

        // A new client: the old one's session may have expired with the server's restart.
        direct.close();
        direct = await connect(zk.connectString);
        await eventually('the registration upstream after the restart', async () => {
          const upstream = (await providers(direct, iface)).map((u) => `${u.host}:${u.port}`);
          return upstream.includes(`127.0.0.1:${providerPod.address('inbound').port}`) ? true : undefined;
        });
        assert.equal(
          await consumerApp.consumer.invoke('echo', ['after'], { responseTimeout: 3000 }),
          'survivor: after',
        );
        provider.child.kill('SIGKILL');
      });
    });
  }
});
