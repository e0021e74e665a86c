// Mutual TLS between sidecars end to end (issue 18): two pods, each a network namespace, joined by a veth pair on
// 198.19.x.0/24; in each pod `meshport sidecar --config` children (run with `ip netns exec`) taking over a real
// ZooKeeper through their facades (the ZooKeeper runs on the host's loopback and reaches the pods through Unix-socket
// relays, so the only traffic on the veth is pod to pod); sofa-rpc-node apps in the pods: providers in pod B, consumers
// in pod A.
//
//   pod A  consumer sidecar  spiffe://cluster.local/ns/default/sa/echo-consumer  + its consumer apps (Bolt, Dubbo)
//          intruder sidecar  spiffe://cluster.local/ns/default/sa/intruder       + its consumer apps (Bolt, Dubbo)
//   pod B  provider sidecar  spiffe://cluster.local/ns/default/sa/echo-provider  strict, authz: only echo-consumer
//                            may call com.example.mtls.Echo:1.0 (Bolt) and       + its provider apps (Bolt, Dubbo)
//                            SOFA/com.example.mtls.DubboEcho:1.0 (Dubbo)
//          open sidecar      spiffe://cluster.local/ns/default/sa/open-provider  permissive, no rule
//                                                                                 + its provider app (OpenEcho)
//
// What is checked: calls flow over mTLS (a capture on the veth shows only TLS records, never a Bolt request's first
// byte, Dubbo's 0xdabb nor an interface name in clear); callers without a certificate, with one of another CA, with
// an expired one or with an identity the policy does not list are refused and counted; a registry entry naming an
// identity the endpoint does not present is refused by the consumer's sidecar (wrong-identity); permissive takes a
// plaintext caller, strict refuses it (counted plaintext-refused); certificates replaced under a steady call stream
// lose no call and new connections present the new certificate; the expired certificate's refusal is logged clearly;
// a policy edited in the config file applies on SIGHUP.
//
// Needs root (ip netns), tcpdump and a JDK (ZooKeeper): skipped without them, failed under CI=true. Every namespace,
// relay, child and file is removed in `after`, also on failure. Runs on the engine MESHPORT_ENGINE names.

import { strict as assert } from 'node:assert';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import tls from 'node:tls';
import zookeeper from 'node-zookeeper-client';
import { run, spawnInNetns } from '@meshport/hijack';
import {
  JAVA,
  type Json,
  JsonLinesChild,
  boltRequest,
  connectZooKeeper,
  makeTestPki,
  skipOrFail,
  startZooKeeper,
  type RunningZooKeeper,
  type TestLeaf,
  type TestPki,
} from '@meshport/testkit';
import { createNetnsPair, deleteNetnsWithPrefix, netnsWithPrefix, type NetnsPair } from './support/netem';
import {
  getOverSocket,
  logLines,
  readPcapStreams,
  startCapture,
  startPodSidecar,
  startRelay,
  walkTlsRecords,
  type PodSidecar,
  type Relay,
} from './support/pods';
import { BIN, counterValue } from './support/wire';

const TD = 'cluster.local';
const ID = {
  consumer: `spiffe://${TD}/ns/default/sa/echo-consumer`,
  intruder: `spiffe://${TD}/ns/default/sa/intruder`,
  provider: `spiffe://${TD}/ns/default/sa/echo-provider`,
  open: `spiffe://${TD}/ns/default/sa/open-provider`,
};
const IFACE = 'com.example.mtls.Echo';
const OPEN_IFACE = 'com.example.mtls.OpenEcho';
/** Served over Dubbo by the provider pod too; sofa-rpc-node's Dubbo calls carry the group SOFA, part of the key. */
const DUBBO_IFACE = 'com.example.mtls.DubboEcho';
const DUBBO_SERVICE = `SOFA/${DUBBO_IFACE}:1.0`;
/** Published in ZooKeeper by hand: the open pod's address with the provider pod's identity (a spoofed entry). */
const SPOOFED_IFACE = 'com.example.mtls.Spoofed';
const SERVICE = `${IFACE}:1.0`;
const ZK_PORT = 2181;
const POD_CONSUMER = path.join(__dirname, 'support', 'pod-consumer.js');
const PROVIDER_APP = path.resolve(__dirname, '../../packages/testkit/dist/src/provider-app.js');

/** Each pod's sidecars on fixed ports (the namespaces are the suite's own): inbound, outbound, admin, facade. */
const PORTS = {
  consumer: { inbound: 21000, outbound: 21001, admin: 21002, facade: 21003 },
  intruder: { inbound: 21100, outbound: 21101, admin: 21102, facade: 21103 },
  provider: { inbound: 22000, outbound: 22001, admin: 22002, facade: 22003 },
  open: { inbound: 22100, outbound: 22101, admin: 22102, facade: 22103 },
};
type PodName = keyof typeof PORTS;

