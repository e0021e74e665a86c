// loadTlsMaterial on certificates the openssl command made (the test kit's PKI), and chains the development CA's
// writer builds: every way the three files can be wrong is a documented code whose message names the file.

import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { createPrivateKey, generateKeyPairSync } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { checkTlsFiles, initCa, issueCertificate, loadTlsMaterial, type SidecarError } from '@meshport/sidecar';
import { makeTestPki, type TestPki } from '@meshport/testkit';
import { buildCertificate, issuerFields, toPem } from '../src/identity/x509';

const ID = 'spiffe://cluster.local/ns/default/sa/app';

describe('identity: loadTlsMaterial', () => {
  let pki: TestPki;
  let other: TestPki;
  let dir: string;
  before(() => {
    pki = makeTestPki({ trustDomain: 'cluster.local' });
    other = makeTestPki({ trustDomain: 'cluster.local', name: 'another CA' });
  });
  after(() => {
    pki.cleanup();
    other.cleanup();
  });
  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'meshport-material-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  /** Asserts loadTlsMaterial fails with `code` and a message naming every one of `files`. */
  function refuses(files: Parameters<typeof loadTlsMaterial>[0], code: string, named: string[], extra?: RegExp) {
    assert.throws(
      () => loadTlsMaterial(files),
      (err: SidecarError) => {
        assert.equal(err.code, code, err.message);
        for (const f of named) assert.ok(err.message.includes(f), `'${err.message}' names ${f}`);
        if (extra) assert.match(err.message, extra);
        return true;
      },
    );
  }

  it('good files: the PEM texts as TlsMaterial, with the identity from the URI SAN', () => {
    const leaf = pki.issue(ID);
    const material = loadTlsMaterial({
      certFile: leaf.certFile,
      keyFile: leaf.keyFile,
      trustBundleFile: pki.trustBundleFile,
    });
    assert.deepEqual(material, {
      certChain: leaf.certPem,
      key: leaf.keyPem,
      trustBundle: pki.caPem,
      identity: ID,
    });
  });

  it('a bundle of two CAs (a CA rotation) verifies leaves of either', () => {
    const bundle = path.join(dir, 'bundle.pem');
    writeFileSync(bundle, pki.caPem + other.caPem);
    for (const ca of [pki, other]) {
      const leaf = ca.issue(ID);
      assert.equal(
        loadTlsMaterial({ certFile: leaf.certFile, keyFile: leaf.keyFile, trustBundleFile: bundle }).identity,
        ID,
      );
    }
  });

  it('a missing file, or a directory, is MESHPORT_TLS_FILE_UNREADABLE naming it', () => {
    const leaf = pki.issue(ID);
    const missing = path.join(dir, 'nope.pem');
    refuses(
      { certFile: missing, keyFile: leaf.keyFile, trustBundleFile: pki.trustBundleFile },
      'MESHPORT_TLS_FILE_UNREADABLE',
      [missing],
      /does not exist/,
    );
    refuses(
      { certFile: leaf.certFile, keyFile: missing, trustBundleFile: pki.trustBundleFile },
      'MESHPORT_TLS_FILE_UNREADABLE',
      [missing],
    );
    refuses(
      { certFile: leaf.certFile, keyFile: leaf.keyFile, trustBundleFile: dir },
      'MESHPORT_TLS_FILE_UNREADABLE',
      [dir],
      /directory/,
    );
  });

  it('a file that cannot be read for permissions is MESHPORT_TLS_FILE_UNREADABLE', () => {
    const leaf = pki.issue(ID);
    const key = path.join(dir, 'key.pem');
    writeFileSync(key, leaf.keyPem, { mode: 0o000 });
    chmodSync(key, 0o000);
    const files = { certFile: leaf.certFile, keyFile: key, trustBundleFile: pki.trustBundleFile };
    if (process.getuid?.() !== 0) {
      refuses(files, 'MESHPORT_TLS_FILE_UNREADABLE', [key], /permission denied/);
      return;
    }
    // Root reads a 0000 file: the check runs as nobody in a child (which cannot read the rest either; the key is first
    // to be reported after the certificate, so ask for the key's check).
    const r = spawnSync(
      process.execPath,
      [
        '-e',
        `const { checkTlsFiles } = require(${JSON.stringify(require.resolve('@meshport/sidecar'))});
         const c = checkTlsFiles(${JSON.stringify(files)}).checks.find((c) => c.name === 'key');
         process.stdout.write(JSON.stringify(c));`,
      ],
      { uid: 65534, gid: 65534, encoding: 'utf8' },
    );
    assert.equal(r.status, 0, r.stderr);
    const check = JSON.parse(r.stdout) as { status: string; code: string; detail: string };
    assert.equal(check.code, 'MESHPORT_TLS_FILE_UNREADABLE');
    assert.match(check.detail, new RegExp(`key file ${key} cannot be read by uid 65534 \\(permission denied\\)`));
  });

  it('a file without PEM is MESHPORT_TLS_BAD_PEM naming it', () => {
    const leaf = pki.issue(ID);
    const junk = path.join(dir, 'junk.pem');
    writeFileSync(junk, 'not a certificate\n');
    refuses({ certFile: junk, keyFile: leaf.keyFile, trustBundleFile: pki.trustBundleFile }, 'MESHPORT_TLS_BAD_PEM', [
      junk,
    ]);
    refuses({ certFile: leaf.certFile, keyFile: junk, trustBundleFile: pki.trustBundleFile }, 'MESHPORT_TLS_BAD_PEM', [
      junk,
    ]);
    refuses({ certFile: leaf.certFile, keyFile: leaf.keyFile, trustBundleFile: junk }, 'MESHPORT_TLS_BAD_PEM', [junk]);
    const broken = path.join(dir, 'broken.pem');
    writeFileSync(broken, '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n');
    refuses({ certFile: broken, keyFile: leaf.keyFile, trustBundleFile: pki.trustBundleFile }, 'MESHPORT_TLS_BAD_PEM', [
      broken,
    ]);
  });

  it('an expired certificate is MESHPORT_TLS_CERT_EXPIRED with its end date; one not valid yet is _NOT_YET_VALID', () => {
    const expired = pki.issue(ID, { expired: true });
    refuses(
      { certFile: expired.certFile, keyFile: expired.keyFile, trustBundleFile: pki.trustBundleFile },
      'MESHPORT_TLS_CERT_EXPIRED',
      [expired.certFile],
      /expired on \d{4}-\d\d-\d\dT/,
    );
    const early = pki.issue(ID, { notYetValid: true });
    refuses(
      { certFile: early.certFile, keyFile: early.keyFile, trustBundleFile: pki.trustBundleFile },
      'MESHPORT_TLS_CERT_NOT_YET_VALID',
      [early.certFile],
    );
  });

  it('a certificate of another CA is MESHPORT_TLS_UNTRUSTED naming both files', () => {
    const leaf = other.issue(ID);
    refuses(
      { certFile: leaf.certFile, keyFile: leaf.keyFile, trustBundleFile: pki.trustBundleFile },
      'MESHPORT_TLS_UNTRUSTED',
      [leaf.certFile, pki.trustBundleFile],
    );
  });

  it('no spiffe:// URI, or two, is MESHPORT_TLS_NO_IDENTITY', () => {
    const none = pki.issue(ID, { noIdentity: true });
    refuses(
      { certFile: none.certFile, keyFile: none.keyFile, trustBundleFile: pki.trustBundleFile },
      'MESHPORT_TLS_NO_IDENTITY',
      [none.certFile],
    );

    // Two URIs: written by the development CA's certificate builder, signed by a CA of ours.
    const ca = initCa({ dir: path.join(dir, 'ca'), trustDomain: 'cluster.local' });
    const caKey = readFileSync(ca.keyFile, 'utf8');
    const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const issuer = issuerFields(Buffer.from(ca.certPem.replace(/-----[^-]+-----|\s/g, ''), 'base64'));
    const der = buildCertificate({
      subject: { commonName: 'two', organization: 'cluster.local' },
      issuerName: issuer.subjectName,
      issuerKeyId: issuer.keyId,
      notBefore: new Date(Date.now() - 60_000),
      notAfter: new Date(Date.now() + 86_400_000),
      publicKey,
      signingKey: createPrivateKey(caKey),
      ca: false,
      uris: [ID, 'spiffe://cluster.local/ns/default/sa/other'],
    });
    const cert = path.join(dir, 'two.pem');
    const key = path.join(dir, 'two-key.pem');
    writeFileSync(cert, toPem(der));
    writeFileSync(key, privateKey.export({ type: 'pkcs8', format: 'pem' }));
    refuses(
      { certFile: cert, keyFile: key, trustBundleFile: ca.certFile },
      'MESHPORT_TLS_NO_IDENTITY',
      [cert],
      /exactly one/,
    );
  });

  it('a key that is not the certificate’s is MESHPORT_TLS_KEY_MISMATCH naming both files', () => {
    const a = pki.issue(ID);
    const b = pki.issue(ID);
    refuses(
      { certFile: a.certFile, keyFile: b.keyFile, trustBundleFile: pki.trustBundleFile },
      'MESHPORT_TLS_KEY_MISMATCH',
      [a.certFile, b.keyFile],
    );
  });

  it('a chain through an intermediate verifies when the certificate file carries the intermediate', () => {
    const root = initCa({ dir: path.join(dir, 'root'), trustDomain: 'cluster.local' });
    const rootKey = createPrivateKey(readFileSync(root.keyFile));
    const rootFields = issuerFields(Buffer.from(root.certPem.replace(/-----[^-]+-----|\s/g, ''), 'base64'));
    // An intermediate CA signed by the root, written into a CA directory so issueCertificate signs leaves with it.
    const mid = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const midDer = buildCertificate({
      subject: { commonName: 'intermediate', organization: 'cluster.local' },
      issuerName: rootFields.subjectName,
      issuerKeyId: rootFields.keyId,
      notBefore: new Date(Date.now() - 60_000),
      notAfter: new Date(Date.now() + 30 * 86_400_000),
      publicKey: mid.publicKey,
      signingKey: rootKey,
      ca: true,
      uris: ['spiffe://cluster.local'],
    });
    const midDir = path.join(dir, 'mid');
    mkdirSync(midDir);
    writeFileSync(path.join(midDir, 'ca.pem'), toPem(midDer));
    writeFileSync(path.join(midDir, 'ca-key.pem'), mid.privateKey.export({ type: 'pkcs8', format: 'pem' }));
    const leaf = issueCertificate({ caDir: midDir, id: ID, out: path.join(dir, 'leaf') });

    refuses(
      { certFile: leaf.certFile, keyFile: leaf.keyFile, trustBundleFile: root.certFile },
      'MESHPORT_TLS_UNTRUSTED',
      [leaf.certFile],
      /no CA there issued app/,
    );
    const chainFile = path.join(dir, 'chain.pem');
    writeFileSync(chainFile, leaf.certPem + toPem(midDer));
    const material = loadTlsMaterial({ certFile: chainFile, keyFile: leaf.keyFile, trustBundleFile: root.certFile });
    assert.equal(material.identity, ID);
    const report = checkTlsFiles({ certFile: chainFile, keyFile: leaf.keyFile, trustBundleFile: root.certFile });
    assert.match(
      report.checks.find((c) => c.name === 'chain')!.detail,
      /app <- intermediate <- meshport development CA/,
    );
    assert.match(report.checks.find((c) => c.name === 'certificate')!.detail, /a leaf and 1 intermediate/);
  });

  it('checkTlsFiles reports every problem at once, with the days left', () => {
    const expired = other.issue(ID, { expired: true });
    const wrongKey = pki.issue(ID);
    const report = checkTlsFiles({
      certFile: expired.certFile,
      keyFile: wrongKey.keyFile,
      trustBundleFile: pki.trustBundleFile,
    });
    const status = Object.fromEntries(report.checks.map((c) => [c.name, c.status]));
    assert.deepEqual(status, {
      certificate: 'ok',
      key: 'ok',
      'trust bundle': 'ok',
      validity: 'fail',
      chain: 'fail',
      identity: 'ok',
      'key pair': 'fail',
    });
    assert.equal(report.material, undefined);
    assert.ok(report.daysLeft! < 0);
    assert.equal(report.identity, ID);
    // The first failure is what loadTlsMaterial raises.
    assert.throws(
      () =>
        loadTlsMaterial({
          certFile: expired.certFile,
          keyFile: wrongKey.keyFile,
          trustBundleFile: pki.trustBundleFile,
        }),
      { code: 'MESHPORT_TLS_CERT_EXPIRED' },
    );
  });

  it('a key file others can read is a warning, not a failure', () => {
    const leaf = pki.issue(ID);
    const key = path.join(dir, 'key.pem');
    writeFileSync(key, leaf.keyPem);
    chmodSync(key, 0o644);
    const report = checkTlsFiles({ certFile: leaf.certFile, keyFile: key, trustBundleFile: pki.trustBundleFile });
    const check = report.checks.find((c) => c.name === 'key')!;
    assert.equal(check.status, 'warn');
    assert.match(check.detail, /mode 0644: others can read it/);
    assert.ok(report.material);
  });

  it('a certificate ending within a week is a warning, not a failure', () => {
    const leaf = pki.issue(ID, { days: 3 });
    const report = checkTlsFiles({
      certFile: leaf.certFile,
      keyFile: leaf.keyFile,
      trustBundleFile: pki.trustBundleFile,
    });
    const validity = report.checks.find((c) => c.name === 'validity')!;
    assert.equal(validity.status, 'warn');
    assert.match(validity.detail, /\(2 days left\): renew it soon/);
    assert.ok(report.material);
  });
});
