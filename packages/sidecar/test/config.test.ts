// meshport.yaml as an operator writes it: defaults, every key, and errors that name the key and the line.

import { strict as assert } from 'node:assert';
import path from 'node:path';
import { loadConfig, parseConfig, SIDECAR_DEFAULTS } from '../src/config';

function configError(text: string): string {
  try {
    parseConfig(text, '/etc/meshport/meshport.yaml');
  } catch (err) {
    assert.equal((err as { code?: string }).code, 'MESHPORT_CONFIG_INVALID');
    return (err as Error).message;
  }
  assert.fail('expected a config error');
}

describe('sidecar config', () => {
  it('an empty config runs on the embedded file registry next to the config, with loopback listeners', () => {
    const config = parseConfig('', '/etc/meshport/meshport.yaml');
    assert.deepEqual(config.listeners, {
      outbound: SIDECAR_DEFAULTS.outbound,
      inbound: SIDECAR_DEFAULTS.inbound,
      // The app's listener takes loopback callers only; the inbound one is where other pods call.
      allowRemote: { outbound: false, inbound: true },
    });
    assert.deepEqual(config.admin, SIDECAR_DEFAULTS.admin);
    assert.equal(config.node.ip, '127.0.0.1');
    assert.deepEqual(config.registries, [
      { name: 'file', type: 'file', upstream: '/etc/meshport/meshport-registry.json', options: {} },
    ]);
  });

  it('reads every key of a full config', () => {
    const config = parseConfig(
      [
        'node:',
        '  ip: 10.0.0.5',
        'listeners:',
        '  outbound: 127.0.0.1:12220',
        '  inbound: 0.0.0.0:12201',
        'admin: 127.0.0.1:15000',
        'router:',
        '  boltDefaultTimeoutMs: 5000',
        'log:',
        '  level: warn',
        'registries:',
        '  - name: zk',
        '    type: zookeeper',
        '    upstream: 10.0.0.1:2181,10.0.0.2:2181/sofa',
        '    facade: 127.0.0.1:2181',
        '    options: { layout: dubbo }',
        '  - name: mesh',
        '    type: sofa-mesh',
        '    via: zk',
        '  - name: static',
        '    type: file',
        '    upstream: routes.json',
        '    services: [com.example.Echo:1.0]',
        '  - name: mine',
        '    type: ./plugins/dir',
        '    upstream: /var/run/registry',
      ].join('\n'),
      '/etc/meshport/meshport.yaml',
    );
    assert.equal(config.node.ip, '10.0.0.5');
    assert.deepEqual(config.listeners.inbound, { host: '0.0.0.0', port: 12201 });
    assert.deepEqual(config.router, { boltDefaultTimeoutMs: 5000 });
    assert.equal(config.log.level, 'warn');
    assert.equal(config.hijack, undefined);
    assert.deepEqual(parseConfig('hijack: { mode: connect-hook, sockmap: true }').hijack, {
      mode: 'connect-hook',
      outboundCapturePort: 15001,
      inboundCapturePort: 15006,
      uid: 1337,
      sockmap: true,
    });
    const [zk, mesh, file, plugin] = config.registries;
    assert.deepEqual(zk, {
      name: 'zk',
      type: 'zookeeper',
      upstream: '10.0.0.1:2181,10.0.0.2:2181/sofa',
      facade: { host: '127.0.0.1', port: 2181 },
      via: undefined,
      app: undefined,
      services: undefined,
      options: { layout: 'dubbo' },
    });
    assert.deepEqual(mesh!.facade, SIDECAR_DEFAULTS.meshApiFacade);
    assert.deepEqual(mesh!.app, SIDECAR_DEFAULTS.meshApp);
    assert.equal(mesh!.via, 'zk');
    assert.equal(file!.upstream, '/etc/meshport/routes.json');
    assert.deepEqual(file!.services, ['com.example.Echo:1.0']);
    assert.equal(plugin!.type, path.resolve('/etc/meshport/plugins/dir'));
  });

  it('takes ${NAME} from the environment, so one config serves every pod', () => {
    const config = parseConfig(
      'node:\n  ip: ${POD_IP}\nregistries:\n  - { name: f, type: file, options: { note: "$${literal}" } }\n',
      'meshport.yaml',
      { POD_IP: '10.0.0.9' },
    );
    assert.equal(config.node.ip, '10.0.0.9');
    assert.equal(config.registries[0]!.options.note, '${literal}');
    assert.throws(
      () => parseConfig('log: { level: info }\nnode:\n  ip: ${POD_IP}\n', 'meshport.yaml', {}),
      /meshport\.yaml:3: \$\{POD_IP\}: the environment variable POD_IP is not set/,
    );
  });

  it('names the key and the line of each mistake', () => {
    assert.match(
      configError('node:\n  ip: 10.0.0.5\nlisteners:\n  outbund: 127.0.0.1:1\n'),
      /meshport\.yaml:4: listeners\.outbund: unknown key/,
    );
    assert.match(configError('admin: 10.0.0.5:15000\n'), /:1: admin: .*loopback/);
    assert.match(configError('listeners:\n  inbound: nowhere\n'), /:2: listeners\.inbound: must be HOST:PORT/);
    assert.match(configError('listeners:\n  inbound: 1.2.3.4:70000\n'), /:2: listeners\.inbound: must be HOST:PORT/);
    assert.match(
      configError('registries:\n  - name: a\n    type: zookeeper\n    facade: 127.0.0.1:2181\n'),
      /:2: registries\[0\]\.upstream: is required for a zookeeper registry/,
    );
    assert.match(
      configError('registries:\n  - name: a\n    type: file\n  - name: mesh\n    type: sofa-mesh\n    via: zk\n'),
      /:6: registries\[1\]\.via: names no registry in this list \(have: a, mesh\)/,
    );
    assert.match(
      configError('registries:\n  - name: a\n    type: file\n  - name: a\n    type: file\n'),
      /:4: registries\[1\]\.name: 'a' is used twice/,
    );
    assert.match(
      configError('registries:\n  - name: a\n    type: file\n    facade: 127.0.0.1:1\n'),
      /:4: registries\[0\]\.facade: a file registry has no facade/,
    );
    assert.match(
      configError('router:\n  connectTimeoutMs: soon\n'),
      /:2: router\.connectTimeoutMs: must be a non-negative integer/,
    );
    assert.match(configError('log:\n  level: loud\n'), /:2: log\.level: must be one of/);
    assert.match(
      configError('hijack:\n  mode: magic\n'),
      /:2: hijack\.mode: must be one of redirect, tproxy, connect-hook/,
    );
    assert.match(
      configError('hijack:\n  mode: redirect\n  sockmap: true\n'),
      /:3: hijack\.sockmap: needs mode connect-hook/,
    );
    assert.match(
      configError('hijack:\n  mode: tproxy\n  inboundCapturePort: 0\n'),
      /:3: hijack\.inboundCapturePort: must be a port/,
    );
    assert.match(configError('registries: zookeeper\n'), /:1: registries: must be a list/);
    assert.match(configError('- just\n- a list\n'), /meshport\.yaml:1: \(top level\): the config must be a mapping/);
    assert.match(configError('node:\n  ip: [unclosed\n'), /meshport\.yaml:\d+: not valid YAML/);
  });
});