/** Why the suite cannot run here, or undefined. */
async function problem(): Promise<string | undefined> {
  if (typeof process.getuid === 'function' && process.getuid() !== 0) return 'not root (ip netns)';
  if ((await run('ip', ['netns', 'list'])).code !== 0) return '`ip netns` does not work';
  if ((await run('tcpdump', ['--version'])).code !== 0) return 'no tcpdump (bootstrap installs it)';
  if (!existsSync(JAVA)) return `no java at ${JAVA} (ZooKeeper)`;
  return undefined;
}

/** A Bolt v1 response frame's status (offset 10), or undefined when `b` does not start with one. */
function boltResponseStatus(b: Buffer): number | undefined {
  return b.length >= 20 && b[0] === 1 && b[1] === 0 ? b.readUInt16BE(10) : undefined;
}

interface TlsAttempt {
  /** The client finished its side of the handshake. */
  secure: boolean;
  /** SHA-256 fingerprint of the certificate the server presented. */
  peerFingerprint?: string;
  /** Everything the server sent after the handshake. */
  answer: Buffer;
  error?: string;
}

/**
 * A raw TLS 1.3 client from pod A's namespace (through the relay at `socketPath`) to a pod B inbound listener:
 * presents `leaf` (or no certificate), trusts `ca`, and once its handshake is done sends `request`. Resolves when the
 * server closes, or after `waitMs`. (In TLS 1.3 the server checks the client's certificate after the client has
 * finished: a refused client sees its handshake "succeed" and then an alert and the close, with no answer.)
 */
function tlsAttempt(
  socketPath: string,
  ca: string,
  leaf?: TestLeaf,
  request?: Buffer,
  waitMs = 3000,
): Promise<TlsAttempt> {
  return new Promise((resolve) => {
    const result: TlsAttempt = { secure: false, answer: Buffer.alloc(0) };
    const chunks: Buffer[] = [];
    const s = tls.connect({
      socket: net.connect(socketPath),
      ca,
      ...(leaf ? { cert: leaf.certPem, key: leaf.keyPem } : {}),
      minVersion: 'TLSv1.3',
      // The server's identity is a URI SAN, no host name: the suite checks its chain (ca) and its fingerprint.
      checkServerIdentity: () => undefined,
    });
    const timer = setTimeout(() => s.destroy(), waitMs);
    s.on('secureConnect', () => {
      result.secure = true;
      result.peerFingerprint = s.getPeerX509Certificate()?.fingerprint256;
      if (request) s.write(request);
    });
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('error', (e) => (result.error = e.message));
    s.on('close', () => {
      clearTimeout(timer);
      result.answer = Buffer.concat(chunks);
      resolve(result);
    });
  });
}

/** A plaintext connection from pod A's namespace: sends `bytes`, collects what comes back until close or `waitMs`. */
function plainAttempt(socketPath: string, bytes: Buffer, waitMs = 3000): Promise<{ answer: Buffer; closed: boolean }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let closed = false;
    const s = net.connect(socketPath, () => s.write(bytes));
    const timer = setTimeout(() => s.destroy(), waitMs);
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('end', () => (closed = true));
    s.on('error', () => (closed = true));
    s.on('close', () => {
      clearTimeout(timer);
      resolve({ answer: Buffer.concat(chunks), closed });
    });
  });
}

