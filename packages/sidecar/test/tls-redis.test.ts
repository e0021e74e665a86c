// The Redis facade and the SOFA mesh API with mutual TLS: what an app publishes through its pod's facade lands in the
// real Redis with the pod's identity (meshport.id), the other pod dials it over mTLS, and what an app reads through
// its facade is its own pod's outbound listener without the identity. Runs on the engine MESHPORT_ENGINE names.

import { strict as assert } from 'node:assert';
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { FrameSplitter, decodeFrame, type FrameHeader } from '@meshport/protocol';
import {
  RespConnection,
  boltRequest,
  dubboCall,
  eventually,
  makeTestPki,
  startEchoProvider,
  startRedis,
  type EchoProvider,
  type RespValue,
  type RunningRedis,
  type TestPki,
} from '@meshport/testkit';
import { loadConfig } from '../src/config';
import { Sidecar } from '../src/sidecar';

const IFACE = 'com.example.Greet';
const SERVICE = `${IFACE}:1.0`;
const KEY = `/dubbo/${IFACE}/providers`;
const PROVIDER_ID = 'spiffe://cluster.local/ns/default/sa/greet-provider';
const CONSUMER_ID = 'spiffe://cluster.local/ns/default/sa/greet-consumer';

function exchange(port: number, frame: Buffer): Promise<FrameHeader> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error('no answer within 5 s'));
    }, 5000);
    const splitter = new FrameSplitter((answer) => {
      clearTimeout(timer);
      socket.end();
      resolve(decodeFrame(answer));
    });
    socket.on('data', (d) => splitter.write(d));
    socket.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    socket.write(frame);
  });
}

/** The field names of an HGETALL reply. */
function fields(reply: RespValue): string[] {
  assert.ok(Array.isArray(reply), `not a list: ${String(reply)}`);
  return reply.filter((_, i) => i % 2 === 0).map(String);
}

