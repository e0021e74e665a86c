// An upstream registry that cannot be reached is never invisible (issue 16): a warning at a bounded pace, its state on
// the admin /registries page and in /stats, /ready held until it has connected once and kept through a later outage,
// and the mesh API answering a subscribe it cannot answer truthfully with an error at once. Also the rest of the
// admin surface the sidecar adds: the whole effective config with secrets redacted, process, build, reload and
// capture metrics. Runs on the engine MESHPORT_ENGINE names, like every suite.

import { strict as assert } from 'node:assert';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pino from 'pino';
import { loadConfig, Sidecar } from '@meshport/sidecar';
import { eventually, freePorts, type RunningZooKeeper, startZooKeeper } from '@meshport/testkit';

type Log = { level: number; msg: string; [key: string]: unknown };

interface Started {
  sidecar: Sidecar;
  logs: Log[];
  file: string;
  admin(page: string): Promise<{ status: number; text: string }>;
}

describe('registry health: an unreachable upstream registry is seen, and /ready and the facades tell the truth', function () {
  this.timeout(90_000);
  const dirs: string[] = [];
  const sidecars: Sidecar[] = [];
  const servers: RunningZooKeeper[] = [];

  afterEach(async () => {
    await Promise.allSettled(sidecars.splice(0).map((s) => s.stop(0)));
    await Promise.allSettled(servers.splice(0).map((s) => s.stop()));
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  async function start(lines: string[]): Promise<Started> {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'meshport-health-'));
    dirs.push(dir);
    const file = path.join(dir, 'meshport.yaml');
    writeFileSync(file, lines.join('\n') + '\n');
    const logs: Log[] = [];
    const logger = pino({ level: 'info' }, { write: (line: string) => void logs.push(JSON.parse(line) as Log) });
    const sidecar = new Sidecar(await loadConfig(file), { logger });
    sidecars.push(sidecar);
    await sidecar.start();
    const admin = async (page: string) => {
      const res = await fetch(`http://127.0.0.1:${sidecar.address('admin').port}${page}`);
      return { status: res.status, text: await res.text() };
    };
    return { sidecar, logs, file, admin };
  }

  const header = [
    'node: { ip: 127.0.0.1 }',
    'listeners: { outbound: "127.0.0.1:0", inbound: "127.0.0.1:0" }',
    'admin: "127.0.0.1:0"',
  ];

  interface RegistriesPage {
    registries: {
      name: string;
      type: string;
      state: string;
      since: string;
      lastConnected?: string;
      ready: boolean;
      via?: string;
      lastError?: { message: string; code?: string };
    }[];
  }

  it('ZooKeeper refusing: warned, /registries connecting with the error, /ready 503, mesh subscribe fails fast; up: ready; down again: still ready', async () => {
    // A real ZooKeeper on a port chosen first: stopped (refusing) while the sidecar starts, back after a while.
    const zk = await startZooKeeper();
    servers.push(zk);
    let outage!: () => void;
    const down = new Promise<void>((resolve) => (outage = resolve));
    const back = zk.restart({ downMs: 12_000, onStopped: () => outage() });
    await down;

    const { sidecar, logs, admin } = await start([
      ...header,
      'registries:',
      `  - { name: zk, type: zookeeper, upstream: "${zk.connectString}" }`,
      '  - { name: mesh, type: sofa-mesh, via: zk, facade: "127.0.0.1:0", app: "127.0.0.1:12200" }',
    ]);

    const warning = await eventually('a warning that the registry cannot connect', async () =>
      logs.find((l) => l.msg === 'registry cannot connect' && l.registry === 'zk'),
    );
    assert.equal(warning.level, 40);
    assert.match(String(warning.error), /ECONNREFUSED/);

    const page = JSON.parse((await admin('/registries')).text) as RegistriesPage;
    const zkState = page.registries.find((r) => r.name === 'zk')!;
    assert.equal(zkState.state, 'connecting');
    assert.equal(zkState.ready, false);
    assert.equal(zkState.lastError?.code, 'ECONNREFUSED');
    assert.equal(zkState.lastConnected, undefined);
    const mesh = page.registries.find((r) => r.name === 'mesh')!;
    assert.deepEqual([mesh.via, mesh.state], ['zk', 'connecting']);

    const ready = await admin('/ready');
    assert.equal(ready.status, 503);
    assert.match(ready.text, /zk \(connecting: .*ECONNREFUSED/);
    assert.match((await admin('/stats')).text, /^meshport_registry_up\{registry="zk",type="zookeeper"\} 0$/m);

    // The mesh API: an error at once, not 30 s and then {"success":true,"datas":[]}.
    const { host, port } = sidecar.address({ facade: 'mesh' });
    const subscribe = JSON.stringify({
      serviceName: 'com.example.health.Echo:1.0',
      protocolType: 'bolt',
      vipEnforce: false,
      vipOnly: false,
      localCloudFirst: false,
      properties: {},
    });
    const t0 = Date.now();
    const res = await fetch(`http://${host}:${port}/services/subscribe`, {
      method: 'POST',
      headers: { 'content-type': 'text/plain' },
      body: subscribe,
    });
    const answer = (await res.json()) as { success: boolean; errorMessage?: string; datas?: string[] };
    assert.ok(Date.now() - t0 < 2_000, `answered in ${Date.now() - t0} ms`);
    assert.equal(answer.success, false);
    assert.match(answer.errorMessage!, /not answered|disconnected/);
    // Asked again while still down: still an error, not the empty list of the subscription under way.
    const again = (await (
      await fetch(`http://${host}:${port}/services/subscribe`, { method: 'POST', body: subscribe })
    ).json()) as { success: boolean };
    assert.equal(again.success, false);
    // Bounded pace: one warning so far for this outage, however many times the client retried.
    assert.equal(logs.filter((l) => l.registry === 'zk' && l.level === 40 && /registry/.test(l.msg)).length, 1);

    await back;
    await eventually(
      '/ready to turn 200 once ZooKeeper is up',
      async () => ((await admin('/ready')).status === 200 ? true : undefined),
      30_000,
    );
    const up = (JSON.parse((await admin('/registries')).text) as RegistriesPage).registries.find(
      (r) => r.name === 'zk',
    )!;
    assert.equal(up.state, 'connected');
    assert.ok(up.lastConnected);
    assert.ok(logs.some((l) => l.msg === 'registry connected again' && l.registry === 'zk'));
    const stats = (await admin('/stats')).text;
    assert.match(stats, /^meshport_registry_up\{registry="zk",type="zookeeper"\} 1$/m);
    assert.match(
      stats,
      /^meshport_registry_state_changes_total\{registry="zk",type="zookeeper",state="connected"\} 1$/m,
    );
    assert.match(stats, /^meshport_registry_last_connected_timestamp_seconds\{registry="zk",type="zookeeper"\} \d+/m);
    // Subscribing now gets the registry's answer (no provider: an empty list is the truth here).
    const answered = (await (
      await fetch(`http://${host}:${port}/services/subscribe`, { method: 'POST', body: subscribe })
    ).json()) as { success: boolean; datas: string[] };
    assert.deepEqual([answered.success, answered.datas], [true, []]);

    await zk.stop();
    servers.splice(0);
    const lost = await eventually(
      'a warning that the connection is lost',
      async () => logs.find((l) => l.msg.startsWith('registry connection lost')),
      30_000,
    );
    assert.equal(lost.registry, 'zk');
    const outageState = (JSON.parse((await admin('/registries')).text) as RegistriesPage).registries.find(
      (r) => r.name === 'zk',
    )!;
    assert.equal(outageState.state, 'reconnecting');
    assert.ok(Date.parse(outageState.since) > Date.parse(up.lastConnected!));
    assert.equal((await admin('/ready')).status, 200, 'ready on the last known routes through the outage');
    // The subscribed service keeps its last answer through the outage.
    const kept = (await (
      await fetch(`http://${host}:${port}/services/subscribe`, { method: 'POST', body: subscribe })
    ).json()) as { success: boolean };
    assert.equal(kept.success, true);

    // Draining is 503 as before, whatever the registries say.
    void sidecar.stop(2_000);
    await sleep(50);
    assert.equal((await admin('/ready').catch(() => ({ status: 503 }))).status, 503);
  });

  it('/config shows the whole effective config with secrets redacted; /stats has process, build, registry, reload and capture metrics', async () => {
    const [refused, outboundCapture, inboundCapture] = await freePorts(3);
    const { admin, file, sidecar } = await start([
      ...header,
      'registries:',
      `  - { name: cache, type: redis, upstream: "redis://:s3cret@127.0.0.1:${refused}" }`,
      `hijack: { mode: redirect, outboundCapturePort: ${outboundCapture}, inboundCapturePort: ${inboundCapture} }`,
    ]);

    const configText = (await admin('/config')).text;
    assert.doesNotMatch(configText, /s3cret/);
    const config = JSON.parse(configText) as Record<string, unknown> & {
      registries: { name: string; upstream: string }[];
      router: { engine: string; listeners: Record<string, unknown> };
      hijack: { mode: string };
      node: { ip: string };
    };
    for (const key of ['node', 'listeners', 'admin', 'registries', 'hijack', 'router', 'log'])
      assert.ok(key in config, `/config has ${key}`);
    assert.equal(config.registries[0]!.upstream, `redis://:***@127.0.0.1:${refused}`);
    assert.equal(config.node.ip, '127.0.0.1');
    assert.equal(config.hijack.mode, 'redirect');
    assert.equal(config.router.engine, process.env.MESHPORT_ENGINE === 'js' ? 'js' : 'native');
    assert.ok(config.router.listeners.outbound);

    // A captured connection with no original destination (no kernel rule sent it) is refused, and counted.
    await new Promise<void>((resolve) => {
      const s = net.connect(outboundCapture, '127.0.0.1', () => s.write('x'));
      s.on('close', () => resolve());
      s.on('error', () => resolve());
    });

    const registries = JSON.parse((await admin('/registries')).text) as RegistriesPage;
    assert.deepEqual(
      registries.registries.map((r) => [r.name, r.type, r.state]),
      [['cache', 'redis', 'connecting']],
    );
    assert.doesNotMatch(JSON.stringify(registries), /s3cret/);

    assert.equal((await sidecar.reload(file)).ok, true);
    writeFileSync(file, 'registries: [\n');
    assert.equal((await sidecar.reload(file)).ok, false);

    const stats = await eventually('a connection error counted', async () => {
      const text = (await admin('/stats')).text;
      return /^meshport_registry_connection_errors_total\{registry="cache",type="redis"\} [1-9]/m.test(text)
        ? text
        : undefined;
    });
    assert.match(stats, /^process_cpu_user_seconds_total \d/m);
    assert.match(stats, /^nodejs_eventloop_lag_seconds /m);
    assert.match(
      stats,
      new RegExp(
        `^meshport_build_info\\{version="[^"]+",engine="${config.router.engine}",node="${process.version}"\\} 1$`,
        'm',
      ),
    );
    assert.match(stats, /^meshport_registry_up\{registry="cache",type="redis"\} 0$/m);
    assert.match(stats, /^meshport_registry_state\{registry="cache",type="redis",state="connecting"\} 1$/m);
    assert.match(stats, /^meshport_registry_connection_errors_total\{registry="cache",type="redis"\} [1-9]/m);
    assert.match(stats, /^meshport_reloads_total\{result="ok"\} 1$/m);
    assert.match(stats, /^meshport_reloads_total\{result="failed"\} 1$/m);
    assert.match(stats, /^meshport_capture_connections_total\{listener="outboundCapture",outcome="refused"\} 1$/m);
    assert.match(stats, /^meshport_capture_connections_total\{listener="outboundCapture",outcome="routed"\} 0$/m);
    assert.match(
      stats,
      /^meshport_capture_connections_total\{listener="inboundCapture",outcome="passed_through"\} 0$/m,
    );
    // The router's own metrics are still there.
    assert.match(stats, /^# TYPE meshport_connections_total counter$/m);
  });

  it('a ZooKeeper host name that does not resolve is warned about with the resolver error', async () => {
    // `.invalid` never resolves (RFC 6761); nothing but a name lookup leaves the host.
    const { logs, admin } = await start([
      ...header,
      'registries:',
      '  - { name: zk, type: zookeeper, upstream: "zk-1.invalid:2181" }',
    ]);
    const warning = await eventually('a warning naming the lookup failure', async () =>
      logs.find((l) => l.msg === 'registry cannot connect'),
    );
    assert.match(String(warning.error), /ENOTFOUND|EAI_AGAIN/);
    assert.equal((await admin('/ready')).status, 503);
  });

  it('a registry that is down holds the start for one connection wait, not one per service, and /ready names what it waits for', async () => {
    const [refused] = await freePorts(1);
    const services = ['com.example.A:1.0', 'com.example.B:1.0', 'com.example.C:1.0', 'com.example.D:1.0'];
    const t0 = Date.now();
    const { admin } = await start([
      ...header,
      'registries:',
      `  - { name: zk, type: zookeeper, upstream: "127.0.0.1:${refused}", services: [${services.join(', ')}], options: { sessionTimeoutMs: 2000 } }`,
    ]);
    const took = Date.now() - t0;
    assert.ok(took < 5_000, `start took ${took} ms (one 2 s wait, not four)`);
    const zk = (
      JSON.parse((await admin('/registries')).text) as {
        registries: { state: string; services: { routed: string[]; waiting: string[] } }[];
      }
    ).registries[0]!;
    assert.equal(zk.state, 'connecting');
    assert.deepEqual(zk.services, { routed: services, waiting: services });
    const ready = await admin('/ready');
    assert.equal(ready.status, 503);
    assert.match(ready.text, /zk \(connecting: connect ECONNREFUSED/);
  });

  it('a facade with no session of its own shows its upstream as probed, then as the apps dial it', async () => {
    const [zkPort, redisPort] = await freePorts(2);
    const { logs, admin, sidecar } = await start([
      ...header,
      'registries:',
      `  - { name: zkf, type: zookeeper, upstream: "127.0.0.1:${zkPort}", facade: "127.0.0.1:0" }`,
      `  - { name: redisf, type: redis, upstream: "127.0.0.1:${redisPort}", facade: "127.0.0.1:0" }`,
    ]);
    await eventually('warnings for both', async () =>
      logs.filter((l) => l.msg === 'registry cannot connect').length === 2 ? true : undefined,
    );
    const page = JSON.parse((await admin('/registries')).text) as RegistriesPage;
    assert.deepEqual(
      page.registries.map((r) => [r.name, r.state, r.lastError?.code]),
      [
        ['zkf', 'connecting', 'ECONNREFUSED'],
        ['redisf', 'connecting', 'ECONNREFUSED'],
      ],
    );
    assert.equal((await admin('/ready')).status, 503);

    // Something accepts where the upstreams are: the probes see it, and the sidecar is ready.
    const listeners = await Promise.all(
      [zkPort, redisPort].map(
        (port) =>
          new Promise<net.Server>((resolve) => {
            const server = net.createServer((s) => s.destroy()).listen(port, '127.0.0.1', () => resolve(server));
          }),
      ),
    );
    try {
      await eventually('/ready 200 once both upstreams accept', async () =>
        (await admin('/ready')).status === 200 ? true : undefined,
      );
      const up = JSON.parse((await admin('/registries')).text) as RegistriesPage;
      assert.deepEqual(
        up.registries.map((r) => [r.name, r.state]),
        [
          ['zkf', 'connected'],
          ['redisf', 'connected'],
        ],
      );
    } finally {
      await Promise.all(listeners.map((l) => new Promise((r) => l.close(r))));
    }
    // Gone again: an app's dial through the facade finds it refused, which the page shows; /ready stays 200.
    const { port } = sidecar.address({ facade: 'redisf' });
    await new Promise<void>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => s.write('*1\r\n$4\r\nPING\r\n'));
      s.on('close', () => resolve());
      s.on('error', () => resolve());
    });
    const down = (JSON.parse((await admin('/registries')).text) as RegistriesPage).registries.find(
      (r) => r.name === 'redisf',
    )!;
    assert.equal(down.state, 'reconnecting');
    assert.equal((await admin('/ready')).status, 200);
  });

  it('a sidecar whose registries are all reachable is ready once started (a file registry)', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'meshport-health-file-'));
    dirs.push(dir);
    const services = path.join(dir, 'services.json');
    writeFileSync(
      services,
      JSON.stringify({
        services: { 'com.example.A:1.0': ['bolt://127.0.0.1:12200?interface=com.example.A&version=1.0'] },
      }),
    );
    const { admin } = await start([
      ...header,
      'registries:',
      `  - { name: static, type: file, upstream: "${services}" }`,
    ]);
    assert.equal((await admin('/ready')).status, 200);
    const page = JSON.parse((await admin('/registries')).text) as {
      registries: { name: string; state: string; ready: boolean; services: unknown }[];
    };
    assert.deepEqual(
      page.registries.map((r) => [r.name, r.state, r.ready, r.services]),
      [['static', 'connected', true, { routed: ['com.example.A:1.0'], waiting: [] }]],
    );
    assert.equal((await admin('/nosuch')).status, 404);
    assert.match((await admin('/nosuch')).text, /\/registries/);
  });
});