describe('mutual TLS between two pods: network namespaces, real sidecars, ZooKeeper (issue 18)', function () {
  this.timeout(180_000);
  const prefix = `mpmtls-${process.pid}`;
  let dir = '';
  let pki: TestPki | undefined;
  let otherPki: TestPki | undefined;
  let zk: RunningZooKeeper | undefined;
  let pair: NetnsPair | undefined;
  const relays: Relay[] = [];
  const sidecars = {} as Record<PodName, PodSidecar>;
  const children: JsonLinesChild[] = [];
  const leaves = {} as Record<PodName, TestLeaf>;
  let consumerApp: JsonLinesChild;
  let intruderApp: JsonLinesChild;
  let dubboConsumerApp: JsonLinesChild;
  let dubboIntruderApp: JsonLinesChild;
  let addressB = '';

  const sock = (name: string) => path.join(dir, `${name}.sock`);
  /** The pod a sidecar runs in. */
  const podOf = (name: PodName) => (name === 'consumer' || name === 'intruder' ? pair!.a : pair!.b);
  const stats = async (name: PodName) => (await getOverSocket(sock(`admin-${name}`), '/stats')).body;
  const admin = async (name: PodName, page: string) =>
    JSON.parse((await getOverSocket(sock(`admin-${name}`), page)).body) as Json;
  /** The sidecar's own copy of its certificate and key: rotation renames new files over these. */
  const certDir = (name: PodName) => path.join(dir, 'certs', name);

  function installLeaf(name: PodName, leaf: TestLeaf): void {
    const d = certDir(name);
    mkdirSync(d, { recursive: true });
    // Atomic replacement, as cert-manager and SPIRE write: the new file next to the old, then a rename over it.
    writeFileSync(path.join(d, 'key.pem.new'), leaf.keyPem, { mode: 0o600 });
    writeFileSync(path.join(d, 'cert.pem.new'), leaf.certPem);
    renameSync(path.join(d, 'key.pem.new'), path.join(d, 'key.pem'));
    renameSync(path.join(d, 'cert.pem.new'), path.join(d, 'cert.pem'));
  }

  function sidecarConfig(name: PodName, mode: 'strict' | 'permissive', authz: string[]): string {
    const p = PORTS[name];
    const ip = podOf(name) === pair!.a ? pair!.addressA : pair!.addressB;
    const file = path.join(dir, `${name}.yaml`);
    writeFileSync(
      file,
      [
        `# The ${name} sidecar of pod ${podOf(name)}.`,
        `node: { ip: ${ip} }`,
        `listeners: { outbound: "127.0.0.1:${p.outbound}", inbound: "0.0.0.0:${p.inbound}" }`,
        `admin: "127.0.0.1:${p.admin}"`,
        'log: { level: info }',
        'registries:',
        `  - { name: main, type: zookeeper, upstream: "127.0.0.1:${ZK_PORT}", facade: "127.0.0.1:${p.facade}" }`,
        'tls:',
        `  mode: ${mode}`,
        `  certFile: ${path.join(certDir(name), 'cert.pem')}`,
        `  keyFile: ${path.join(certDir(name), 'key.pem')}`,
        `  trustBundleFile: ${pki!.trustBundleFile}`,
        ...authz,
        '',
      ].join('\n'),
    );
    return file;
  }

  /** A child in `netns` printing JSON lines; kept for the teardown. */
  function podChild(what: string, netns: string, args: string[], stdin = false): JsonLinesChild {
    const child = spawnInNetns(netns, process.execPath, args, { stdio: [stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'] });
    const c = new JsonLinesChild(what, child);
    children.push(c);
    return c;
  }

  async function startConsumer(
    what: string,
    registry: string,
    iface: string,
    protocol: 'bolt' | 'dubbo' = 'bolt',
  ): Promise<JsonLinesChild> {
    const app = podChild(what, pair!.a, [POD_CONSUMER, registry, iface, protocol], true);
    await app.waitFor((m) => m.ready === true || m.error !== undefined, `${what} ready`, 60_000);
    const error = app.lines.find((m) => m.error !== undefined);
    if (error) throw new Error(`${what}: ${error.error}`);
    return app;
  }

  /** Sends one command to a pod consumer app and waits for the answer line that has `key`. */
  async function command(app: JsonLinesChild, cmd: object, key: string, timeoutMs = 60_000): Promise<Json> {
    const before = app.lines.length;
    app.child.stdin!.write(`${JSON.stringify(cmd)}\n`);
    const line = await app.waitFor((m) => m[key] !== undefined && app.lines.indexOf(m) >= before, key, timeoutMs);
    return line[key] as Json;
  }

  before(async function () {
    const why = await problem();
    if (why !== undefined) skipOrFail(this, `mTLS pods suite: ${why}`);
    dir = mkdtempSync(path.join(os.tmpdir(), 'meshport-mtls-'));
    pki = makeTestPki({ trustDomain: TD });
    otherPki = makeTestPki({ trustDomain: TD, name: 'other' });
    for (const name of Object.keys(PORTS) as PodName[]) {
      leaves[name] = pki.issue(ID[name]);
      installLeaf(name, leaves[name]);
    }

    zk = await startZooKeeper();
    pair = await createNetnsPair(prefix);
    addressB = pair.addressB;
    const zkPort = Number(zk.connectString.slice(zk.connectString.lastIndexOf(':') + 1));
    relays.push(await startRelay(undefined, [[sock('zk'), `127.0.0.1:${zkPort}`]]));
    relays.push(
      await startRelay(pair.a, [
        [`127.0.0.1:${ZK_PORT}`, sock('zk')],
        [sock('admin-consumer'), `127.0.0.1:${PORTS.consumer.admin}`],
        [sock('admin-intruder'), `127.0.0.1:${PORTS.intruder.admin}`],
        // From pod A across the veth to pod B's inbound listeners: the raw clients' way in.
        [sock('a-to-provider'), `${addressB}:${PORTS.provider.inbound}`],
        [sock('a-to-open'), `${addressB}:${PORTS.open.inbound}`],
      ]),
    );
    relays.push(
      await startRelay(pair.b, [
        [`127.0.0.1:${ZK_PORT}`, sock('zk')],
        [sock('admin-provider'), `127.0.0.1:${PORTS.provider.admin}`],
        [sock('admin-open'), `127.0.0.1:${PORTS.open.admin}`],
      ]),
    );

    const onlyConsumer = [
      'authz:',
      '  services:',
      `    "${SERVICE}": { allow: ["${ID.consumer}"] }`,
      `    "${DUBBO_SERVICE}": { allow: ["${ID.consumer}"] }`,
    ];
    const started = await Promise.all([
      startPodSidecar('provider', pair.b, sidecarConfig('provider', 'strict', onlyConsumer)),
      startPodSidecar('open', pair.b, sidecarConfig('open', 'permissive', [])),
      startPodSidecar('consumer', pair.a, sidecarConfig('consumer', 'strict', [])),
      startPodSidecar('intruder', pair.a, sidecarConfig('intruder', 'strict', [])),
    ]);
    for (const s of started) sidecars[s.name as PodName] = s;

    // The provider apps in pod B, publishing through their own sidecar's facade.
    for (const [name, iface, protocol] of [
      ['provider', IFACE, 'bolt'],
      ['provider', DUBBO_IFACE, 'dubbo'],
      ['open', OPEN_IFACE, 'bolt'],
    ] as const) {
      const app = podChild(`the ${name} app (${protocol})`, pair.b, [
        PROVIDER_APP,
        protocol,
        iface,
        `127.0.0.1:${PORTS[name].facade}`,
        name,
      ]);
      await app.waitFor((m) => typeof m.port === 'number', `the ${name} app's port`, 60_000);
    }
    consumerApp = await startConsumer('the consumer app', `127.0.0.1:${PORTS.consumer.facade}`, IFACE);
    intruderApp = await startConsumer('the intruder app', `127.0.0.1:${PORTS.intruder.facade}`, IFACE);
    dubboConsumerApp = await startConsumer(
      'the Dubbo consumer app',
      `127.0.0.1:${PORTS.consumer.facade}`,
      DUBBO_IFACE,
      'dubbo',
    );
    dubboIntruderApp = await startConsumer(
      'the Dubbo intruder app',
      `127.0.0.1:${PORTS.intruder.facade}`,
      DUBBO_IFACE,
      'dubbo',
    );
  });

  afterEach(function () {
    if (this.currentTest?.state !== 'failed') return;
    for (const s of Object.values(sidecars)) {
      const warnings = s.json.lines.filter((l) => typeof l.level === 'number' && l.level >= 40).slice(-30);
      if (warnings.length > 0)
        console.log(
          `      the ${s.name} sidecar's last warnings:\n${warnings.map((l) => `        ${JSON.stringify(l)}`).join('\n')}`,
        );
    }
  });

  after(async function () {
    this.timeout(60_000);
    for (const c of children.splice(0).reverse()) {
      c.child.stdin?.end();
      await c.kill();
    }
    await Promise.allSettled(Object.values(sidecars).map((s) => s.stop()));
    for (const r of relays.splice(0)) await r.stop();
    await pair?.destroy();
    await zk?.stop();
    pki?.cleanup();
    otherPki?.cleanup();
    if (dir) rmSync(dir, { recursive: true, force: true });
    if (typeof process.getuid === 'function' && process.getuid() === 0) {
      await deleteNetnsWithPrefix(prefix);
      assert.deepEqual(await netnsWithPrefix(prefix), [], 'network namespaces left behind');
    }
  });

  it('calls flow over mutual TLS: the veth carries TLS 1.3 records only, and each side saw the other', async () => {
    // Each sidecar runs on the engine asked for (a fallback to the other engine must not pass for it).
    const engine = process.env.MESHPORT_ENGINE;
    if (engine)
      for (const name of Object.keys(PORTS) as PodName[])
        assert.equal(
          counterValue(await stats(name), 'meshport_build_info', { engine }),
          1,
          `the ${name} sidecar runs the ${engine} engine`,
        );
    const routes = await admin('consumer', '/routes');
    const endpoints = (routes.clusters as Json[])
      .filter((c) => c.name === SERVICE)
      .flatMap((c) => c.endpoints as Json[]);
    assert.ok(endpoints.length > 0, `the consumer sidecar routes ${SERVICE}: ${JSON.stringify(routes)}`);
    for (const e of endpoints) {
      assert.equal(e.address, `${addressB}:${PORTS.provider.inbound}`, 'the endpoint is pod B across the veth');
      assert.equal(e.identity, ID.provider, "/routes shows the provider sidecar's published identity");
    }

    const before = { provider: await stats('provider'), consumer: await stats('consumer') };
    const capture = await startCapture(pair!.b, pair!.devB, path.join(dir, 'veth.pcap'));
    let called: Json;
    let dubboCalled: Json;
    try {
      called = await command(consumerApp, { call: 20, text: 'over-mtls' }, 'called');
      dubboCalled = await command(dubboConsumerApp, { call: 20, text: 'dubbo-over-mtls' }, 'called');
    } finally {
      await sleep(200);
      await capture.stop();
    }
    assert.equal(called.failed, 0, `every call answered: ${JSON.stringify(called)}`);
    assert.equal(called.ok, 20);
    assert.equal(called.answers[0], 'provider: over-mtls#0', 'the provider app answered');
    assert.equal(dubboCalled.failed, 0, `every Dubbo call answered: ${JSON.stringify(dubboCalled)}`);
    assert.equal(dubboCalled.answers[0], 'provider: dubbo-over-mtls#0', 'the Dubbo provider app answered');

    const streams = readPcapStreams(capture.file).filter(
      (s) => s.srcPort === PORTS.provider.inbound || s.dstPort === PORTS.provider.inbound,
    );
    assert.ok(
      streams.some((s) => s.dstPort === PORTS.provider.inbound && s.bytes.length > 0),
      'the capture has the calls',
    );
    let appData = 0;
    const versions = new Set<number>();
    for (const s of streams) {
      assert.equal(s.bytes.indexOf(IFACE), -1, `${s.key}: the interface name never in clear`);
      assert.equal(s.bytes.indexOf(DUBBO_IFACE), -1, `${s.key}: the Dubbo interface name never in clear`);
      // A connection opened before the capture is seen from some segment on, which may start inside a record: its
      // first bytes are checked only when its SYN is in the capture.
      const walk = walkTlsRecords(s.bytes);
      if (s.synSeen) {
        assert.ok(walk.wellFormed, `${s.key}: every byte in a TLS record (stopped at ${walk.badAt})`);
        assert.equal(s.bytes[0], 0x16, `${s.key}: starts with a TLS handshake record`);
        assert.ok(![0x01, 0x02].includes(s.bytes[0]!), `${s.key}: no Bolt magic`);
        assert.ok(s.bytes.readUInt16BE(0) !== 0xdabb, `${s.key}: no Dubbo magic`);
      }
      if (!walk.wellFormed) continue;
      appData += walk.byType[23] ?? 0;
      for (const v of walk.versions) versions.add(v);
    }
    console.log(
      `      capture on ${pair!.devB}: ${streams.length} TCP streams of the inbound port (${streams.filter((s) => s.synSeen).length} from their SYN), ${appData} application data records, record versions ${[...versions].map((v) => `0x${v.toString(16).padStart(4, '0')}`).join(' ')}`,
    );
    assert.ok(appData >= 40, `application data records (${appData}) carry the calls`);
    assert.ok(versions.has(0x0303), 'TLS records of version 0x0303');
    // All TCP on the veth in that window is the provider's inbound port: nothing went around TLS.
    const others = readPcapStreams(capture.file).filter(
      (s) => s.srcPort !== PORTS.provider.inbound && s.dstPort !== PORTS.provider.inbound,
    );
    assert.deepEqual(
      others.map((s) => s.key),
      [],
      'no other TCP stream crossed the veth',
    );

    const after = { provider: await stats('provider'), consumer: await stats('consumer') };
    const inbound = { direction: 'inbound' };
    const outbound = { direction: 'outbound' };
    assert.ok(
      counterValue(after.provider, 'meshport_tls_handshakes_total', inbound) >= 1,
      `the provider sidecar counts inbound handshakes:\n${after.provider}`,
    );
    assert.ok(
      counterValue(after.consumer, 'meshport_tls_handshakes_total', outbound) >= 1,
      'the consumer sidecar counts outbound handshakes',
    );
    assert.equal(
      counterValue(after.provider, 'meshport_calls_denied_total') -
        counterValue(before.provider, 'meshport_calls_denied_total'),
      0,
      'the policy let the consumer identity in (it lists only that one)',
    );
  });

  it('an identity the policy does not list is denied with the protocol error, counted, the connection kept', async () => {
    const before = await stats('provider');
    const called = await command(intruderApp, { call: 3, text: 'let-me-in' }, 'called');
    assert.equal(called.ok, 0, `no call of the intruder got through: ${JSON.stringify(called)}`);
    assert.equal(called.failed, 3);
    assert.match(called.errors[0], new RegExp(`meshport: ${ID.intruder} may not call ${IFACE.replace(/\./g, '\\.')}`));
    const after = await stats('provider');
    assert.equal(
      counterValue(after, 'meshport_calls_denied_total', { service: SERVICE }) -
        counterValue(before, 'meshport_calls_denied_total', { service: SERVICE }),
      3,
      `meshport_calls_denied_total{service="${SERVICE}"} counts them`,
    );

    // Dubbo: the same policy on its own key, the denial as Dubbo's BAD_REQUEST answer.
    const dubboCalled = await command(dubboIntruderApp, { call: 2, text: 'let-me-in' }, 'called');
    assert.equal(dubboCalled.ok, 0, `no Dubbo call of the intruder got through: ${JSON.stringify(dubboCalled)}`);
    assert.match(dubboCalled.errors[0], new RegExp(`${ID.intruder} may not call`));
    const afterDubbo = await stats('provider');
    assert.equal(
      counterValue(afterDubbo, 'meshport_calls_denied_total', { service: DUBBO_SERVICE }) -
        counterValue(before, 'meshport_calls_denied_total', { service: DUBBO_SERVICE }),
      2,
      `meshport_calls_denied_total{service="${DUBBO_SERVICE}"} counts them`,
    );

    // The same from a raw TLS client with the intruder's certificate: Bolt SERVER_EXCEPTION, and the connection open.
    const raw = await tlsAttempt(
      sock('a-to-provider'),
      pki!.caPem,
      leaves.intruder,
      boltRequest(7, SERVICE, 'x'),
      1500,
    );
    assert.ok(raw.secure, `the handshake succeeds (${raw.error})`);
    assert.equal(
      boltResponseStatus(raw.answer),
      0x02,
      `a Bolt SERVER_EXCEPTION answer (${raw.answer.toString('latin1')})`,
    );
    assert.ok(raw.answer.includes(`${ID.intruder} may not call`), 'the answer names the caller');
    assert.equal(raw.answer.readUInt32BE(5), 7, 'to the request id asked');
    assert.equal(raw.error, undefined, 'the connection was not torn down (closed by the client after 1.5 s)');
  });

  const refusals: { title: string; reason: string; leaf: () => TestLeaf | undefined; ca?: () => string }[] = [
    { title: 'no client certificate', reason: 'no-client-cert', leaf: () => undefined },
    {
      title: 'a certificate of another CA',
      reason: 'untrusted',
      leaf: () => otherPki!.issue(ID.consumer),
    },
    {
      title: 'an expired certificate of the right CA',
      reason: 'expired',
      leaf: () => pki!.issue(ID.consumer, { expired: true }),
    },
  ];
  for (const r of refusals) {
    it(`a client with ${r.title} is refused before any call, counted as ${r.reason}`, async () => {
      const before = await stats('provider');
      const attempt = await tlsAttempt(sock('a-to-provider'), pki!.caPem, r.leaf(), boltRequest(1, SERVICE, 'x'));
      assert.equal(attempt.answer.length, 0, `no answer (${attempt.answer.toString('latin1')})`);
      assert.ok(attempt.error !== undefined || !attempt.secure || attempt.answer.length === 0, 'refused');
      const after = await stats('provider');
      const labels = { direction: 'inbound', reason: r.reason };
      assert.equal(
        counterValue(after, 'meshport_tls_handshake_failures_total', labels) -
          counterValue(before, 'meshport_tls_handshake_failures_total', labels),
        1,
        `meshport_tls_handshake_failures_total{direction="inbound",reason="${r.reason}"} counts it:\n${after
          .split('\n')
          .filter((l) => l.startsWith('meshport_tls'))
          .join('\n')}`,
      );
    });
  }

  it('the expired certificate is refused with a clear log line', async () => {
    const expired = pki!.issue(ID.consumer, { expired: true });
    const attempt = await tlsAttempt(sock('a-to-provider'), pki!.caPem, expired, boltRequest(1, SERVICE, 'x'));
    assert.equal(attempt.answer.length, 0, 'refused');
    let lines: Json[] = [];
    for (let i = 0; i < 50 && lines.length === 0; i++) {
      lines = logLines(sidecars.provider, /expired/i);
      if (lines.length === 0) await sleep(100);
    }
    assert.ok(
      lines.length > 0,
      `the provider sidecar logged the expired certificate; its warnings: ${JSON.stringify(sidecars.provider.json.lines.filter((l) => l.level >= 40).slice(-10))}`,
    );
    const text = JSON.stringify(lines[0]);
    console.log(`      the provider logged: ${text}`);
    assert.ok(lines[0].level >= 30, 'at info level or above');
    assert.match(text, /handshake|certificate|TLS/i, `it is about the TLS handshake: ${text}`);
    assert.match(text, /refused|rejected|failed/i, `it says the caller was refused: ${text}`);
    assert.ok(text.includes(pair!.addressA), `it names the caller's address (${pair!.addressA}): ${text}`);
  });

  it('a sidecar whose own certificate has expired says so in its log', async () => {
    const expired = pki!.issue(`spiffe://${TD}/ns/default/sa/stale`, { expired: true });
    const d = path.join(dir, 'certs', 'stale');
    mkdirSync(d, { recursive: true });
    writeFileSync(path.join(d, 'cert.pem'), expired.certPem);
    writeFileSync(path.join(d, 'key.pem'), expired.keyPem, { mode: 0o600 });
    const file = path.join(dir, 'stale.yaml');
    writeFileSync(path.join(dir, 'stale-routes.json'), JSON.stringify({ services: {} }));
    writeFileSync(
      file,
      [
        `node: { ip: ${pair!.addressA} }`,
        'listeners: { outbound: "127.0.0.1:21201", inbound: "0.0.0.0:21200" }',
        'admin: "127.0.0.1:21202"',
        'log: { level: info }',
        'registries:',
        `  - { name: static, type: file, upstream: "${path.join(dir, 'stale-routes.json')}" }`,
        'tls:',
        '  mode: strict',
        `  certFile: ${path.join(d, 'cert.pem')}`,
        `  keyFile: ${path.join(d, 'key.pem')}`,
        `  trustBundleFile: ${pki!.trustBundleFile}`,
        '',
      ].join('\n'),
    );
    const child = podChild('the stale sidecar', pair!.a, [BIN, 'sidecar', '--config', file]);
    // Refusing to start, or starting and warning: either way its output names the expiry.
    const exitedOrWarned = await Promise.race([
      child.exited.then(() => 'exited'),
      child.waitFor((m) => /expired/i.test(JSON.stringify(m)), 'an expiry line', 15_000).then(() => 'warned'),
    ]).catch((e: Error) => e.message);
    await child.kill();
    const said = child
      .output()
      .split('\n')
      .find((l) => /expired/i.test(l));
    console.log(`      the sidecar ${exitedOrWarned}: ${said?.slice(0, 300)}`);
    assert.match(
      child.output(),
      /expired/i,
      `its output says the certificate expired (${exitedOrWarned}):\n${child.output()}`,
    );
  });

  it('permissive takes a plaintext caller on the TLS port; strict refuses it, counted plaintext-refused', async () => {
    // A consumer app that skips its sidecar and calls pod B's inbound listeners in plaintext from pod A.
    const open = await startConsumer(
      'a plaintext caller of the open pod',
      `direct:${addressB}:${PORTS.open.inbound}`,
      OPEN_IFACE,
    );
    const called = await command(open, { call: 3, text: 'plain' }, 'called');
    assert.equal(called.failed, 0, `permissive answered the plaintext caller: ${JSON.stringify(called)}`);
    assert.equal(called.answers[0], 'open: plain#0');
    open.child.stdin!.end();
    await open.kill();

    const before = await stats('provider');
    const attempt = await plainAttempt(sock('a-to-provider'), boltRequest(1, SERVICE, 'x'));
    assert.equal(attempt.answer.length, 0, 'strict: no answer to plaintext');
    assert.ok(attempt.closed, 'strict: the connection is closed');
    const after = await stats('provider');
    const labels = { direction: 'inbound', reason: 'plaintext-refused' };
    assert.equal(
      counterValue(after, 'meshport_tls_handshake_failures_total', labels) -
        counterValue(before, 'meshport_tls_handshake_failures_total', labels),
      1,
      'counted as plaintext-refused',
    );
    // And permissive over raw bytes too: the open pod answers a plaintext Bolt frame.
    const plain = await plainAttempt(sock('a-to-open'), boltRequest(5, `${OPEN_IFACE}:1.0`, 'x'), 1500);
    assert.ok(boltResponseStatus(plain.answer) !== undefined, 'permissive: a Bolt answer to plaintext');
  });

  it('an endpoint that presents another identity than the registry published is refused, counted wrong-identity', async () => {
    // The provider pod's own registration, copied to another interface at the open pod's address: the registry
    // says the provider identity serves there, but the open sidecar's certificate carries its own.
    const client = await connectZooKeeper(zk!.connectString);
    try {
      const ls = (p: string) =>
        new Promise<string[]>((resolve, reject) =>
          client.getChildren(p, undefined, (e, names) => (e ? reject(e) : resolve(names))),
        );
      const published = (await ls(`/sofa-rpc/${IFACE}/providers`)).map((n) => decodeURIComponent(n));
      assert.equal(published.length, 1, `one provider of ${IFACE} upstream: ${published.join(' ')}`);
      assert.ok(
        published[0]!.includes(`meshport.id=${encodeURIComponent(ID.provider)}`),
        `the provider sidecar published its identity: ${published[0]}`,
      );
      const spoofed = published[0]!
        .split(IFACE)
        .join(SPOOFED_IFACE)
        .replace(`${addressB}:${PORTS.provider.inbound}`, `${addressB}:${PORTS.open.inbound}`);
      assert.ok(spoofed.includes(`${addressB}:${PORTS.open.inbound}`), spoofed);
      await new Promise<void>((resolve, reject) =>
        client.mkdirp(
          `/sofa-rpc/${SPOOFED_IFACE}/providers/${encodeURIComponent(spoofed)}`,
          null,
          zookeeper.CreateMode.PERSISTENT,
          (e) => (e ? reject(e) : resolve()),
        ),
      );
    } finally {
      client.close();
    }
    const before = await stats('consumer');
    const spoofedApp = await startConsumer(
      'a consumer of the spoofed entry',
      `127.0.0.1:${PORTS.consumer.facade}`,
      SPOOFED_IFACE,
    );
    const called = await command(spoofedApp, { call: 2, text: 'who-are-you' }, 'called');
    spoofedApp.child.stdin!.end();
    await spoofedApp.kill();
    assert.equal(called.ok, 0, `no call reached the impostor: ${JSON.stringify(called)}`);
    const after = await stats('consumer');
    const labels = { direction: 'outbound', reason: 'wrong-identity' };
    assert.ok(
      counterValue(after, 'meshport_tls_handshake_failures_total', labels) -
        counterValue(before, 'meshport_tls_handshake_failures_total', labels) >=
        1,
      `meshport_tls_handshake_failures_total{direction="outbound",reason="wrong-identity"} counts it:\n${after
        .split('\n')
        .filter((l) => l.startsWith('meshport_tls'))
        .join('\n')}`,
    );
    console.log(`      the consumer app was told: ${called.errors[0]}`);
  });

  it('certificates replaced under a steady call stream: no call lost, new connections present the new certificate', async () => {
    const streaming = await command(consumerApp, { stream: 4 }, 'streaming');
    assert.equal(streaming, true);
    await sleep(1000);
    const oldExpiry = (await admin('consumer', '/config')).tls?.certificateExpires;
    const fresh = {
      provider: pki!.issue(ID.provider, { days: 60 }),
      consumer: pki!.issue(ID.consumer, { days: 60 }),
    };
    installLeaf('provider', fresh.provider);
    installLeaf('consumer', fresh.consumer);
    for (const name of ['provider', 'consumer'] as const)
      await sidecars[name].json.waitFor((m) => m.msg === 'certificate rotated', `the ${name}'s certificate rotated`);
    const want = new X509Certificate(fresh.provider.certPem).fingerprint256;
    const old = new X509Certificate(leaves.provider.certPem).fingerprint256;
    let seen: string | undefined;
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline) {
      seen = (await tlsAttempt(sock('a-to-provider'), pki!.caPem, leaves.consumer, undefined, 300)).peerFingerprint;
      if (seen === want) break;
      await sleep(200);
    }
    await sleep(1000);
    const stopped = await command(consumerApp, { stop: true }, 'stopped');
    assert.notEqual(seen, old, 'the provider no longer presents the old certificate to a new connection');
    assert.equal(seen, want, 'a new connection gets the new certificate');
    const newExpiry = (await admin('consumer', '/config')).tls?.certificateExpires;
    assert.notEqual(newExpiry, oldExpiry, `the consumer sidecar took its new certificate (/config ${newExpiry})`);
    console.log(
      `      rotation under load: ${stopped.ok} calls answered, ${stopped.failed} failed in ${stopped.elapsedMs} ms (4 callers)`,
    );
    assert.equal(stopped.failed, 0, `no call lost or failed during the rotation: ${JSON.stringify(stopped)}`);
    assert.ok(stopped.ok > 100, `the stream went on (${stopped.ok} calls in ${stopped.elapsedMs} ms)`);
    // And a new call after the rotation, over connections made with the new certificates.
    const called = await command(consumerApp, { call: 5, text: 'after' }, 'called');
    assert.equal(called.failed, 0, JSON.stringify(called));
  });
  it('a policy changed in the config file applies on SIGHUP: the intruder let in, and out again', async () => {
    const file = path.join(dir, 'provider.yaml');
    const original = readFileSync(file, 'utf8');
    const reloads = () => sidecars.provider.json.lines.filter((l) => l.msg === 'reloaded').length;
    const reload = async (text: string) => {
      const seen = reloads();
      writeFileSync(file, text);
      sidecars.provider.json.child.kill('SIGHUP');
      for (let i = 0; i < 100 && reloads() === seen; i++) await sleep(100);
      assert.ok(reloads() > seen, `the provider sidecar logged 'reloaded' after SIGHUP`);
    };
    const allowBoth = original.replace(`allow: ["${ID.consumer}"] }`, `allow: ["${ID.consumer}", "${ID.intruder}"] }`);
    assert.notEqual(allowBoth, original);
    await reload(allowBoth);
    const letIn = await command(intruderApp, { call: 3, text: 'now-allowed' }, 'called');
    assert.equal(letIn.failed, 0, `the intruder is allowed now: ${JSON.stringify(letIn)}`);
    assert.equal(letIn.answers[0], 'provider: now-allowed#0');
    await reload(original);
    const shutOut = await command(intruderApp, { call: 2, text: 'again' }, 'called');
    assert.equal(shutOut.ok, 0, `and denied again: ${JSON.stringify(shutOut)}`);
    assert.match(shutOut.errors[0], /may not call/);
  });
});
