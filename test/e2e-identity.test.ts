// Service identity end to end: providers of one interface that differ only in version, uniqueId (SOFA) or group
// (Dubbo), each answering with its own identity and also serving the others' names unpublished, so a misrouted call
// shows as a wrong answer. Real sofa-rpc-node apps through two pods' ZooKeeper facades and a real ZooKeeper.

import { strict as assert } from 'node:assert';
import { getParam, parseProviderUrl, sofaServiceKeyOf, type ProviderUrl } from '@meshport/registry-core';
import { RedisRegistry } from '@meshport/registry-redis';
import type { Sidecar } from '@meshport/sidecar';
import { client as sofaClient, registry as sofaRegistry, server as sofaServer } from 'sofa-rpc-node';
import {
  closeApps,
  CONSUMER_READY_MS,
  eventually,
  ownCluster,
  type Protocol,
  protocolOption,
  quietLogger,
  type RunningZooKeeper,
  startRedis,
  startZooKeeper,
  withTimeout,
} from '@meshport/testkit';
import { podConfig, showSidecarLogIfFailed, startSidecar, stopSidecars } from './support/sidecars';

const facadeAddress = (sidecar: Sidecar) => {
  const { host, port } = sidecar.address({ facade: 'main' });
  return `${host}:${port}`;
};

/** What a provider or a consumer selects by: version, and SOFA's uniqueId or Dubbo's group. */
interface Identity {
  version: string;
  uniqueId?: string;
  group?: string;
}

const label = (protocol: Protocol, id: Identity) =>
  `${protocol} ${id.version}${id.uniqueId ? `:${id.uniqueId}` : ''}${id.group ? `@${id.group}` : ''}`;

/** sofa-rpc-node's RpcService defaults the group to 'SOFA'; a Dubbo identity here always names one. */
const sdkGroup = (id: Identity) => id.group ?? 'SOFA';

type App = { close(): Promise<unknown> };

/**
 * A provider app of `iface` at `id`, publishing through `registryAddress`, whose every method answers its label.
 * After publishing it also serves the other identities' service names (sofa-rpc-node dispatches by
 * `interface:version[:uniqueId]`), unpublished: a call routed here by mistake gets this label, not an error.
 */
async function startIdentityProvider(
  protocol: Protocol,
  iface: string,
  id: Identity,
  others: Identity[],
  pod: Sidecar,
) {
  const registryAddress = facadeAddress(pod);
  const registry = new sofaRegistry.ZookeeperRegistry({
    logger: quietLogger,
    address: registryAddress,
    cluster: ownCluster(),
  });
  const server = new sofaServer.RpcServer({
    logger: quietLogger,
    port: 0,
    appName: 'identity',
    registry,
    publishAddress: '127.0.0.1',
    ...protocolOption(protocol),
  });
  const me = label(protocol, id);
  const impl = {
    async whoami() {
      return me;
    },
  };
  // sofa-rpc-node leaves uniqueId out of the URL it publishes; customMeta puts it there, as Java sofa-rpc writes it.
  const info = (i: Identity) => ({
    interfaceName: iface,
    version: i.version,
    uniqueId: i.uniqueId,
    group: sdkGroup(i),
    customMeta: (i.uniqueId ? { uniqueId: i.uniqueId } : {}) as Record<string, string>,
  });
  server.addService(info(id), impl);
  await server.start();
  // publish() registers, then waits through a subscription to read its own URL back, which with a uniqueId in
  // customMeta never happens (the base URL holds `uniqueId=`), and the subscription it leaves armed retries for ever
  // once the facade is gone. So the service is registered directly, and the provider pod's inbound route awaited.
  const services = (
    server as unknown as {
      _services: Map<string, { normalizeReg(url: string): { interfaceName: string; url: string } }>;
    }
  )._services;
  for (const service of services.values()) await registry.register(service.normalizeReg(server.url));
  const key =
    protocol === 'bolt'
      ? `${iface}:${id.version}${id.uniqueId ? `:${id.uniqueId}` : ''}`
      : `${sdkGroup(id)}/${iface}:${id.version}`;
  await eventually(
    `${me}'s inbound route on its pod`,
    async () => (pod.book.table.inbound(key) ? true : undefined),
    CONSUMER_READY_MS,
  );
  for (const other of others) server.addService(info(other), impl);
  return { server, registry, label: me };
}

