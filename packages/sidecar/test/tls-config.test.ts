// The `tls` and `authz` keys: defaults, paths against the config file, every mistake on its line; and the
// `meshport.id` the takeover publishes with the app's services, which the route book reads and the app never sees.

import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { formatProviderUrl, getParam, parseProviderUrl } from '@meshport/registry-core';
import { parseConfig, SidecarError } from '../src/index';
import { MESHPORT_ID, RouteBook, SidecarTakeover } from '../src/routes';

function problems(text: string): string[] {
  try {
    parseConfig(text, '/etc/meshport/meshport.yaml', {});
  } catch (err) {
    assert.ok(err instanceof SidecarError, String(err));
    assert.equal(err.code, 'MESHPORT_CONFIG_INVALID');
    return err.problems.map((p) => p.message);
  }
  assert.fail('expected a config error');
}

const ID = 'spiffe://cluster.local/ns/default/sa/echo-provider';
const INBOUND = { host: '10.0.0.7', port: 12201 };
const OUTBOUND = { host: '127.0.0.1', port: 12220 };

describe('sidecar tls and authz config', () => {
  it('is off without a tls block, and allows the trust domain by default', () => {
    const config = parseConfig('', '/etc/meshport/meshport.yaml', {});
    assert.deepEqual(config.tls, { mode: 'off' });
    assert.deepEqual(config.authz, { default: 'allow-trust-domain', services: {} });
  });

  it('is permissive with a tls block that names no mode; relative files resolve against the config file', () => {
    const config = parseConfig(
      [
        'tls:',
        '  certFile: certs/cert.pem',
        '  keyFile: /secrets/key.pem',
        '  trustBundleFile: ../ca.pem',
        '  trustDomain: cluster.local',
      ].join('\n'),
      '/etc/meshport/meshport.yaml',
      {},
    );
    assert.deepEqual(config.tls, {
      mode: 'permissive',
      certFile: path.resolve('/etc/meshport/certs/cert.pem'),
      keyFile: '/secrets/key.pem',
      trustBundleFile: path.resolve('/etc/ca.pem'),
      trustDomain: 'cluster.local',
    });
  });

  it('reads a policy per service and method', () => {
    const config = parseConfig(
      [
        'tls: { mode: strict, certFile: c.pem, keyFile: k.pem, trustBundleFile: ca.pem }',
        'authz:',
        '  default: deny',
        '  services:',
        '    "com.example.Echo:1.0":',
        '      allow: [spiffe://cluster.local/ns/shop/*]',
        '      methods:',
        '        purge: [spiffe://cluster.local/ns/ops/sa/admin]',
        '    "SOFA/com.example.Greeter:1.0": { allow: [] }',
      ].join('\n'),
      '/m/meshport.yaml',
      {},
    );
    assert.equal(config.tls.mode, 'strict');
    assert.deepEqual(config.authz, {
      default: 'deny',
      services: {
        'com.example.Echo:1.0': {
          allow: ['spiffe://cluster.local/ns/shop/*'],
          methods: { purge: ['spiffe://cluster.local/ns/ops/sa/admin'] },
        },
        'SOFA/com.example.Greeter:1.0': { allow: [] },
      },
    });
  });

  it('names every mistake with its line', () => {
    const found = problems(
      [
        'tls:', // 1
        '  mode: mutual', // 2
        '  certFile: c.pem', // 3
        '  trustDomain: Cluster.Local', // 4
        '  ca: x', // 5
        'authz:', // 6
        '  default: allow-some', // 7
        '  services:', // 8
        '    "com.example.Echo:1.0":', // 9
        '      allow:', // 10
        '        - spiffe://cluster.local/ns/shop/sa/web', // 11
        '        - cluster.local/ns/shop/sa/api', // 12
        '      methods:', // 13
        '        purge: spiffe://cluster.local/ns/ops/sa/admin', // 14
        '    "com.example.Other:1.0": [spiffe://cluster.local/x]', // 15
      ].join('\n'),
    );
    const file = '/etc/meshport/meshport.yaml';
    assert.deepEqual(found, [
      `${file}:2: tls.mode: must be one of off, permissive, strict`,
      `${file}:4: tls.trustDomain: must be a trust domain like cluster.local (lowercase), not 'Cluster.Local'`,
      `${file}:5: tls.ca: unknown key (known here: mode, certFile, keyFile, trustBundleFile, trustDomain)`,
      `${file}:7: authz.default: must be one of allow-trust-domain, allow-all, deny`,
      `${file}:12: authz.services.com.example.Echo:1.0.allow[1]: 'cluster.local/ns/shop/sa/api' is not an identity: spiffe://<trust domain>/<path>, or a prefix of one ending in /*`,
      `${file}:14: authz.services.com.example.Echo:1.0.methods.purge: must be a list of identities like spiffe://cluster.local/ns/default/sa/app (or a prefix ending in /*)`,
      `${file}:15: authz.services.com.example.Other:1.0: must be a mapping with allow (a list of identities) and optionally methods`,
    ]);
  });

  it('requires the three files when the mode is not off', () => {
    const file = '/etc/meshport/meshport.yaml';
    assert.deepEqual(problems('tls:\n  mode: strict\n  certFile: c.pem\n'), [
      `${file}:1: tls.keyFile: is required with mode strict`,
      `${file}:1: tls.trustBundleFile: is required with mode strict`,
    ]);
    assert.equal(parseConfig('tls: { mode: off }', file, {}).tls.mode, 'off');
  });
});

