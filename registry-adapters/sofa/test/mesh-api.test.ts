// The SOFA mesh HTTP API facade, driven with requests shaped as sofa-rpc's MeshApiClient sends them.

import { strict as assert } from 'node:assert';
import { request, type IncomingHttpHeaders } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  MemoryRegistry,
  MemoryRegistryStore,
  RegistryError,
  RecordingTakeover,
  formatProviderUrl,
  type HostPort,
} from '@meshport/registry-core';
import {
  SOFA_DEFAULT_SERVER_PORT,
  SOFA_MESH_API_DEFAULTS,
  SOFA_MESH_API_PATHS,
  SOFA_MESH_API_PORT,
  SOFA_MESH_TCP_PORT,
  SofaMeshApiFacade,
  type SofaMeshApiOptions,
} from '../src/index';

const INBOUND: HostPort = { host: '10.0.0.7', port: 12201 };
const OUTBOUND: HostPort = { host: '127.0.0.1', port: SOFA_MESH_TCP_PORT };

interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  body: Record<string, unknown>;
}

/** Headers java.net.HttpURLConnection sends for MeshApiClient.httpPost (Content-Type set by the client). */
const JAVA_HEADERS = {
  'Content-Type': 'text/plain',
  'User-Agent': 'Java/1.8.0_372',
  Accept: 'text/html, image/gif, image/jpeg, *; q=.2, */*; q=.2',
};

function send(
  to: HostPort,
  method: string,
  urlPath: string,
  payload: string | undefined,
  headers: Record<string, string> = JAVA_HEADERS,
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request({ host: to.host, port: to.port, method, path: urlPath, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        try {
          resolve({ status: res.statusCode!, headers: res.headers, body: JSON.parse(text) as Record<string, unknown> });
        } catch (error) {
          reject(new Error(`answer is not JSON: ${text}`, { cause: error }));
        }
      });
    });
    req.on('error', reject);
    req.end(payload);
  });
}

/** What MeshApiClient.httpPost does: POST, text/plain, the bean serialized as JSON in UTF-8. */
function meshPost(to: HostPort, urlPath: string, bean: object): Promise<Reply> {
  return send(to, 'POST', urlPath, JSON.stringify(bean));
}

/** Lets the memory registry's queued change notifications run. */
function settle(): Promise<void> {
  return sleep(20);
}

const HELLO = 'com.example.HelloService:1.0';
const ECHO = 'com.example.EchoService:1.0';

/** PublishServiceRequest as MeshRegistry.buildPublishServiceRequest fills it (older SDKs: no `port`). */
function publishRequest(serviceName: string, extra: object = {}): object {
  return {
    serviceName,
    protocolType: 'bolt',
    providerMetaInfo: {
      protocol: 'bolt',
      version: '4.0',
      serializeType: 'hessian2',
      appName: 'demo-app',
      properties: { weight: '100', timeout: '3000' },
    },
    onlyPublishInCloud: false,
    ...extra,
  };
}

/** SubscribeServiceRequest as MeshRegistry.buildSubscribeServiceRequest fills it. */
function subscribeRequest(serviceName: string): object {
  return {
    serviceName,
    protocolType: 'bolt',
    vipEnforce: false,
    vipOnly: false,
    localCloudFirst: false,
    properties: { 'sofa.group': 'SOFA' },
  };
}