/** A consumer app that finds its providers through `registryAddress` (one registry each: sofa-rpc-node keys its
 * subscriptions by interface alone, so a second consumer of another version would get the first one's filter). */
async function startIdentityConsumer(protocol: Protocol, iface: string, id: Identity, registryAddress: string) {
  const registry = new sofaRegistry.ZookeeperRegistry({
    logger: quietLogger,
    address: registryAddress,
    cluster: ownCluster(),
  });
  const client = new sofaClient.RpcClient({ logger: quietLogger, registry, ...protocolOption(protocol) });
  const consumer = client.createConsumer({
    interfaceName: iface,
    version: id.version,
    group: sdkGroup(id),
    retryFaultInterval: 200,
  });
  await withTimeout(consumer.ready(), CONSUMER_READY_MS, `the ${label(protocol, id)} consumer's first provider list`);
  return { client, registry, consumer };
}

/**
 * A consumer that dials `address` directly, for what sofa-rpc-node cannot express through a registry: its consumer
 * has no uniqueId, so `version: '1.0:blue'` makes it send the service header `interface:1.0:blue` as Java does.
 */
function directConsumer(protocol: Protocol, iface: string, serviceVersion: string, group: string, address: string) {
  const client = new sofaClient.RpcClient({ logger: quietLogger, ...protocolOption(protocol) });
  const consumer = client.createConsumer({
    interfaceName: iface,
    version: serviceVersion,
    group,
    serverHost: address,
    retryFaultInterval: 200,
  });
  return { client, consumer };
}

/** Calls `whoami` n times; counts answers by what they were. */
async function tally(
  consumer: { invoke(method: string, args: unknown[], options?: object): Promise<unknown> },
  n: number,
) {
  const answers = new Map<string, number>();
  for (let i = 0; i < n; i++) {
    let answer: string;
    try {
      answer = String(await consumer.invoke('whoami', [], { responseTimeout: 3000 }));
    } catch (error) {
      answer = `error: ${(error as Error).message.split('\n')[0]}`;
    }
    answers.set(answer, (answers.get(answer) ?? 0) + 1);
  }
  return Object.fromEntries(answers);
}

const CALLS = 40;

