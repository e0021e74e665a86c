// Two real sidecars on loopback with mutual TLS between them, over a real ZooKeeper (and a file registry): the
// provider's sidecar publishes its identity with the app's service, the consumer's sidecar dials it over mTLS, the
// apps see neither; a rotated certificate is what new connections get; SIGHUP's new policy denies a caller at once.
// Runs on the engine MESHPORT_ENGINE names (js or native).

import { strict as assert } from 'node:assert';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { X509Certificate } from 'node:crypto';
import tls from 'node:tls';
import pino from 'pino';
import { FrameSplitter, decodeFrame, type FrameHeader } from '@meshport/protocol';
import {
  zkCreateEphemeral,
  zkMkdirp,
  boltRequest,
  connectZooKeeper,
  eventually,
  makeTestPki,
  startEchoProvider,
  startZooKeeper,
  type EchoProvider,
  type RunningZooKeeper,
  type TestLeaf,
  type TestPki,
} from '@meshport/testkit';
import { loadConfig } from '../src/config';
import { Sidecar } from '../src/sidecar';

type ZkClient = Awaited<ReturnType<typeof connectZooKeeper>>;

const SERVICE = 'com.example.Echo:1.0';
const TRUST_DOMAIN = 'cluster.local';
const PROVIDER_ID = `spiffe://${TRUST_DOMAIN}/ns/default/sa/provider`;
const CONSUMER_ID = `spiffe://${TRUST_DOMAIN}/ns/default/sa/consumer`;

/** A sidecar with its log lines kept, so a test can wait for one. */
interface Pod {
  sidecar: Sidecar;
  dir: string;
  file: string;
  logs: Record<string, unknown>[];
}

function logCollector(): { logger: pino.Logger; logs: Record<string, unknown>[] } {
  const logs: Record<string, unknown>[] = [];
  const logger = pino(
    { level: 'info' },
    {
      write(line: string) {
        logs.push(JSON.parse(line) as Record<string, unknown>);
      },
    },
  );
  return { logger, logs };
}

function podYaml(lines: { registry: string; tls: string; authz?: string }): string {
  return [
    'listeners: { outbound: "127.0.0.1:0", inbound: "127.0.0.1:0" }',
    'admin: "127.0.0.1:0"',
    'registries:',
    `  - ${lines.registry}`,
    lines.tls,
    lines.authz ?? '',
    '',
  ].join('\n');
}

/** Certificate files of one pod, in its own directory (the test rewrites them to rotate). */
function podFiles(dir: string, leaf: TestLeaf, pki: TestPki): string {
  copyFileSync(leaf.certFile, path.join(dir, 'cert.pem'));
  copyFileSync(leaf.keyFile, path.join(dir, 'key.pem'));
  copyFileSync(pki.trustBundleFile, path.join(dir, 'ca.pem'));
  return 'tls: { mode: strict, certFile: cert.pem, keyFile: key.pem, trustBundleFile: ca.pem }';
}

async function startPod(yaml: (dir: string) => string): Promise<Pod> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'meshport-tls-pod-'));
  const file = path.join(dir, 'meshport.yaml');
  writeFileSync(file, yaml(dir));
  const { logger, logs } = logCollector();
  const sidecar = new Sidecar(await loadConfig(file), { logger });
  await sidecar.start();
  return { sidecar, dir, file, logs };
}

/** One Bolt call through the consumer pod's outbound listener, on a connection of its own. */
function call(port: number, service = SERVICE, body = 'hello'): Promise<{ header: FrameHeader; body: string }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error('no answer within 5 s'));
    }, 5000);
    const splitter = new FrameSplitter((frame) => {
      clearTimeout(timer);
      const header = decodeFrame(frame);
      socket.end();
      resolve({ header, body: frame.subarray(header.bodyOffset).toString('latin1') });
    });
    socket.on('data', (d) => splitter.write(d));
    socket.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    socket.write(boltRequest(1, service, body));
  });
}

