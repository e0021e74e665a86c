// One sidecar and its certificate files: a bad file stops the start with the identity module's error, a bad rotation
// keeps the certificate in use, /config shows who the sidecar is and never its key, and a reload that turns mutual TLS
// on or off is told it needs a restart.

import { strict as assert } from 'node:assert';
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { eventually, makeTestPki, type TestPki } from '@meshport/testkit';
import { loadConfig } from '../src/config';
import { SidecarError } from '../src/errors';
import { Sidecar } from '../src/sidecar';

const ID = 'spiffe://cluster.local/ns/default/sa/app';
const BASE = [
  'listeners: { outbound: "127.0.0.1:0", inbound: "127.0.0.1:0" }',
  'admin: "127.0.0.1:0"',
  'registries:',
  '  - { name: static, type: file, upstream: services.json }',
].join('\n');
const TLS = 'tls: { mode: permissive, certFile: cert.pem, keyFile: key.pem, trustBundleFile: ca.pem }';

describe('sidecar certificate files', () => {
  let pki: TestPki;
  let dir: string;
  let sidecar: Sidecar | undefined;
  let logs: Record<string, unknown>[];
  const logger = () =>
    pino({ level: 'info' }, { write: (line: string) => logs.push(JSON.parse(line) as Record<string, unknown>) });

  before(() => {
    pki = makeTestPki({ trustDomain: 'cluster.local' });
  });
  after(() => pki.cleanup());
  beforeEach(() => {
    logs = [];
    dir = mkdtempSync(path.join(os.tmpdir(), 'meshport-tls-files-'));
    writeFileSync(path.join(dir, 'services.json'), JSON.stringify({ services: {} }));
    copyFileSync(pki.trustBundleFile, path.join(dir, 'ca.pem'));
  });
  afterEach(async () => {
    await sidecar?.stop(0);
    sidecar = undefined;
    rmSync(dir, { recursive: true, force: true });
  });

  function install(leaf: { certFile: string; keyFile: string }): void {
    copyFileSync(leaf.keyFile, path.join(dir, 'key.pem'));
    copyFileSync(leaf.certFile, path.join(dir, 'cert.pem'));
  }

  async function start(yaml: string): Promise<Sidecar> {
    const file = path.join(dir, 'meshport.yaml');
    writeFileSync(file, yaml);
    const s = new Sidecar(await loadConfig(file), { logger: logger() });
    await s.start();
    sidecar = s;
    return s;
  }

  async function config(s: Sidecar): Promise<Record<string, Record<string, unknown>>> {
    const { host, port } = s.address('admin');
    return (await (await fetch(`http://${host}:${port}/config`)).json()) as Record<string, Record<string, unknown>>;
  }

  it('an expired certificate stops the start with the identity error, naming the file', async () => {
    install(pki.issue(ID, { expired: true }));
    await assert.rejects(start(`${BASE}\n${TLS}\n`), (err: unknown) => {
      assert.ok(err instanceof SidecarError, String(err));
      assert.equal(err.code, 'MESHPORT_TLS_CERT_EXPIRED');
      // The start-up check names the line of the key, as for every other key of the config.
      assert.match(err.message, /meshport\.yaml:5: tls\.certFile: .*cert\.pem/);
      return true;
    });
    sidecar = undefined;
  });

  it('a missing key file stops the start', async () => {
    copyFileSync(pki.issue(ID).certFile, path.join(dir, 'cert.pem'));
    await assert.rejects(start(`${BASE}\n${TLS}\n`), (err: unknown) => {
      assert.ok(err instanceof SidecarError, String(err));
      assert.equal(err.code, 'MESHPORT_TLS_FILE_UNREADABLE');
      assert.match(err.message, /meshport\.yaml:5: tls\.keyFile: .*key\.pem/);
      return true;
    });
    sidecar = undefined;
  });

  it('/config shows the mode, identity, trust domain and policy, never the key', async () => {
    const leaf = pki.issue(ID);
    install(leaf);
    const s = await start(`${BASE}\n${TLS}\nauthz: { default: deny }\n`);
    assert.equal(s.identity, ID);
    const shown = await config(s);
    assert.equal(shown.tls!.mode, 'permissive');
    assert.equal(shown.tls!.identity, ID);
    assert.equal(shown.tls!.trustDomain, 'cluster.local');
    assert.equal(typeof shown.tls!.certificateExpires, 'string');
    assert.deepEqual(shown.authz, { default: 'deny', trustDomain: 'cluster.local', services: {} });
    const text = JSON.stringify(shown);
    assert.doesNotMatch(text, /PRIVATE KEY|BEGIN CERTIFICATE/);
    assert.ok(!text.includes(leaf.keyPem.split('\n')[1]!));
    const running = logs.find((l) => l.msg === 'meshport sidecar running')!;
    assert.equal(running.identity, ID);
    assert.equal(running.tls, 'permissive');
  });

  it('a rotation to a bad file is logged and the certificate in use stays', async () => {
    install(pki.issue(ID));
    const s = await start(`${BASE}\n${TLS}\n`);
    writeFileSync(path.join(dir, 'cert.pem'), 'not a certificate\n');
    await eventually(
      'the warning',
      async () =>
        logs.some((l) => l.level === 40 && /keeping the current certificate/.test(String(l.msg))) ? true : undefined,
      10_000,
    );
    assert.equal(s.identity, ID);
    assert.ok(!logs.some((l) => l.msg === 'certificate rotated'));
    // A good one after it is taken.
    install(pki.issue(ID));
    await eventually('the rotation', async () =>
      logs.some((l) => l.msg === 'certificate rotated') ? true : undefined,
    );
  });

  it('a reload that turns mutual TLS on needs a restart; one that changes the policy applies it', async () => {
    install(pki.issue(ID));
    const s = await start(`${BASE}\n`);
    const file = path.join(dir, 'meshport.yaml');
    writeFileSync(file, `${BASE}\n${TLS}\n`);
    const on = await s.reload(file);
    assert.ok(on.ok);
    assert.deepEqual(on.needRestart, ['tls']);
    assert.equal((await config(s)).tls!.mode, 'off');

    await s.stop(0);
    sidecar = undefined;
    const t = await start(`${BASE}\n${TLS}\n`);
    writeFileSync(file, `${BASE}\n${TLS.replace('permissive', 'strict')}\nauthz: { default: allow-all }\n`);
    const changed = await t.reload(file);
    assert.ok(changed.ok, String(changed.error));
    assert.equal(changed.security, true);
    assert.deepEqual(changed.needRestart, []);
    const shown = await config(t);
    assert.equal(shown.tls!.mode, 'strict');
    assert.equal(shown.authz!.default, 'allow-all');
  });

  it('SIGHUP reads the same files again: a certificate replaced in place is taken', async () => {
    install(pki.issue(ID));
    const s = await start(`${BASE}\n${TLS}\n`);
    const before = (await config(s)).tls!.certificateExpires;
    install(pki.issue(ID, { days: 3 }));
    const result = await s.reload(path.join(dir, 'meshport.yaml'));
    assert.ok(result.ok, String(result.error));
    assert.equal(result.security, true);
    const after = (await config(s)).tls!.certificateExpires;
    assert.notEqual(after, before);
    assert.ok(logs.some((l) => l.msg === 'certificate rotated' && l.certificateExpires === after));
  });

  it('a reload naming certificate files that do not load changes nothing', async () => {
    install(pki.issue(ID));
    const s = await start(`${BASE}\n${TLS}\n`);
    const file = path.join(dir, 'meshport.yaml');
    writeFileSync(file, `${BASE}\n${TLS.replace('cert.pem', 'missing.pem')}\nauthz: { default: deny }\n`);
    const result = await s.reload(file);
    assert.equal(result.ok, false);
    assert.ok(result.error instanceof SidecarError);
    assert.equal((await config(s)).authz!.default, 'allow-trust-domain');
  });
});