describe('service identity end to end over ZooKeeper: every call reaches the identity it asked for', function () {
  this.timeout(120_000);
  afterEach(function () {
    showSidecarLogIfFailed(this.currentTest);
  });
  let zk: RunningZooKeeper;
  let providerPod: Sidecar;
  let consumerPod: Sidecar;
  const apps: App[] = [];

  before(async () => {
    zk = await startZooKeeper();
    // No start-up hold: a call for an identity nobody provides is to be refused at once.
    const config = `${podConfig({ type: 'zookeeper', upstream: zk.connectString })}\nrouter: { startupHoldMs: 0 }`;
    providerPod = await startSidecar(config);
    consumerPod = await startSidecar(config);
  });

  after(async () => {
    await closeApps(apps.reverse());
    await stopSidecars();
    await zk?.stop();
  });

  const matrix: { protocol: Protocol; iface: string; identities: Identity[]; absent: Identity }[] = [
    {
      protocol: 'bolt',
      iface: 'com.example.identity.BoltIdentity',
      identities: [{ version: '1.0' }, { version: '1.0', uniqueId: 'blue' }, { version: '2.0' }],
      absent: { version: '3.0' },
    },
    {
      protocol: 'dubbo',
      iface: 'com.example.identity.DubboIdentity',
      identities: [
        { version: '1.0', group: 'g1' },
        { version: '1.0', group: 'g2' },
        { version: '2.0', group: 'g1' },
      ],
      absent: { version: '2.0', group: 'g2' },
    },
  ];

  for (const { protocol, iface, identities, absent } of matrix) {
    it(`${protocol}: ${identities.map((i) => label(protocol, i)).join(', ')}: 0 misrouted, 0 "no provider"`, async () => {
      for (const id of identities) {
        const provider = await startIdentityProvider(
          protocol,
          iface,
          id,
          identities.filter((o) => o !== id),
          providerPod,
        );
        apps.push(provider.registry, provider.server);
      }
      // The facade shows the consumer one URL per identity, each at its own pod's outbound port.
      const outbound = consumerPod.address('outbound');
      const results: Record<string, Record<string, number>> = {};
      for (const id of identities) {
        let consumer;
        if (id.uniqueId) {
          const direct = directConsumer(
            protocol,
            iface,
            `${id.version}:${id.uniqueId}`,
            sdkGroup(id),
            `127.0.0.1:${outbound.port}`,
          );
          apps.push(direct.client);
          consumer = direct.consumer;
        } else {
          const app = await startIdentityConsumer(protocol, iface, id, facadeAddress(consumerPod));
          apps.push(app.registry, app.client);
          consumer = app.consumer;
        }
        results[label(protocol, id)] = await tally(consumer, CALLS);
      }
      const expected = Object.fromEntries(
        identities.map((id) => [label(protocol, id), { [label(protocol, id)]: CALLS }]),
      );
      assert.deepEqual(results, expected, 'every consumer answered only by its own identity');

      // An identity nobody provides: the sidecar answers "no provider" at once, never another identity's provider.
      const direct = directConsumer(protocol, iface, absent.version, sdkGroup(absent), `127.0.0.1:${outbound.port}`);
      apps.push(direct.client);
      const started = Date.now();
      const answers = Object.keys(await tally(direct.consumer, 5));
      assert.equal(answers.length, 1, `one answer: ${answers.join(' | ')}`);
      assert.match(answers[0]!, /^error: .*no route for service/);
      assert.ok(Date.now() - started < 2000, 'refused at once');

      // /routes lists each identity as a route of its own on both pods.
      const routes = consumerPod.book.snapshot();
      for (const id of identities) {
        const key =
          protocol === 'bolt'
            ? `${iface}:${id.version}${id.uniqueId ? `:${id.uniqueId}` : ''}`
            : `${sdkGroup(id)}/${iface}:${id.version}`;
        assert.equal(routes.outbound[key]?.endpoints.length, 1, `consumer pod routes ${key}`);
        assert.ok(providerPod.book.snapshot().inbound[key], `provider pod routes ${key} inbound`);
      }
    });
  }

  it('an identity appears and goes while calls run: no wrong answer at any moment', async () => {
    const protocol: Protocol = 'dubbo';
    const iface = 'com.example.identity.Churn';
    const stable: Identity = { version: '1.0', group: 'g1' };
    const churn: Identity = { version: '1.0', group: 'g2' };
    const base = await startIdentityProvider(protocol, iface, stable, [], providerPod);
    apps.push(base.registry, base.server);
    const consumer = await startIdentityConsumer(protocol, iface, stable, facadeAddress(consumerPod));
    apps.push(consumer.registry, consumer.client);

    let running = true;
    const wrong: string[] = [];
    let calls = 0;
    const loop = (async () => {
      while (running) {
        const answer = await consumer.consumer
          .invoke('whoami', [], { responseTimeout: 3000 })
          .catch((e: Error) => `error: ${e.message}`);
        calls++;
        if (answer !== base.label) wrong.push(String(answer));
      }
    })();
    for (let round = 0; round < 3; round++) {
      const extra = await startIdentityProvider(protocol, iface, churn, [stable], providerPod);
      const churnKey = `g2/${iface}:1.0`;
      await eventually('the g2 route on the consumer pod', async () =>
        consumerPod.book.table.outbound(churnKey) ? true : undefined,
      );
      await extra.server.close();
      await extra.registry.close();
      await eventually(
        'the g2 route to go',
        async () => (consumerPod.book.table.outbound(churnKey) ? undefined : true),
        30_000,
      );
    }
    running = false;
    await loop;
    assert.ok(calls > 50, `calls ran throughout (${calls})`);
    assert.deepEqual(wrong, [], 'no call answered by another identity, none failed');
  });
});