describe('docs/meshport.example.yaml', () => {
  it('is a valid config with every registry type', async () => {
    const config = await loadConfig(path.resolve(__dirname, '../../../../docs/meshport.example.yaml'));
    assert.deepEqual(
      config.registries.map((r) => r.type.replace(/.*\/docs\//, 'docs/')),
      ['zookeeper', 'redis', 'sofa-mesh', 'file', 'docs/examples/registry-plugin-dir'],
    );
    assert.equal(config.registries[2]!.via, 'zk');
    assert.equal(config.tls.mode, 'permissive');
    assert.deepEqual(Object.keys(config.authz.services), ['com.example.EchoService:1.0']);
    assert.deepEqual(
      [config.telemetry.accessLog?.everyN, config.telemetry.tracing?.otlp, config.telemetry.labelCaps],
      [100, 'http://otel-collector.observability:4318', { methods: 64, callers: 32 }],
    );
  });
});

describe('sidecar config: remote clients and limits', () => {
  it('reads allowRemote per listener and facade, and the router limits; a bad CIDR names its line', () => {
    const config = parseConfig(
      [
        'listeners:',
        '  outbound: 0.0.0.0:12220',
        '  allowRemote: { outbound: [198.18.0.0/15, 10.1.2.3], inbound: false }',
        'router: { maxActiveRequests: 20, frameTimeoutMs: 3000, maxPartialFrames: 64 }',
        'registries:',
        '  - { name: zk, type: zookeeper, upstream: "zk:2181", facade: "0.0.0.0:2181", allowRemote: true }',
      ].join('\n'),
    );
    assert.deepEqual(config.listeners.allowRemote, { outbound: ['198.18.0.0/15', '10.1.2.3'], inbound: false });
    assert.deepEqual(config.router, { maxActiveRequests: 20, frameTimeoutMs: 3000, maxPartialFrames: 64 });
    assert.equal(config.registries[0]!.allowRemote, true);
    assert.throws(
      () => parseConfig('listeners:\n  allowRemote:\n    outbound: [10.0.0.0/33]\n'),
      /meshport\.yaml:3: listeners\.allowRemote\.outbound: "10\.0\.0\.0\/33" is not an IP address or CIDR/,
    );
    assert.throws(
      () => parseConfig('registries:\n  - { name: f, type: file, allowRemote: true }\n'),
      /registries\[0\]\.allowRemote: a file registry has no facade/,
    );
    assert.throws(() => parseConfig('admin: 0.0.0.0:15000\n'), /admin: the admin port serves loopback only/);
  });
});