describe(`the Redis facade with mutual TLS (engine ${process.env.MESHPORT_ENGINE ?? 'native'})`, function () {
  this.timeout(60_000);
  let redis: RunningRedis;
  let pki: TestPki;
  let echo: EchoProvider;
  const pods: { sidecar: Sidecar; dir: string }[] = [];
  const conns: RespConnection[] = [];

  async function startPod(id: string, services: string, more: string[] = []): Promise<Sidecar> {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'meshport-tls-redis-'));
    const leaf = pki.issue(id);
    copyFileSync(leaf.certFile, path.join(dir, 'cert.pem'));
    copyFileSync(leaf.keyFile, path.join(dir, 'key.pem'));
    copyFileSync(pki.trustBundleFile, path.join(dir, 'ca.pem'));
    const file = path.join(dir, 'meshport.yaml');
    writeFileSync(
      file,
      [
        'listeners: { outbound: "127.0.0.1:0", inbound: "127.0.0.1:0" }',
        'admin: "127.0.0.1:0"',
        'registries:',
        `  - { name: r, type: redis, upstream: "127.0.0.1:${redis.port}", facade: "127.0.0.1:0"${services} }`,
        ...more,
        'tls: { mode: strict, certFile: cert.pem, keyFile: key.pem, trustBundleFile: ca.pem }',
        '',
      ].join('\n'),
    );
    const sidecar = new Sidecar(await loadConfig(file), { logger: pino({ level: 'silent' }) });
    await sidecar.start();
    pods.push({ sidecar, dir });
    return sidecar;
  }

  before(async () => {
    redis = await startRedis();
    pki = makeTestPki({ trustDomain: 'cluster.local' });
    echo = await startEchoProvider();
  });

  after(async () => {
    for (const c of conns) c.close();
    for (const pod of pods.reverse()) {
      await pod.sidecar.stop(0);
      rmSync(pod.dir, { recursive: true, force: true });
    }
    await echo?.close();
    await redis?.stop();
    pki?.cleanup();
  });

  it('publishes meshport.id upstream, dials it over mTLS, and shows the app neither', async () => {
    const provider = await startPod(PROVIDER_ID, '');
    const consumer = await startPod(CONSUMER_ID, `, services: ["${SERVICE}"]`);
    // The provider app registers as Dubbo's Redis registry does: a field per URL, its expiry as the value.
    const app = await RespConnection.connect(provider.address({ facade: 'r' }).port);
    conns.push(app);
    const url = `dubbo://127.0.0.1:${echo.port}/${IFACE}?interface=${IFACE}&version=1.0&side=provider`;
    await app.call('HSET', KEY, url, String(Date.now() + 60_000));
    await app.call('PUBLISH', KEY, 'register');

    const upstream = await RespConnection.connect(redis.port);
    conns.push(upstream);
    const published = fields(await upstream.call('HGETALL', KEY));
    assert.equal(published.length, 1, published.join('\n'));
    assert.match(published[0]!, new RegExp(`^dubbo://127\\.0\\.0\\.1:${provider.address('inbound').port}/`));
    assert.match(published[0]!, new RegExp(`meshport\\.id=${encodeURIComponent(PROVIDER_ID)}`));

    await eventually('the consumer pod to route the service over mTLS', async () =>
      consumer.book.snapshot().outbound[SERVICE]?.endpoints.some((e) => e.identity === PROVIDER_ID) ? true : undefined,
    );
    const answer = await exchange(consumer.address('outbound').port, dubboCall(7, IFACE, '1.0', 'greet', 'tls'));
    assert.equal(answer.status, 20); // Dubbo OK
    assert.ok(echo.seen.length > 0);

    // A Dubbo app reading through the consumer pod's facade sees the pod's outbound listener, without the identity.
    const reader = await RespConnection.connect(consumer.address({ facade: 'r' }).port);
    conns.push(reader);
    const shown = fields(await reader.call('HGETALL', KEY));
    assert.equal(shown.length, 1, shown.join('\n'));
    assert.match(shown[0]!, new RegExp(`^dubbo://127\\.0\\.0\\.1:${consumer.address('outbound').port}/`));
    assert.doesNotMatch(shown[0]!, /meshport/);

    // Its withdrawal removes the published field (the same URL, identity included).
    await app.call('HDEL', KEY, url);
    await app.call('PUBLISH', KEY, 'unregister');
    assert.deepEqual(fields(await upstream.call('HGETALL', KEY)), []);
  });

  it('the mesh API: publishes meshport.id upstream, hands the subscribing app its outbound listener without it', async () => {
    const service = 'com.example.MeshEcho:1.0';
    const mesh = (appPort: number) => [
      `  - { name: mesh, type: sofa-mesh, via: r, facade: "127.0.0.1:0", app: "127.0.0.1:${appPort}" }`,
    ];
    const provider = await startPod(PROVIDER_ID, '', mesh(echo.port));
    const consumer = await startPod(CONSUMER_ID, '', mesh(1));
    const post = async (pod: Sidecar, route: string, bean: object) => {
      const { host, port } = pod.address({ facade: 'mesh' });
      const res = await fetch(`http://${host}:${port}${route}`, {
        method: 'POST',
        headers: { 'Content-Type': 'text/plain' },
        body: JSON.stringify(bean),
      });
      return (await res.json()) as { success: boolean; datas?: string[] };
    };
    assert.ok((await post(provider, '/configs/application', { appName: 'mesh-provider' })).success);
    const published = await post(provider, '/services/publish', {
      serviceName: service,
      protocolType: 'bolt',
      providerMetaInfo: { protocol: 'bolt', version: '4.0', serializeType: 'hessian2', appName: 'mesh-provider' },
      onlyPublishInCloud: false,
    });
    assert.ok(published.success);
    const subscribe = { serviceName: service, protocolType: 'bolt', vipEnforce: false, vipOnly: false, properties: {} };
    const datas = await eventually('a subscribe answer with a provider', async () => {
      const reply = await post(consumer, '/services/subscribe', subscribe);
      return reply.datas && reply.datas.length > 0 ? reply.datas : undefined;
    });
    assert.equal(datas.length, 1);
    assert.match(datas[0]!, new RegExp(`127\\.0\\.0\\.1:${consumer.address('outbound').port}`));
    assert.doesNotMatch(datas[0]!, /meshport/);
    await eventually('the consumer pod to route the service over mTLS', async () =>
      consumer.book.snapshot().outbound[service]?.endpoints.some((e) => e.identity === PROVIDER_ID) ? true : undefined,
    );
    const answer = await exchange(consumer.address('outbound').port, boltRequest(9, service, 'over mesh'));
    assert.equal(answer.status, 0);
  });
});