describe('docs/examples/mtls', () => {
  it('has two valid pod configs, strict with a policy and permissive', () => {
    const dir = path.resolve(__dirname, '../../../../docs/examples/mtls');
    const env = { POD_IP: '10.0.0.7', ZOOKEEPER: 'zk:2181' };
    const provider = parseConfig(
      readFileSync(path.join(dir, 'provider.yaml'), 'utf8'),
      path.join(dir, 'provider.yaml'),
      env,
    );
    assert.equal(provider.tls.mode, 'strict');
    assert.equal(provider.tls.certFile, path.join(dir, 'certs/provider.pem'));
    assert.deepEqual(provider.authz.services['com.example.EchoService:1.0']?.allow, [
      'spiffe://cluster.local/ns/shop/*',
    ]);
    const consumer = parseConfig(
      readFileSync(path.join(dir, 'consumer.yaml'), 'utf8'),
      path.join(dir, 'consumer.yaml'),
      env,
    );
    assert.equal(consumer.tls.mode, 'permissive');
  });
});

describe('meshport.id in provider URLs', () => {
  const bolt = (host: string, port: number, extra = '') =>
    parseProviderUrl(`bolt://${host}:${port}/com.example.Echo?version=1.0&weight=100${extra}`);

  it('is published with the app services, URL-encoded, when the sidecar has an identity', () => {
    const book = new RouteBook();
    const takeover = new SidecarTakeover(book, 'zk', INBOUND, OUTBOUND, undefined, ID);
    const published = takeover.providerPublished(bolt('127.0.0.1', 12200));
    assert.equal(published.host, INBOUND.host);
    assert.equal(getParam(published, MESHPORT_ID), ID);
    assert.match(
      formatProviderUrl(published),
      /meshport\.id=spiffe%3A%2F%2Fcluster\.local%2Fns%2Fdefault%2Fsa%2Fecho-provider/,
    );
    // The withdrawal names the same upstream URL, and the inbound route is the app's own address.
    assert.equal(formatProviderUrl(takeover.providerWithdrawn(bolt('127.0.0.1', 12200))), formatProviderUrl(published));
    // An app that publishes a meshport.id of its own does not choose the identity.
    const forged = takeover.providerPublished(bolt('127.0.0.1', 12200, '&meshport.id=spiffe%3A%2F%2Fevil%2Fx'));
    assert.equal(getParam(forged, MESHPORT_ID), ID);
    assert.equal(forged.params.filter((p) => p.name === MESHPORT_ID).length, 1);
  });

  it('is not published without an identity (tls off)', () => {
    const takeover = new SidecarTakeover(new RouteBook(), 'zk', INBOUND, OUTBOUND);
    const published = takeover.providerPublished(bolt('127.0.0.1', 12200, '&meshport.id=spiffe%3A%2F%2Fevil%2Fx'));
    assert.equal(getParam(published, MESHPORT_ID), undefined);
  });

  it('becomes the endpoint identity in the route book, and the app is shown the outbound address without it', () => {
    const book = new RouteBook();
    const takeover = new SidecarTakeover(book, 'zk', INBOUND, OUTBOUND);
    const id = encodeURIComponent(ID);
    const shown = takeover.providersRead('com.example.Echo', [
      bolt('10.0.0.7', 12201, `&meshport.id=${id}`),
      bolt('10.0.0.8', 12201),
    ]);
    assert.deepEqual(book.table.outbound('com.example.Echo:1.0')?.endpoints, [
      { host: '10.0.0.7', port: 12201, weight: 100, identity: ID },
      { host: '10.0.0.8', port: 12201, weight: 100 },
    ]);
    assert.equal(shown.length, 1);
    assert.equal(`${shown[0]!.host}:${shown[0]!.port}`, '127.0.0.1:12220');
    assert.doesNotMatch(formatProviderUrl(shown[0]!), /meshport/);
    // A new identity for the same address is a change of the route.
    takeover.providersRead('com.example.Echo', [bolt('10.0.0.7', 12201, `&meshport.id=${id}2`)]);
    assert.equal(book.table.outbound('com.example.Echo:1.0')?.endpoints[0]?.identity, `${ID}2`);
  });

  it('keeps the identity through compiled rules (a Dubbo provider)', () => {
    const book = new RouteBook();
    const takeover = new SidecarTakeover(book, 'zk', INBOUND, OUTBOUND);
    const url = parseProviderUrl(
      `dubbo://10.0.0.9:12201/com.example.Echo?interface=com.example.Echo&version=1.0&group=SOFA&meshport.id=${encodeURIComponent(ID)}`,
    );
    takeover.providersRead('com.example.Echo', [url]);
    assert.deepEqual(book.table.outbound('SOFA/com.example.Echo:1.0')?.endpoints, [
      { host: '10.0.0.9', port: 12201, weight: 100, identity: ID },
    ]);
  });

  it('is left out of endpoints by a sidecar that cannot dial mTLS (tls off)', () => {
    const book = new RouteBook({ identities: false });
    new SidecarTakeover(book, 'file', INBOUND, OUTBOUND).providersReported('com.example.Echo:1.0', [
      bolt('10.0.0.7', 12201, `&meshport.id=${encodeURIComponent(ID)}`),
    ]);
    assert.deepEqual(book.table.outbound('com.example.Echo:1.0')?.endpoints, [
      { host: '10.0.0.7', port: 12201, weight: 100 },
    ]);
  });
});