describe('SofaMeshApiFacade', () => {
  let store: MemoryRegistryStore;
  let via: MemoryRegistry;
  let peer: MemoryRegistry;
  let takeover: RecordingTakeover;
  let facade: SofaMeshApiFacade;
  let api: HostPort;

  async function startFacade(options: Partial<SofaMeshApiOptions> = {}): Promise<void> {
    facade = new SofaMeshApiFacade({
      via,
      takeover,
      listen: { host: '127.0.0.1', port: 0 },
      logger: { warn: () => {} },
      ...options,
    });
    await facade.start();
    api = facade.address();
  }

  beforeEach(async () => {
    store = new MemoryRegistryStore();
    via = new MemoryRegistry(store);
    peer = new MemoryRegistry(store);
    takeover = new RecordingTakeover(INBOUND, OUTBOUND);
    await startFacade();
  });

  afterEach(async () => {
    await facade.close();
    await via.close();
    await peer.close();
  });

  it('has the SDK ports as defaults and binds loopback unless configured', () => {
    assert.equal(SOFA_MESH_TCP_PORT, 12220);
    assert.equal(SOFA_MESH_API_PORT, 13330);
    assert.deepEqual(SOFA_MESH_API_DEFAULTS.listen, { host: '127.0.0.1', port: 13330 });
    assert.deepEqual(SOFA_MESH_API_DEFAULTS.app, { host: '127.0.0.1', port: SOFA_DEFAULT_SERVER_PORT });
    assert.equal(SOFA_DEFAULT_SERVER_PORT, 12200);
    assert.equal(api.host, '127.0.0.1');
  });

  it('address() throws before start() and after close()', async () => {
    const idle = new SofaMeshApiFacade({ via, takeover });
    assert.throws(
      () => idle.address(),
      (e: unknown) => e instanceof RegistryError && e.code === 'MESHPORT_REGISTRY_FACADE_NOT_SERVING',
    );
    await idle.close();
    await idle.close();
    await facade.close();
    assert.throws(
      () => facade.address(),
      (e: unknown) => e instanceof RegistryError && e.code === 'MESHPORT_REGISTRY_FACADE_NOT_SERVING',
    );
    await assert.rejects(
      facade.start(),
      (e: unknown) => e instanceof RegistryError && e.code === 'MESHPORT_REGISTRY_FACADE_NOT_SERVING',
    );
  });

  it('/configs/application records the appName and answers success', async () => {
    // ApplicationInfoRequest.toJson(): a flat map holding appName and any extra parameters.
    const reply = await meshPost(api, SOFA_MESH_API_PATHS.application, { appName: 'demo-app', zone: 'GZ00A' });
    assert.equal(reply.status, 200);
    assert.equal(reply.body.success, true);
    assert.match(String(reply.headers['content-type']), /^application\/json/);
    assert.equal(facade.applicationName, 'demo-app');
  });

  it('/services/publish puts the app at the inbound address in the registry, every parameter kept', async () => {
    const reply = await meshPost(api, SOFA_MESH_API_PATHS.publish, publishRequest(HELLO));
    assert.deepEqual(reply, { status: 200, headers: reply.headers, body: { success: true } });
    const params =
      'interface=com.example.HelloService&version=1.0&protocol=bolt&p=1&v=4.0&serialization=hessian2&_SERIALIZETYPE=hessian2' +
      '&appName=demo-app&app_name=demo-app&weight=100&timeout=3000';
    assert.deepEqual(takeover.published, [`127.0.0.1:12200?${params}`]);
    assert.deepEqual(store.list(HELLO), [`10.0.0.7:12201?${params}`]);
  });

  it('/services/publish takes the app port from the request when a newer SDK sends one, and keeps a uniqueId', async () => {
    const reply = await meshPost(api, SOFA_MESH_API_PATHS.publish, publishRequest(`${HELLO}:blue`, { port: '12345' }));
    assert.equal(reply.body.success, true);
    assert.equal(takeover.published.length, 1);
    assert.match(
      takeover.published[0]!,
      /^127\.0\.0\.1:12345\?interface=com\.example\.HelloService&version=1\.0&uniqueId=blue&/,
    );
    assert.equal(store.list(`${HELLO}:blue`).length, 1);
    assert.match(store.list(`${HELLO}:blue`)[0]!, /^10\.0\.0\.7:12201\?/);
  });

  it('/services/publish uses the configured app address and the registered appName when the request has none', async () => {
    await facade.close();
    await startFacade({ app: { host: '10.0.0.7', port: 12300 } });
    await meshPost(api, SOFA_MESH_API_PATHS.application, { appName: 'from-config' });
    await meshPost(api, SOFA_MESH_API_PATHS.publish, {
      serviceName: HELLO,
      protocolType: 'bolt',
      providerMetaInfo: { protocol: 'bolt', properties: { a: 'x&y' } },
    });
    assert.deepEqual(takeover.published, [
      '10.0.0.7:12300?interface=com.example.HelloService&version=1.0&protocol=bolt&p=1&appName=from-config&app_name=from-config&a=x%26y',
    ]);
  });

  it('/services/unpublish withdraws what was published', async () => {
    await meshPost(api, SOFA_MESH_API_PATHS.publish, publishRequest(HELLO));
    assert.equal(store.list(HELLO).length, 1);
    // UnPublishServiceRequest: serviceName, protocolType (+ properties or group, depending on the SDK version).
    const reply = await meshPost(api, SOFA_MESH_API_PATHS.unpublish, { serviceName: HELLO, protocolType: 'bolt' });
    assert.equal(reply.status, 200);
    assert.equal(reply.body.success, true);
    assert.deepEqual(store.list(HELLO), []);
    assert.deepEqual(takeover.withdrawn, takeover.published);
    // Unpublishing again is harmless.
    assert.equal((await meshPost(api, SOFA_MESH_API_PATHS.unpublish, { serviceName: HELLO })).body.success, true);
  });

  it('a republish with other parameters replaces the provider upstream', async () => {
    await meshPost(api, SOFA_MESH_API_PATHS.publish, publishRequest(HELLO));
    await meshPost(api, SOFA_MESH_API_PATHS.publish, publishRequest(HELLO, { port: '12400' }));
    assert.equal(store.list(HELLO).length, 1);
    assert.deepEqual(takeover.withdrawn, [takeover.published[0]]);
    // Other parameters: another provider URL upstream, and the old one withdrawn after the new one is up.
    const seen: string[][] = [];
    const stop = await peer.subscribe(HELLO, (urls) => seen.push(urls.map(formatProviderUrl)));
    const before = store.list(HELLO)[0]!;
    const bean = publishRequest(HELLO) as { providerMetaInfo: { properties: Record<string, string> } };
    bean.providerMetaInfo.properties.weight = '50';
    await meshPost(api, SOFA_MESH_API_PATHS.publish, bean);
    await settle();
    stop();
    assert.equal(store.list(HELLO).length, 1);
    assert.notEqual(store.list(HELLO)[0], before);
    assert.match(store.list(HELLO)[0]!, /&weight=50&/);
    assert.ok(
      seen.every((list) => list.length > 0),
      'the provider list never empties during a republish',
    );
    await meshPost(api, SOFA_MESH_API_PATHS.unpublish, { serviceName: HELLO });
    assert.deepEqual(store.list(HELLO), []);
  });

  it('/services/publish answers failure when the registry refuses, and forgets the route', async () => {
    await via.close();
    const reply = await meshPost(api, SOFA_MESH_API_PATHS.publish, publishRequest(HELLO));
    assert.equal(reply.status, 200);
    assert.equal(reply.body.success, false);
    assert.match(
      String(reply.body.errorMessage),
      /publish of com\.example\.HelloService:1\.0 failed: memory registry adapter is closed/,
    );
    assert.deepEqual(takeover.withdrawn, takeover.published);
  });

  it('/services/subscribe answers the outbound address while the takeover sees the real list, and follows changes', async () => {
    const real1 =
      '10.0.0.9:12200?_SERIALIZETYPE=hessian2&v=4.0&p=1&app_name=echo&interface=com.example.EchoService&version=1.0';
    const real2 =
      '10.0.0.10:12200?_SERIALIZETYPE=hessian2&v=4.0&p=1&app_name=echo&interface=com.example.EchoService&version=1.0';
    await peer.publish(ECHO, real1);

    const reply = await meshPost(api, SOFA_MESH_API_PATHS.subscribe, subscribeRequest(ECHO));
    assert.equal(reply.status, 200);
    assert.deepEqual(reply.body, {
      success: true,
      serviceName: ECHO,
      datas: [
        '127.0.0.1:12220?_SERIALIZETYPE=hessian2&v=4.0&p=1&app_name=echo&interface=com.example.EchoService&version=1.0',
      ],
    });
    assert.deepEqual(takeover.reads, [{ iface: 'com.example.EchoService:1.0', real: [real1] }]);

    // A second subscribe of the same service (another ConsumerConfig) is answered from the same subscription.
    const again = await meshPost(api, SOFA_MESH_API_PATHS.subscribe, subscribeRequest(ECHO));
    assert.deepEqual(again.body, reply.body);

    await peer.publish(ECHO, real2);
    await settle();
    // One subscription upstream: exactly one read per change.
    assert.deepEqual(takeover.reads, [
      { iface: 'com.example.EchoService:1.0', real: [real1] },
      { iface: 'com.example.EchoService:1.0', real: [real1, real2] },
    ]);

    // UnSubscribeServiceRequest: serviceName, targetAppAddress, protocolType, group.
    const un = await meshPost(api, SOFA_MESH_API_PATHS.unsubscribe, {
      serviceName: ECHO,
      protocolType: 'bolt',
      group: 'SOFA',
    });
    assert.equal(un.status, 200);
    assert.equal(un.body.success, true);
    await peer.unpublish(ECHO, real1);
    await settle();
    assert.equal(takeover.reads.length, 2);
  });

  it('/services/subscribe of a service with no provider answers success with no datas, and learns providers later', async () => {
    const reply = await meshPost(api, SOFA_MESH_API_PATHS.subscribe, subscribeRequest(ECHO));
    assert.deepEqual(reply.body, { success: true, serviceName: ECHO, datas: [] });
    await peer.publish(ECHO, '10.0.0.9:12200?p=1');
    await settle();
    // A URL that names no service is the registry's answer for the one subscribed: it is given that identity.
    assert.deepEqual(takeover.reads.at(-1), {
      iface: 'com.example.EchoService:1.0',
      real: ['10.0.0.9:12200?p=1&interface=com.example.EchoService&version=1.0&uniqueId='],
    });
    const again = await meshPost(api, SOFA_MESH_API_PATHS.subscribe, subscribeRequest(ECHO));
    assert.deepEqual(again.body.datas, ['127.0.0.1:12220?p=1&interface=com.example.EchoService&version=1.0&uniqueId=']);
  });

  it('/services/subscribe writes the outbound URL scheme-less even when the registry holds bolt:// URLs', async () => {
    await peer.publish(ECHO, 'bolt://10.0.0.9:12200?serialization=hessian2&weight=100');
    const reply = await meshPost(api, SOFA_MESH_API_PATHS.subscribe, subscribeRequest(ECHO));
    assert.deepEqual(reply.body.datas, [
      '127.0.0.1:12220?serialization=hessian2&weight=100&interface=com.example.EchoService&version=1.0&uniqueId=',
    ]);
  });

  it('/services/subscribe answers failure when the registry refuses', async () => {
    await via.close();
    const reply = await meshPost(api, SOFA_MESH_API_PATHS.subscribe, subscribeRequest(ECHO));
    assert.equal(reply.status, 200);
    assert.equal(reply.body.success, false);
    assert.match(String(reply.body.errorMessage), /subscribe to com\.example\.EchoService:1\.0 failed/);
  });

  it('close() ends every subscription', async () => {
    await meshPost(api, SOFA_MESH_API_PATHS.subscribe, subscribeRequest(ECHO));
    await facade.close();
    await peer.publish(ECHO, '10.0.0.9:12200?p=1');
    await settle();
    assert.deepEqual(takeover.reads, [{ iface: 'com.example.EchoService:1.0', real: [] }]);
  });

  describe('refuses malformed requests with a 4xx and a JSON reason, and keeps serving', () => {
    afterEach(async () => {
      const ok = await meshPost(api, SOFA_MESH_API_PATHS.application, { appName: 'still-up' });
      assert.equal(ok.body.success, true);
    });

    it('bad JSON', async () => {
      const reply = await send(api, 'POST', SOFA_MESH_API_PATHS.publish, '{"serviceName":');
      assert.equal(reply.status, 400);
      assert.equal(reply.body.success, false);
      assert.match(String(reply.body.errorMessage), /not JSON/);
    });

    it('a body that is not an object', async () => {
      const reply = await send(api, 'POST', SOFA_MESH_API_PATHS.subscribe, '["x"]');
      assert.equal(reply.status, 400);
      assert.equal(reply.body.success, false);
    });

    it('a missing or mistyped serviceName', async () => {
      for (const p of [
        SOFA_MESH_API_PATHS.publish,
        SOFA_MESH_API_PATHS.unpublish,
        SOFA_MESH_API_PATHS.subscribe,
        SOFA_MESH_API_PATHS.unsubscribe,
      ]) {
        const missing = await meshPost(api, p, { protocolType: 'bolt' });
        assert.equal(missing.status, 400, p);
        assert.match(String(missing.body.errorMessage), /serviceName/);
        const mistyped = await meshPost(api, p, { serviceName: 42 });
        assert.equal(mistyped.status, 400, p);
      }
      assert.deepEqual(takeover.published, []);
    });

    it('a mistyped providerMetaInfo', async () => {
      const reply = await meshPost(api, SOFA_MESH_API_PATHS.publish, { serviceName: HELLO, providerMetaInfo: 'bolt' });
      assert.equal(reply.status, 400);
      assert.equal(reply.body.success, false);
    });

    it('a method other than POST', async () => {
      const reply = await send(api, 'GET', SOFA_MESH_API_PATHS.subscribe, undefined);
      assert.equal(reply.status, 405);
      assert.equal(reply.headers.allow, 'POST');
      assert.equal(reply.body.success, false);
    });

    it('an unknown path', async () => {
      const reply = await meshPost(api, '/services/nothing', { serviceName: HELLO });
      assert.equal(reply.status, 404);
      assert.equal(reply.body.success, false);
      assert.match(String(reply.body.errorMessage), /unknown path/);
    });

    it('a declared body over the cap, answered before it is sent', async () => {
      await facade.close();
      await startFacade({ maxBodyBytes: 1024 });
      const reply = await new Promise<Reply>((resolve, reject) => {
        const req = request(
          {
            host: api.host,
            port: api.port,
            method: 'POST',
            path: SOFA_MESH_API_PATHS.publish,
            headers: { ...JAVA_HEADERS, 'Content-Length': String(10 * 1024 * 1024) },
            agent: false,
          },
          (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (c: Buffer) => chunks.push(c));
            res.on('end', () =>
              resolve({
                status: res.statusCode!,
                headers: res.headers,
                body: JSON.parse(Buffer.concat(chunks).toString()) as Record<string, unknown>,
              }),
            );
          },
        );
        req.on('error', reject);
        req.flushHeaders();
      });
      assert.equal(reply.status, 413);
      assert.equal(reply.body.success, false);
    });

    it('a streamed body over the cap, answered without waiting for its end', async () => {
      await facade.close();
      await startFacade({ maxBodyBytes: 1024 });
      const reply = await new Promise<Reply>((resolve, reject) => {
        const req = request(
          {
            host: api.host,
            port: api.port,
            method: 'POST',
            path: SOFA_MESH_API_PATHS.subscribe,
            headers: { ...JAVA_HEADERS, 'Transfer-Encoding': 'chunked' },
            agent: false,
          },
          (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (c: Buffer) => chunks.push(c));
            res.on('end', () =>
              resolve({
                status: res.statusCode!,
                headers: res.headers,
                body: JSON.parse(Buffer.concat(chunks).toString()) as Record<string, unknown>,
              }),
            );
          },
        );
        req.on('error', (error: NodeJS.ErrnoException) => {
          // The server drops the connection after answering; only a failure before the answer matters.
          if (error.code !== 'ECONNRESET' && error.code !== 'EPIPE') reject(error);
        });
        // Never ended: a facade that waited for the whole body would never answer.
        req.write(`{"serviceName":"${'x'.repeat(4096)}`);
      });
      assert.equal(reply.status, 413);
      assert.equal(reply.body.success, false);
      assert.match(String(reply.body.errorMessage), /larger than 1024 bytes/);
    });
  });

  // sofa-rpc-node (node_modules/sofa-rpc-node, 2.10.0) only ships a ZooKeeper registry, no mesh mode, so no Node.js
  // SDK can drive this facade. This replays what sofa-rpc's Java MeshRegistry does instead, with Node's own HTTP
  // client, and builds the provider the SDK would build from the answer (MeshRegistry.fillProtocolAndVersion).
  it('serves the whole mesh-mode flow of the Java SDK (no Node.js SDK has a mesh registry)', async () => {
    let registries: Record<string, unknown> | undefined;
    try {
      registries = require('sofa-rpc-node/lib/registry') as Record<string, unknown>;
    } catch {
      registries = undefined;
    }
    if (registries)
      assert.deepEqual(
        Object.keys(registries),
        ['ZookeeperRegistry'],
        'sofa-rpc-node grew a registry: drive this facade with it',
      );
    await peer.publish(ECHO, '10.0.0.9:12200?_SERIALIZETYPE=hessian2&v=4.0&p=1&app_name=echo');

    // Provider side: registerAppInfoOnce, then publishService.
    assert.equal((await meshPost(api, SOFA_MESH_API_PATHS.application, { appName: 'demo-app' })).body.success, true);
    assert.equal((await meshPost(api, SOFA_MESH_API_PATHS.publish, publishRequest(HELLO))).body.success, true);
    // Consumer side: subscribeService; a failure here throws in the SDK.
    const subscribed = await meshPost(api, SOFA_MESH_API_PATHS.subscribe, subscribeRequest(ECHO));
    assert.equal(subscribed.body.success, true);
    const datas = subscribed.body.datas as string[];
    const meshHost = '127.0.0.1';
    const first = datas[0];
    const target = first?.includes('?')
      ? `${meshHost}:${SOFA_MESH_TCP_PORT}?${first.slice(first.indexOf('?') + 1)}`
      : `${meshHost}:${SOFA_MESH_TCP_PORT}`;
    assert.equal(
      target,
      '127.0.0.1:12220?_SERIALIZETYPE=hessian2&v=4.0&p=1&app_name=echo&interface=com.example.EchoService&version=1.0&uniqueId=',
    );
    // Shutdown: unSubscribe and unRegister.
    assert.equal((await meshPost(api, SOFA_MESH_API_PATHS.unsubscribe, { serviceName: ECHO })).body.success, true);
    assert.equal((await meshPost(api, SOFA_MESH_API_PATHS.unpublish, { serviceName: HELLO })).body.success, true);
    assert.deepEqual(store.list(HELLO), []);
  });
});