/** A sofa-rpc-node server with no registry (the test does the registry traffic), answering `label` for every name. */
async function startLabelServer(protocol: Protocol, iface: string, names: Identity[], me: string) {
  const server = new sofaServer.RpcServer({
    logger: quietLogger,
    port: 0,
    appName: 'identity',
    ...protocolOption(protocol),
  });
  for (const i of names) {
    server.addService(
      { interfaceName: iface, version: i.version, uniqueId: i.uniqueId, group: sdkGroup(i) },
      {
        async whoami() {
          return me;
        },
      },
    );
  }
  await server.start();
  return server;
}

/** What a Dubbo consumer's own filter keeps of a provider list: the URLs of its version and group. */
function ofIdentity(urls: ProviderUrl[], id: Identity): ProviderUrl[] {
  return urls.filter((u) => getParam(u, 'version') === id.version && (getParam(u, 'group') || undefined) === id.group);
}

describe('service identity end to end over Redis (Dubbo layout) and the SOFA mesh API', function () {
  this.timeout(120_000);
  afterEach(function () {
    showSidecarLogIfFailed(this.currentTest);
  });
  const closers: (() => Promise<unknown>)[] = [];
  after(async () => {
    for (const close of closers.reverse()) await close().catch(() => {});
    await stopSidecars();
  });

  it('redis: Dubbo 1.0@g1, 1.0@g2, 2.0@g1 from one provider pod: each consumer answered only by its own identity', async () => {
    const redis = await startRedis();
    closers.push(() => redis.stop());
    const pod = (name: string) =>
      [
        'node: { ip: 127.0.0.1 }',
        'listeners: { outbound: "127.0.0.1:0", inbound: "127.0.0.1:0" }',
        'admin: "127.0.0.1:0"',
        'router: { startupHoldMs: 0 }',
        'registries:',
        `  - { name: ${name}, type: redis, upstream: "127.0.0.1:${redis.port}", facade: "127.0.0.1:0" }`,
      ].join('\n');
    const providerPod = await startSidecar(pod('main'));
    const consumerPod = await startSidecar(pod('main'));
    const appRegistry = (sidecar: Sidecar) => {
      const { host, port } = sidecar.address({ facade: 'main' });
      const registry = new RedisRegistry({ url: `redis://${host}:${port}`, renewMs: 500, expiryMs: 5000 });
      closers.push(() => registry.close());
      return registry;
    };
    const iface = 'com.example.identity.RedisIdentity';
    const identities: Identity[] = [
      { version: '1.0', group: 'g1' },
      { version: '1.0', group: 'g2' },
      { version: '2.0', group: 'g1' },
    ];
    const providerApp = appRegistry(providerPod);
    for (const id of identities) {
      const server = await startLabelServer('dubbo', iface, identities, label('dubbo', id));
      closers.push(() => server.close());
      const url = `dubbo://127.0.0.1:${server.publishPort}/${iface}?anyhost=true&application=p&group=${id.group}&interface=${iface}&methods=whoami&side=provider&version=${id.version}`;
      await providerApp.publish(`${id.group}/${iface}:${id.version}`, url);
    }
    const lists: ProviderUrl[][] = [];
    await appRegistry(consumerPod).subscribe(iface, (urls) => lists.push(urls));
    const handed = await eventually('one URL per identity', async () =>
      lists.at(-1)?.length === identities.length ? lists.at(-1) : undefined,
    );
    const outbound = consumerPod.address('outbound').port;
    assert.ok(
      handed.every((u) => u.host === '127.0.0.1' && u.port === outbound),
      'every URL at the consumer pod outbound port',
    );

    const results: Record<string, Record<string, number>> = {};
    for (const id of identities) {
      const [url] = ofIdentity(handed, id);
      assert.ok(url, `the app is shown a provider of ${label('dubbo', id)}`);
      const direct = directConsumer('dubbo', iface, id.version, id.group!, `${url.host}:${url.port}`);
      closers.push(() => direct.client.close());
      results[label('dubbo', id)] = await tally(direct.consumer, CALLS);
    }
    assert.deepEqual(
      results,
      Object.fromEntries(identities.map((id) => [label('dubbo', id), { [label('dubbo', id)]: CALLS }])),
    );
  });

  it('mesh API: SOFA 1.0, 1.0:blue, 2.0 in three provider pods: each subscribe sees its identity, each call reaches it', async () => {
    const zk = await startZooKeeper();
    closers.push(() => zk.stop());
    const meshPod = (appPort: number) =>
      [
        'node: { ip: 127.0.0.1 }',
        'listeners: { outbound: "127.0.0.1:0", inbound: "127.0.0.1:0" }',
        'admin: "127.0.0.1:0"',
        'router: { startupHoldMs: 0 }',
        'registries:',
        `  - { name: zk, type: zookeeper, upstream: "${zk.connectString}" }`,
        `  - { name: mesh, type: sofa-mesh, via: zk, facade: "127.0.0.1:0", app: "127.0.0.1:${appPort}" }`,
      ].join('\n');
    const post = async (sidecar: Sidecar, path: string, bean: object) => {
      const { host, port } = sidecar.address({ facade: 'mesh' });
      const res = await fetch(`http://${host}:${port}${path}`, {
        method: 'POST',
        headers: { 'Content-Type': 'text/plain' },
        body: JSON.stringify(bean),
      });
      return (await res.json()) as { success: boolean; datas?: string[] };
    };
    const iface = 'com.example.identity.MeshIdentity';
    const identities: Identity[] = [{ version: '1.0' }, { version: '1.0', uniqueId: 'blue' }, { version: '2.0' }];
    const serviceName = (id: Identity) => `${iface}:${id.version}${id.uniqueId ? `:${id.uniqueId}` : ''}`;
    for (const id of identities) {
      const server = await startLabelServer('bolt', iface, identities, label('bolt', id));
      closers.push(() => server.close());
      const providerPod = await startSidecar(meshPod(server.publishPort));
      const published = await post(providerPod, '/services/publish', {
        serviceName: serviceName(id),
        protocolType: 'bolt',
        providerMetaInfo: {
          protocol: 'bolt',
          version: '4.0',
          serializeType: 'hessian2',
          appName: 'identity',
          properties: {},
        },
      });
      assert.equal(published.success, true);
    }
    const consumerPod = await startSidecar(meshPod(1));
    const results: Record<string, Record<string, number>> = {};
    for (const id of identities) {
      const subscribe = {
        serviceName: serviceName(id),
        protocolType: 'bolt',
        vipEnforce: false,
        vipOnly: false,
        localCloudFirst: false,
        properties: {},
      };
      const datas = await eventually(`a provider of ${serviceName(id)}`, async () => {
        const reply = await post(consumerPod, '/services/subscribe', subscribe);
        return reply.datas && reply.datas.length > 0 ? reply.datas : undefined;
      });
      const urls = datas.map(parseProviderUrl);
      assert.deepEqual(urls.map(sofaServiceKeyOf), [serviceName(id)], 'the subscribe answer holds that identity only');
      const direct = directConsumer(
        'bolt',
        iface,
        `${id.version}${id.uniqueId ? `:${id.uniqueId}` : ''}`,
        'SOFA',
        `${urls[0]!.host}:${urls[0]!.port}`,
      );
      closers.push(() => direct.client.close());
      results[label('bolt', id)] = await tally(direct.consumer, CALLS);
    }
    assert.deepEqual(
      results,
      Object.fromEntries(identities.map((id) => [label('bolt', id), { [label('bolt', id)]: CALLS }])),
    );
  });
});