async function adminText(pod: Pod, page: string): Promise<string> {
  const { host, port } = pod.sidecar.address('admin');
  return (await fetch(`http://${host}:${port}${page}`)).text();
}

/** The value of one /stats line, by metric name and a label substring; 0 when it is not there. */
function statValue(stats: string, metric: string, labels: string): number {
  const line = stats.split('\n').find((l) => l.startsWith(`${metric}{`) && l.includes(labels));
  return line ? Number(line.split(/\s+/).at(-1)) : 0;
}

/** The certificate a TLS server presents to a client with `leaf` (a fresh connection, session reuse off). */
function presentedCertificate(port: number, leaf: { cert: string; key: string }, ca: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      host: '127.0.0.1',
      port,
      ca,
      cert: leaf.cert,
      key: leaf.key,
      minVersion: 'TLSv1.3',
      checkServerIdentity: () => undefined,
    });
    socket.once('secureConnect', () => {
      const fingerprint = socket.getPeerCertificate().fingerprint256;
      socket.destroy();
      resolve(fingerprint);
    });
    socket.once('error', reject);
  });
}

function children(client: ZkClient, dir: string): Promise<string[]> {
  return new Promise((resolve, reject) =>
    client.getChildren(dir, undefined, (error: Error | null, names: string[]) =>
      error ? reject(error) : resolve(names),
    ),
  );
}

