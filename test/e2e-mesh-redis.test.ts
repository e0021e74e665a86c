// Registry takeover end to end over the two other app-facing protocols: the sofa-rpc mesh HTTP API (publishing
// through a real ZooKeeper) and Dubbo's Redis registry (a real redis-server), two sidecars as two pods, real SDK
// servers and clients on the data path.

import { strict as assert } from 'node:assert';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { getParam, parseProviderUrl, providerUrlText, type ProviderUrl } from '@meshport/registry-core';
import { RedisRegistry } from '@meshport/registry-redis';
import type { Sidecar } from '@meshport/sidecar';
import { client as sofaClient, server as sofaServer } from 'sofa-rpc-node';
import {
  eventually,
  type Protocol,
  protocolOption,
  quietLogger,
  type RunningRedis,
  type RunningZooKeeper,
  startRedis,
  startZooKeeper,
} from '@meshport/testkit';
import { adminRoutes, startSidecar, showSidecarLogIfFailed, stopSidecars } from './support/sidecars';

/** A sofa-rpc-node server with no registry of its own: the registry traffic is the test's (the app's SDK part). */
async function startServer(protocol: Protocol, iface: string, name: string) {
  const server = new sofaServer.RpcServer({ logger: quietLogger, port: 0, appName: name, ...protocolOption(protocol) });
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

/** A sofa-rpc-node client calling the one address the app was handed. */
function consumerOf(protocol: Protocol, iface: string, url: ProviderUrl) {
  const client = new sofaClient.RpcClient({ logger: quietLogger, ...protocolOption(protocol) });
  // The group of the provider it was handed, as a Dubbo consumer configured for it would send ('' for none; left
  // unset, sofa-rpc-node would send its default 'SOFA', another identity).
  const group = getParam(url, 'group') ?? '';
  const consumer = client.createConsumer({
    interfaceName: iface,
    version: '1.0',
    group,
    serverHost: `${url.host}:${url.port}`,
    retryFaultInterval: 200,
  });
  return { client, consumer };
}

/** What sofa-rpc's MeshApiClient does: POST, Content-Type text/plain, the request bean as JSON. */
async function meshPost(
  sidecar: Sidecar,
  path: string,
  bean: object,
): Promise<{ status: number; body: { success: boolean; datas?: string[]; errorMessage?: string } }> {
  const { host, port } = sidecar.address({ facade: 'mesh' });
  const res = await fetch(`http://${host}:${port}${path}`, {
    method: 'POST',
    headers: { 'Content-Type': 'text/plain' },
    body: JSON.stringify(bean),
  });
  return { status: res.status, body: (await res.json()) as { success: boolean; datas?: string[] } };
}

function meshPod(zk: RunningZooKeeper, appPort: number): string {
  return [
    'node: { ip: 127.0.0.1 }',
    'listeners: { outbound: "127.0.0.1:0", inbound: "127.0.0.1:0" }',
    'admin: "127.0.0.1:0"',
    'registries:',
    `  - { name: zk, type: zookeeper, upstream: "${zk.connectString}" }`,
    `  - { name: mesh, type: sofa-mesh, via: zk, facade: "127.0.0.1:0", app: "127.0.0.1:${appPort}" }`,
  ].join('\n');
}

describe('registry takeover end to end: the SOFA mesh HTTP API through two sidecars, ZooKeeper upstream', function () {
  afterEach(function () {
    showSidecarLogIfFailed(this.currentTest);
  });
  this.timeout(60_000);
  const iface = 'com.example.e2e.MeshEchoService';
  const serviceName = `${iface}:1.0`;
  let zk: RunningZooKeeper;
  const closers: (() => Promise<unknown>)[] = [];

  before(async () => {
    zk = await startZooKeeper();
  });
  after(async () => {
    for (const close of closers.reverse()) await close().catch(() => {});
    await stopSidecars();
    await zk?.stop();
  });

  it('publishes at the provider sidecar, hands the consumer its own outbound port, and calls go through both sidecars', async () => {
    const server = await startServer('bolt', iface, 'mesh-provider');
    closers.push(() => server.close());
    const providerPod = await startSidecar(meshPod(zk, server.publishPort));
    const consumerPod = await startSidecar(meshPod(zk, 1));

    assert.deepEqual(
      (await meshPost(providerPod, '/configs/application', { appName: 'mesh-provider' })).body.success,
      true,
    );
    const published = await meshPost(providerPod, '/services/publish', {
      serviceName,
      protocolType: 'bolt',
      providerMetaInfo: {
        protocol: 'bolt',
        version: '4.0',
        serializeType: 'hessian2',
        appName: 'mesh-provider',
        properties: { weight: '100' },
      },
      onlyPublishInCloud: false,
    });
    assert.deepEqual([published.status, published.body.success], [200, true]);

    const subscribe = {
      serviceName,
      protocolType: 'bolt',
      vipEnforce: false,
      vipOnly: false,
      localCloudFirst: false,
      properties: {},
    };
    const answer = await eventually('a subscribe answer with a provider', async () => {
      const reply = await meshPost(consumerPod, '/services/subscribe', subscribe);
      assert.equal(reply.body.success, true);
      return reply.body.datas && reply.body.datas.length > 0 ? reply.body.datas : undefined;
    });
    // The app sees one provider: its own sidecar's outbound listener, with the parameters the provider published.
    const handed = parseProviderUrl(answer[0]!);
    assert.deepEqual(answer.length, 1);
    assert.deepEqual([handed.host, handed.port], ['127.0.0.1', consumerPod.address('outbound').port]);
    assert.ok(
      handed.params.some((p) => p.name === 'app_name' && p.value === 'mesh-provider'),
      providerUrlText(handed),
    );

    // The consumer's sidecar routes the service to the provider sidecar's inbound port.
    const routes = await adminRoutes(consumerPod);
    assert.deepEqual(
      routes.find((c) => c.listener === 'outbound' && c.name.startsWith(iface))?.endpoints.map((e) => e.address),
      [`127.0.0.1:${providerPod.address('inbound').port}`],
    );
    // (The Java SDK dials port 12220 of the API host whatever `datas` says; the test sidecars use free ports instead.)
    const { client, consumer } = consumerOf('bolt', iface, handed);
    closers.push(() => client.close());
    await consumer.ready();
    assert.equal(await consumer.invoke('echo', ['over mesh'], { responseTimeout: 3000 }), 'mesh-provider: over mesh');

    // Unpublish is an explicit deletion: the consumer's route goes, and its next subscribe answer is empty.
    assert.equal(
      (await meshPost(providerPod, '/services/unpublish', { serviceName, protocolType: 'bolt' })).body.success,
      true,
    );
    await eventually('the consumer sidecar to drop the route', async () =>
      consumerPod.book.table.outbound(serviceName) ? undefined : true,
    );
    assert.deepEqual((await meshPost(consumerPod, '/services/subscribe', subscribe)).body.datas, []);
  });
});

function redisPod(redis: RunningRedis): string {
  return [
    'node: { ip: 127.0.0.1 }',
    'listeners: { outbound: "127.0.0.1:0", inbound: "127.0.0.1:0" }',
    'admin: "127.0.0.1:0"',
    'registries:',
    `  - { name: main, type: redis, upstream: "127.0.0.1:${redis.port}", facade: "127.0.0.1:0" }`,
  ].join('\n');
}

describe('registry takeover end to end: Dubbo Redis registry clients through two sidecars, real redis-server', function () {
  afterEach(function () {
    showSidecarLogIfFailed(this.currentTest);
  });
  this.timeout(60_000);
  const iface = 'com.example.e2e.RedisEchoService';
  const service = `${iface}:1.0`;
  let redis: RunningRedis;
  let providerPod: Sidecar;
  let consumerPod: Sidecar;
  const closers: (() => Promise<unknown>)[] = [];

  before(async () => {
    redis = await startRedis();
    providerPod = await startSidecar(redisPod(redis));
    consumerPod = await startSidecar(redisPod(redis));
  });
  after(async () => {
    for (const close of closers.reverse()) await close().catch(() => {});
    await stopSidecars();
    await redis?.stop();
  });

  /** The app side of Dubbo's Redis registry, pointed at its pod's facade. */
  function appRegistry(pod: Sidecar): RedisRegistry {
    const { host, port } = pod.address({ facade: 'main' });
    const registry = new RedisRegistry({ url: `redis://${host}:${port}`, renewMs: 500, expiryMs: 5000 });
    closers.push(() => registry.close());
    return registry;
  }

  it('publishes, subscribes and calls through both sidecars, survives a Redis restart, and empties only on unpublish', async () => {
    const server = await startServer('dubbo', iface, 'redis-provider');
    closers.push(() => server.close());
    const appUrl = `dubbo://127.0.0.1:${server.publishPort}/${iface}?anyhost=true&application=redis-provider&interface=${iface}&methods=echo&side=provider&version=1.0`;
    const providerApp = appRegistry(providerPod);
    await providerApp.publish(service, appUrl);

    const lists: ProviderUrl[][] = [];
    const consumerApp = appRegistry(consumerPod);
    await consumerApp.subscribe(service, (urls) => lists.push(urls));
    const handed = await eventually('the consumer app to see a provider', async () => lists.at(-1)?.[0]);
    assert.deepEqual(lists.at(-1)!.length, 1);
    assert.deepEqual([handed.host, handed.port], ['127.0.0.1', consumerPod.address('outbound').port]);
    assert.equal(handed.path, `/${iface}`);
    assert.deepEqual(
      (await adminRoutes(consumerPod))
        .find((c) => c.listener === 'outbound' && c.name.startsWith(iface))
        ?.endpoints.map((e) => e.address),
      [`127.0.0.1:${providerPod.address('inbound').port}`],
    );

    const { client, consumer } = consumerOf('dubbo', iface, handed);
    closers.push(() => client.close());
    await consumer.ready();
    assert.equal(
      await consumer.invoke('echo', ['over redis'], { responseTimeout: 3000 }),
      'redis-provider: over redis',
    );

    // Redis restarts under load: calls keep flowing on last-known endpoints; the app never sees an empty list.
    let calls = 0;
    let failures = 0;
    let flowing = true;
    const load = (async () => {
      while (flowing) {
        calls++;
        await consumer.invoke('echo', [`n${calls}`], { responseTimeout: 3000 }).catch(() => failures++);
        await sleep(10);
      }
    })();
    await redis.restart();
    await sleep(1500);
    flowing = false;
    await load;
    assert.equal(failures, 0, `${failures} of ${calls} calls failed while Redis restarted`);
    assert.ok(
      lists.every((l) => l.length > 0),
      'no empty provider list reached the app',
    );
    // The provider app's registration is back in the restarted Redis, at the provider sidecar's inbound address.
    await eventually('the registration after the restart', async () => {
      const fields = (await redisFields(redis, `/dubbo/${iface}/providers`)).map(parseProviderUrl);
      return fields.some((u) => u.port === providerPod.address('inbound').port) ? true : undefined;
    });

    // An explicit unpublish empties the list, and only then.
    await providerApp.unpublish(service, appUrl);
    await eventually('the consumer app to see no provider', async () =>
      lists.at(-1)?.length === 0 ? true : undefined,
    );
    await eventually('the consumer sidecar to drop the route', async () =>
      consumerPod.book.table.outbound(service) ? undefined : true,
    );
  });
});

/** The fields of a hash as they stand in the real Redis (read with a client of its own, not through a facade). */
async function redisFields(redis: RunningRedis, key: string): Promise<string[]> {
  const client = new Redis({ host: '127.0.0.1', port: redis.port, lazyConnect: true });
  try {
    await client.connect();
    return Object.keys(await client.hgetall(key));
  } finally {
    client.disconnect();
  }
}