describe(`sidecars with mutual TLS (engine ${process.env.MESHPORT_ENGINE ?? 'native'})`, function () {
  this.timeout(60_000);
  let zk: RunningZooKeeper;
  let pki: TestPki;
  let echo: EchoProvider;
  let provider: Pod;
  let consumer: Pod;
  const clients: ZkClient[] = [];
  const extra: Pod[] = [];

  before(async () => {
    zk = await startZooKeeper();
    pki = makeTestPki({ trustDomain: TRUST_DOMAIN });
    const providerLeaf = pki.issue(PROVIDER_ID);
    const consumerLeaf = pki.issue(CONSUMER_ID);
    echo = await startEchoProvider();
    const zkEntry = (services = '') =>
      `{ name: zk, type: zookeeper, upstream: "${zk.connectString}", facade: "127.0.0.1:0"${services} }`;
    provider = await startPod((dir) => podYaml({ registry: zkEntry(), tls: podFiles(dir, providerLeaf, pki) }));
    consumer = await startPod((dir) =>
      podYaml({ registry: zkEntry(`, services: ["${SERVICE}"]`), tls: podFiles(dir, consumerLeaf, pki) }),
    );
    // The provider app publishes through its pod's facade, as sofa-rpc-node does.
    const app = await connectZooKeeper(`127.0.0.1:${provider.sidecar.address({ facade: 'zk' }).port}`);
    clients.push(app);
    const url = `bolt://127.0.0.1:${echo.port}/com.example.Echo?interface=com.example.Echo&version=1.0&weight=100`;
    await zkMkdirp(app, '/sofa-rpc/com.example.Echo/providers');
    await zkCreateEphemeral(app, `/sofa-rpc/com.example.Echo/providers/${encodeURIComponent(url)}`);
    await eventually('the consumer pod to route the service over mTLS', async () =>
      consumer.sidecar.book.snapshot().outbound[SERVICE]?.endpoints.some((e) => e.identity === PROVIDER_ID)
        ? true
        : undefined,
    );
  });

  after(async () => {
    for (const c of clients) c.close();
    for (const pod of [...extra, consumer, provider]) {
      await pod?.sidecar.stop(0);
      if (pod) rmSync(pod.dir, { recursive: true, force: true });
    }
    await echo?.close();
    await zk?.stop();
    pki?.cleanup();
  });

  it('calls flow over mTLS: the provider pod counts inbound handshakes, the consumer pod outbound ones', async () => {
    const answer = await call(consumer.sidecar.address('outbound').port);
    assert.equal(answer.header.status, 0, answer.body);
    assert.ok(echo.seen.length > 0);
    const [inStats, outStats] = await Promise.all([adminText(provider, '/stats'), adminText(consumer, '/stats')]);
    assert.ok(
      statValue(inStats, 'meshport_tls_handshakes_total', 'direction="inbound"') >= 1,
      'provider pod: no inbound handshake counted',
    );
    assert.ok(
      statValue(outStats, 'meshport_tls_handshakes_total', 'direction="outbound"') >= 1,
      'consumer pod: no outbound handshake counted',
    );
    // /routes names the identity the consumer pod requires of the endpoint; /config says who each pod is.
    assert.match(await adminText(consumer, '/routes'), new RegExp(PROVIDER_ID.replace(/[/.]/g, '\\$&')));
    const config = JSON.parse(await adminText(provider, '/config')) as { tls: Record<string, unknown> };
    assert.equal(config.tls.mode, 'strict');
    assert.equal(config.tls.identity, PROVIDER_ID);
    assert.doesNotMatch(JSON.stringify(config), /PRIVATE KEY/);
  });

  it('a plaintext caller is refused by the strict provider pod', async () => {
    const inbound = provider.sidecar.address('inbound');
    const closed = await new Promise<boolean>((resolve) => {
      const socket = net.connect(inbound.port, inbound.host);
      socket.on('connect', () => socket.write(boltRequest(2, SERVICE, 'plain')));
      socket.on('data', () => resolve(false));
      socket.on('close', () => resolve(true));
      socket.on('error', () => resolve(true));
    });
    assert.ok(closed, 'a plaintext call got an answer from a strict listener');
  });

  it('a pod without TLS dials plaintext, which the provider pod takes once SIGHUP makes it permissive', async () => {
    const plain = await startPod(() =>
      podYaml({
        registry: `{ name: zk, type: zookeeper, upstream: "${zk.connectString}", services: ["${SERVICE}"] }`,
        tls: '',
      }),
    );
    extra.push(plain);
    await eventually('the plaintext pod to route the service', async () =>
      plain.sidecar.book.snapshot().outbound[SERVICE] ? true : undefined,
    );
    // It has no certificate to present, so it leaves the published identity out and dials plaintext.
    assert.deepEqual(
      plain.sidecar.book.snapshot().outbound[SERVICE]?.endpoints.map((e) => e.identity),
      [undefined],
    );
    const original = readFileSync(provider.file, 'utf8');
    try {
      writeFileSync(provider.file, original.replace('mode: strict', 'mode: permissive'));
      const result = await provider.sidecar.reload(provider.file);
      assert.ok(result.ok, String(result.error));
      assert.deepEqual(result.needRestart, []);
      const answer = await call(plain.sidecar.address('outbound').port);
      assert.equal(answer.header.status, 0, answer.body);
      // The mTLS consumer pod is not affected.
      assert.equal((await call(consumer.sidecar.address('outbound').port)).header.status, 0);
    } finally {
      writeFileSync(provider.file, original);
      assert.ok((await provider.sidecar.reload(provider.file)).ok);
    }
  });

  it('publishes meshport.id upstream, and the apps never see it', async () => {
    const upstream = await connectZooKeeper(zk.connectString);
    clients.push(upstream);
    const published = (await children(upstream, '/sofa-rpc/com.example.Echo/providers')).map(decodeURIComponent);
    assert.equal(published.length, 1, published.join('\n'));
    const inbound = provider.sidecar.address('inbound');
    assert.match(published[0]!, new RegExp(`^bolt://127\\.0\\.0\\.1:${inbound.port}/`));
    assert.match(published[0]!, new RegExp(`meshport\\.id=${encodeURIComponent(PROVIDER_ID)}`));
    // What a consumer app is handed through its pod's facade: the pod's outbound listener, no identity.
    const app = await connectZooKeeper(`127.0.0.1:${consumer.sidecar.address({ facade: 'zk' }).port}`);
    clients.push(app);
    const handed = (await children(app, '/sofa-rpc/com.example.Echo/providers')).map(decodeURIComponent);
    assert.equal(handed.length, 1, handed.join('\n'));
    assert.match(handed[0]!, new RegExp(`^bolt://127\\.0\\.0\\.1:${consumer.sidecar.address('outbound').port}/`));
    assert.doesNotMatch(handed[0]!, /meshport/);
  });

  it('a file registry listing the published URL is dialed over mTLS too', async () => {
    const upstream = clients[clients.length - 2]!;
    const [published] = (await children(upstream, '/sofa-rpc/com.example.Echo/providers')).map(decodeURIComponent);
    const consumerLeaf = pki.issue(CONSUMER_ID);
    const pod = await startPod((dir) => {
      writeFileSync(path.join(dir, 'services.json'), JSON.stringify({ services: { [SERVICE]: [published] } }));
      return podYaml({
        registry: '{ name: static, type: file, upstream: services.json }',
        tls: podFiles(dir, consumerLeaf, pki),
      });
    });
    extra.push(pod);
    assert.deepEqual(
      pod.sidecar.book.snapshot().outbound[SERVICE]?.endpoints.map((e) => e.identity),
      [PROVIDER_ID],
    );
    const answer = await call(pod.sidecar.address('outbound').port);
    assert.equal(answer.header.status, 0, answer.body);
  });

  it('a rotated certificate is what new connections get, and calls go on', async () => {
    const clientLeaf = pki.issue(CONSUMER_ID);
    const client = { cert: clientLeaf.certPem, key: clientLeaf.keyPem };
    const inbound = provider.sidecar.address('inbound').port;
    const before = await presentedCertificate(inbound, client, pki.caPem);
    const next = pki.issue(PROVIDER_ID);
    const expected = new X509Certificate(next.certPem).fingerprint256;
    assert.notEqual(before, expected);
    // As cert-manager does: the key first, then the certificate.
    copyFileSync(next.keyFile, path.join(provider.dir, 'key.pem'));
    copyFileSync(next.certFile, path.join(provider.dir, 'cert.pem'));
    await eventually('the certificate rotated log line', async () =>
      provider.logs.some((l) => l.msg === 'certificate rotated') ? true : undefined,
    );
    const rotated = provider.logs.find((l) => l.msg === 'certificate rotated')!;
    assert.equal(rotated.identity, PROVIDER_ID);
    assert.equal(typeof rotated.certificateExpires, 'string');
    await eventually('new connections to present the new certificate', async () =>
      (await presentedCertificate(inbound, client, pki.caPem)) === expected ? true : undefined,
    );
    const answer = await call(consumer.sidecar.address('outbound').port);
    assert.equal(answer.header.status, 0, answer.body);
  });

  it('SIGHUP with a policy that leaves the consumer out denies its calls without a restart', async () => {
    const original = readFileSync(provider.file, 'utf8');
    const outbound = consumer.sidecar.address('outbound').port;
    assert.equal((await call(outbound)).header.status, 0);
    writeFileSync(
      provider.file,
      `${original}authz:\n  services:\n    "${SERVICE}": { allow: ["spiffe://${TRUST_DOMAIN}/ns/default/sa/someone-else"] }\n`,
    );
    const result = await provider.sidecar.reload(provider.file);
    assert.ok(result.ok, String(result.error));
    assert.equal(result.security, true);
    const denied = await call(outbound);
    assert.notEqual(denied.header.status, 0);
    assert.match(denied.body, /may not call com\.example\.Echo:1\.0/);
    assert.match(denied.body, new RegExp(CONSUMER_ID.replace(/[/.]/g, '\\$&')));
    const stats = await adminText(provider, '/stats');
    assert.ok(statValue(stats, 'meshport_calls_denied_total', `service="${SERVICE}"`) >= 1);
    // And back: the policy reloads again, no connection dropped in between.
    writeFileSync(provider.file, original);
    assert.ok((await provider.sidecar.reload(provider.file)).ok);
    assert.equal((await call(outbound)).header.status, 0);
  });
});
